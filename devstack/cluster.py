"""The Kubernetes clusters of the local stack: the management cluster and the optional data plane.

Every cluster runs the same five components (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) from the same classes; a :class:`Cluster` only says where its state lives and
what its components, Nodes, kubeconfig and env variables are called. The management cluster keeps
the names and paths the stack has always used, so a stack without a data plane is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cluster:
    name: str
    management: bool = False

    @property
    def prefix(self) -> str:
        """Of its component and Node names: none for the management cluster, ``dp1-`` for ``dp1``."""
        return "" if self.management else f"{self.name}-"

    def component(self, base: str) -> str:
        """The name of this cluster's ``base`` component (``etcd`` -> ``dp1-etcd``)."""
        return f"{self.prefix}{base}"

    def state_dir(self, root: Path) -> Path:
        """Its data, PKI and component kubeconfigs: the state folder itself, or ``<root>/<name>``."""
        return root if self.management else root / self.name

    def kubeconfig(self, root: Path) -> Path:
        """Its admin kubeconfig, next to the management cluster's ``<root>/kubeconfig``."""
        return root / ("kubeconfig" if self.management else f"{self.name}.kubeconfig")

    @property
    def ca_name(self) -> str:
        """The CN of its own CA (each cluster has one: what one signed, the other refuses)."""
        return "devstack-ca" if self.management else f"devstack-{self.name}-ca"

    @property
    def kubeconfig_env(self) -> str:
        return "KUBECONFIG" if self.management else f"{self.name.upper()}_KUBECONFIG"

    @property
    def nodes_env(self) -> str:
        return "DEVSTACK_NODES" if self.management else f"{self.name.upper()}_NODES"


MANAGEMENT = Cluster("devstack", management=True)
DP1 = Cluster("dp1")
DATA_PLANES: dict[str, Cluster] = {DP1.name: DP1}
