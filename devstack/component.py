"""What a stack component is (prepared, started, health-checked, advertised in env) and what it gets."""

from __future__ import annotations

import asyncio
import fcntl
import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from devstack.cluster import MANAGEMENT, Cluster
from devstack.pki import ADMIN, ClientIdentity, Pki, write_kubeconfig
from devstack.proc import LOOPBACK
from devstack.state import Credentials
from devstack.testbin import Binaries, ensure_binaries

T = TypeVar("T")


class Unhealthy(Exception):
    """A health check did not pass (yet)."""


@dataclass
class Context:
    """What components need from the stack: folder, secrets, PKI and everyone's ports.

    ``pki`` and ``cluster`` are those of the Kubernetes cluster the component belongs to (see
    :meth:`for_cluster`); ``dir`` is always the stack's state folder.
    """

    dir: Path
    creds: Credentials
    pki: Pki
    ports: dict[str, dict[str, int]] = field(default_factory=dict)
    log: Callable[[str], None] = print
    cluster: Cluster = MANAGEMENT

    def for_cluster(self, cluster: Cluster) -> Context:
        """The same stack seen from ``cluster``: its PKI and folder; ``ports`` is shared, not copied."""
        if cluster == self.cluster:
            return self
        return replace(self, cluster=cluster, pki=Pki(cluster.state_dir(self.dir) / "pki"))

    @property
    def cluster_dir(self) -> Path:
        return self.cluster.state_dir(self.dir)

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig(self.dir)

    @property
    def bin_dir(self) -> Path:
        """The folder of command-line tools the stack offers to build steps (``DEVSTACK_BIN``)."""
        return self.dir / "bin"

    def port_of(self, base: str) -> int:
        """The main port of this cluster's ``base`` component (``etcd``, ``kube-apiserver``, ...)."""
        return self.ports[self.cluster.component(base)]["main"]

    def apiserver_url(self) -> str:
        return f"https://{LOOPBACK}:{self.port_of('kube-apiserver')}"

    def component_kubeconfig(self, identity: ClientIdentity) -> Path:
        """Write (each start: the apiserver's port may change) and return ``identity``'s kubeconfig."""
        folder = self.cluster_dir / "kubeconfigs"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / f"{identity.file_stem}.kubeconfig"
        write_kubeconfig(self.pki, self.apiserver_url(), path, identity, cluster_name=self.cluster.name)
        return path

    def admin_ssl_context(self) -> ssl.SSLContext:
        """Trusts the stack's CA and presents the admin client certificate."""
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.client_cert(ADMIN)), str(self.pki.client_key(ADMIN)))
        return context


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


def api_request(
    ctx: Context, method: str, path: str, body: dict[str, Any], content_type: str = "application/json"
) -> tuple[int, bytes]:
    """One request to the stack's apiserver as admin (no client library: this runs on every ``up``)."""
    request = urllib.request.Request(
        f"{ctx.apiserver_url()}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": content_type, "Accept": "application/json"},
    )
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx.admin_ssl_context())
    )
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


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
    cluster: Cluster = MANAGEMENT  # whose PKI and folder its Context carries
    port_names: tuple[str, ...] = ("main",)
    # Ports among ``port_names`` that the component sends to rather than listens on (kept when in use).
    target_ports: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()
    startup_timeout: float = 90.0

    def unavailable(self) -> str | None:
        """Why this component cannot run on this checkout (None when it can)."""
        return None

    def prepare(self, ctx: Context) -> None:
        """Set-up before :meth:`command` (binaries, config files); runs once its deps are healthy."""

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


class ClusterComponent(Component):
    """A component of one Kubernetes cluster; the stack hands it that cluster's :class:`Context`.

    ``base_name`` and ``base_deps`` name it within its cluster; :attr:`name` and :attr:`deps` are
    the stack-wide names (``dp1-etcd`` for the data plane's, ``etcd`` for the management cluster's).
    """

    base_name: str = ""
    base_deps: tuple[str, ...] = ()

    def __init__(self, cluster: Cluster = MANAGEMENT) -> None:
        self.cluster = cluster
        self.name = cluster.component(self.base_name)
        self.deps = tuple(cluster.component(dep) for dep in self.base_deps)


_BINARIES_LOCK = threading.Lock()


def binaries(ctx: Context) -> Binaries:
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
