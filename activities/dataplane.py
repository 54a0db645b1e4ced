"""The Kubernetes client of each project's data plane.

A project whose PipelineSetting names ``spec.dataPlane.kubeconfigSecretRef`` runs its pipeline
namespace, Jenkins' agent pods and its deployments in another cluster; everything else (the CRs, run
numbers, statuses, the quota, Temporal) stays in the management cluster. :class:`DataPlanes` turns the
Secret into a client, once per kubeconfig: the Secret is read on every call (one GET, so a rotated
kubeconfig is picked up by the next activity) and the client is rebuilt only when its content changed.
The kubeconfig itself never leaves this process: workflow inputs carry only the Secret's name.

A kubeconfig from a Secret is user input, so it may only carry inline credentials: file paths
(``client-certificate``, ``tokenFile`` ...) would let a project read the worker's own files, and
``exec``/``auth-provider`` would run programs in the worker. Such a kubeconfig is refused as malformed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from activities.errors import ConfigError, KubeNotFoundError
from activities.kube import Kube, api_client
from crds.meta import SecretReference
from crds.reasons import Reason

logger = logging.getLogger(__name__)

KUBECONFIG_KEY = "kubeconfig"
"""The key of the data-plane Secret that holds the kubeconfig."""

#: Keys a kubeconfig from a Secret must not have (see the module docstring), where they sit.
_FORBIDDEN = {
    "clusters": ("certificate-authority",),
    "users": ("client-certificate", "client-key", "tokenFile", "exec", "auth-provider"),
}


class DataPlanes:
    """One client per data plane, from its kubeconfig Secret; the management client otherwise."""

    def __init__(self, management: Kube, build: Callable[[Mapping[str, Any]], Kube] | None = None) -> None:
        self.management = management
        self._build = build or kube_from_kubeconfig
        self._clients: dict[tuple[str, str], tuple[str, Kube]] = {}
        self._lock = threading.Lock()

    def kube(self, project_namespace: str, ref: SecretReference | None) -> Kube:
        """The client for the project's data plane (``ref`` None: the management cluster)."""
        if ref is None:
            return self.management
        namespace = ref.namespace or project_namespace
        where = f"data-plane kubeconfig Secret {namespace}/{ref.name}"
        try:
            data = self.management.read_secret(namespace, ref.name)
        except KubeNotFoundError as err:
            raise ConfigError(f"{where} not found", reason=Reason.DATA_PLANE_INVALID) from err
        text = data.get(KUBECONFIG_KEY)
        if not text:
            raise ConfigError(f"{where} has no key {KUBECONFIG_KEY}", reason=Reason.DATA_PLANE_INVALID)
        digest = hashlib.sha256(text.encode()).hexdigest()
        key = (namespace, ref.name)
        with self._lock:
            cached = self._clients.get(key)
            if cached is not None and cached[0] == digest:
                return cached[1]
        config = parse_kubeconfig(text, where)
        try:
            client = self._build(config)
        except Exception as err:  # the kubernetes loader raises many kinds (ConfigException, KeyError, ...)
            raise ConfigError(
                f"{where}: key {KUBECONFIG_KEY} is not a usable kubeconfig ({type(err).__name__}: {err})",
                reason=Reason.DATA_PLANE_INVALID,
            ) from err
        with self._lock:
            old = self._clients.get(key)
            self._clients[key] = (digest, client)
        if old is not None:
            logger.info("%s changed; its client is rebuilt", where)
            old[1].close()
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for _, client in clients:
            client.close()


def parse_kubeconfig(text: str, where: str) -> dict[str, Any]:
    """The kubeconfig as a dict, or a :class:`ConfigError` naming ``where`` and what is wrong."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(
            f"{where}: key {KUBECONFIG_KEY} is not YAML ({err.__class__.__name__})",
            reason=Reason.DATA_PLANE_INVALID,
        ) from err
    if not isinstance(config, dict) or not config.get("clusters") or not config.get("contexts"):
        raise ConfigError(
            f"{where}: key {KUBECONFIG_KEY} is not a kubeconfig (no clusters or contexts)",
            reason=Reason.DATA_PLANE_INVALID,
        )
    for section, keys in _FORBIDDEN.items():
        for entry in config.get(section) or []:
            body = (entry or {}).get(section[:-1]) if isinstance(entry, dict) else None
            found = sorted(k for k in keys if isinstance(body, dict) and k in body)
            if found:
                name = entry.get("name", "?")
                raise ConfigError(
                    f"{where}: {section[:-1]} {name!r} uses {', '.join(found)}; only inline credentials"
                    " (certificate-authority-data, client-certificate-data, client-key-data, token) are"
                    " accepted from a Secret",
                    reason=Reason.DATA_PLANE_INVALID,
                )
    return config


def cluster_name(config: Mapping[str, Any]) -> str:
    """The cluster of the kubeconfig's current context (what the run's messages call the data plane)."""
    current = config.get("current-context")
    for entry in config.get("contexts") or []:
        if isinstance(entry, dict) and entry.get("name") == current:
            cluster = (entry.get("context") or {}).get("cluster")
            if isinstance(cluster, str) and cluster:
                return cluster
    return str(current or "?")


def kube_from_kubeconfig(config: Mapping[str, Any]) -> Kube:
    """A :class:`Kube` for the current context of a kubeconfig dict, named by its cluster."""
    cfg = k8s.Configuration()
    k8s_config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]
        config_dict=dict(config), client_configuration=cfg
    )
    return Kube(api_client(cfg), plane=cluster_name(config))


__all__ = ["KUBECONFIG_KEY", "DataPlanes", "cluster_name", "kube_from_kubeconfig", "parse_kubeconfig"]
