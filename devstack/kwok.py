"""kwok ("Kubernetes WithOut Kubelet") and the fake Nodes it keeps, as the stack's `kwok` component.

Before kwok starts, the stack registers the Nodes (as kubelets would register themselves) and gives
kwok's own identity (client certificate CN ``devstack:kwok``) the RBAC of kwok's published
ClusterRoles (controller and volume), limited to what the Stages in ``kwok_stages.yaml`` use. It also
creates the default StorageClass whose claims those Stages bind. kwok then reports the Nodes Ready,
renews their Leases, and moves the Pods the scheduler binds to them through their lifecycle.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.cluster import MANAGEMENT, Cluster
from devstack.component import ClusterComponent, Context, Unhealthy, api_request, binaries, http_get
from devstack.pki import KWOK
from devstack.proc import LOOPBACK

STAGES_FILE = Path(__file__).resolve().parent / "kwok_stages.yaml"
# kwok manages the Nodes carrying this annotation (kwok's own convention), and no other.
MANAGED_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
ZONE_LABEL = "topology.kubernetes.io/zone"
HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONES = ("zone-a", "zone-b")  # cycled, so that two of the default three Nodes share a zone
DEFAULT_NODE_COUNT = 3
# Pod IPs kwok hands out: outside the Service range (10.0.0.0/16) and the loopback range.
POD_CIDR = "10.244.0.0/16"
NODE_IP = "10.89.0.1"
CLUSTER_ROLE = "devstack:kwok"
STORAGE_CLASS = "devstack-local"  # the default class; kwok's Stages provision its volumes
_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["nodes/status", "pods/status"], "verbs": ["patch", "update"]},
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["get", "list", "watch", "delete", "patch", "update"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "update"]},
    {
        "apiGroups": [""],
        "resources": ["persistentvolumes"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {"apiGroups": [""], "resources": ["persistentvolumes/status"], "verbs": ["patch", "update"]},
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [""], "resources": ["persistentvolumeclaims/status"], "verbs": ["patch", "update"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "list", "watch", "create", "patch", "update"],
    },
]


@dataclass(frozen=True)
class NodeSpec:
    name: str
    zone: str
    cpu: str = "8"
    memory: str = "32Gi"
    pods: str = "500"  # generous: a long-lived dev stack accumulates the pods of many tests

    def manifest(self) -> dict[str, Any]:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods, "ephemeral-storage": "100Gi"}
        key, value = MANAGED_ANNOTATION
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    HOSTNAME_LABEL: self.name,
                    ZONE_LABEL: self.zone,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
                "annotations": {key: value},
            },
            "status": {"capacity": capacity, "allocatable": capacity},
        }


def node_specs(cluster: Cluster = MANAGEMENT) -> list[NodeSpec]:
    """``node-1..N`` (``$DEVSTACK_KWOK_NODES``, default 3), zones cycled through :data:`ZONES`.

    A data plane's Nodes carry its prefix (``dp1-node-1``), so a Pod's node says where it ran.
    """
    raw = os.environ.get("DEVSTACK_KWOK_NODES", str(DEFAULT_NODE_COUNT))
    try:
        count = int(raw)
    except ValueError as err:
        raise ValueError(f"DEVSTACK_KWOK_NODES must be a whole number, not {raw!r}") from err
    if count < 1:
        raise ValueError(f"DEVSTACK_KWOK_NODES must be at least 1, not {count}")
    return [NodeSpec(f"{cluster.prefix}node-{i}", ZONES[(i - 1) % len(ZONES)]) for i in range(1, count + 1)]


def _create_unless_present(ctx: Context, path: str, body: dict[str, Any]) -> bool:
    """POST ``body`` to ``path``; False when it exists already."""
    status, text = api_request(ctx, "POST", path, body)
    if status == 409:
        return False
    if status >= 300:
        raise RuntimeError(f"kwok set-up: POST {path}: HTTP {status} {text[-300:]!r}")
    return True


def register(ctx: Context) -> None:
    """Apply kwok's RBAC, the default StorageClass, and register the Nodes that are missing (existing
    ones are left as they are)."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    role: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": CLUSTER_ROLE},
        "rules": _RULES,
    }
    if not _create_unless_present(ctx, f"{rbac}/clusterroles", role):
        patch = "application/merge-patch+json"
        status, text = api_request(
            ctx, "PATCH", f"{rbac}/clusterroles/{CLUSTER_ROLE}", {"rules": _RULES}, patch
        )
        if status >= 300:
            raise RuntimeError(
                f"kwok set-up: PATCH ClusterRole {CLUSTER_ROLE}: HTTP {status} {text[-300:]!r}"
            )
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": CLUSTER_ROLE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": KWOK.user}],
    }
    _create_unless_present(ctx, f"{rbac}/clusterrolebindings", binding)
    storage_class = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kwok.x-k8s.io/volume",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }
    _create_unless_present(ctx, "/apis/storage.k8s.io/v1/storageclasses", storage_class)
    for spec in node_specs(ctx.cluster):
        _create_unless_present(ctx, "/api/v1/nodes", spec.manifest())


def not_ready_nodes(ctx: Context) -> list[str]:
    """The names of the stack's Nodes that are missing or not Ready."""
    wanted = {spec.name for spec in node_specs(ctx.cluster)}
    status, body = http_get(f"{ctx.apiserver_url()}/api/v1/nodes", context=ctx.admin_ssl_context())
    if status != 200:
        raise Unhealthy(f"list nodes: HTTP {status} {body[-200:]!r}")
    ready = set()
    for node in json.loads(body).get("items", []):
        conditions = node.get("status", {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            ready.add(node["metadata"]["name"])
    return sorted(wanted - ready)


class Kwok(ClusterComponent):
    base_name = "kwok"
    base_deps = ("kube-apiserver",)
    startup_timeout = 60.0

    def prepare(self, ctx: Context) -> None:
        binaries(ctx)
        register(ctx)

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        key, value = MANAGED_ANNOTATION
        return [
            str(binaries(ctx).kwok),
            f"--kubeconfig={ctx.component_kubeconfig(KWOK)}",
            f"--config={STAGES_FILE}",
            f"--manage-nodes-with-annotation-selector={key}={value}",
            f"--server-address={LOOPBACK}:{ports['main']}",
            f"--cidr={POD_CIDR}",
            f"--node-ip={NODE_IP}",
            "--node-lease-duration-seconds=40",
        ]

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        status, body = http_get(f"{self.url(ports)}/healthz")
        if status != 200:
            raise Unhealthy(f"kwok /healthz: {status} {body[-200:]!r}")
        missing = not_ready_nodes(ctx)
        if missing:
            raise Unhealthy(f"kwok: nodes not Ready yet: {', '.join(missing)}")

    def env(self, ctx: Context, ports: dict[str, int]) -> dict[str, str]:
        return {ctx.cluster.nodes_env: ",".join(spec.name for spec in node_specs(ctx.cluster))}
