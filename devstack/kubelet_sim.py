"""Stand-in for the kubelet and the Deployment controller: marks Deployments ready, for chosen projects.

The local stack runs kube-apiserver and etcd only, so no Deployment ever becomes available by itself.
The namespace bootstrap waits for Deployment readiness (as it must in a real cluster); for the demo
and the end-to-end tests this thread writes the status a healthy rollout would have, but only in the
pipeline namespaces of the projects it was told about, so tests of the readiness deadline elsewhere
still see Deployments that never become ready.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes import client

logger = logging.getLogger(__name__)

PIPELINE_NAMESPACE_OF_LABEL = "devops.cubepaas.io/pipeline-namespace-of"


def ready_status(deployment: Any) -> dict[str, Any]:
    replicas = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    return {
        "observedGeneration": deployment.metadata.generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "marked ready by devstack's kubelet stand-in",
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": "marked ready by devstack's kubelet stand-in",
            },
        ],
    }


def is_ready(deployment: Any) -> bool:
    st = deployment.status
    want = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    return bool(
        st
        and st.observed_generation == deployment.metadata.generation
        and (st.available_replicas or 0) >= want
        and (st.updated_replicas or 0) >= want
    )


class DeploymentReadiness:
    """A background thread marking the Deployments of the registered projects' pipeline namespaces ready."""

    def __init__(self, api_client: Any, interval: float = 0.5) -> None:
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.interval = interval
        self.projects: set[str] = set()
        self.marked = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="kubelet-sim", daemon=True)

    def add_project(self, project_namespace: str) -> None:
        with self._lock:
            self.projects.add(project_namespace)

    def start(self) -> DeploymentReadiness:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sweep(self) -> int:
        """One pass; returns how many Deployments it marked ready."""
        with self._lock:
            projects = sorted(self.projects)
        if not projects:
            return 0
        selector = f"{PIPELINE_NAMESPACE_OF_LABEL} in ({','.join(projects)})"
        done = 0
        namespaces: list[Any] = self.core.list_namespace(label_selector=selector).items
        for ns in namespaces:
            ns_name = str(ns.metadata.name)
            deployments: list[Any] = self.apps.list_namespaced_deployment(ns_name).items
            for dep in deployments:
                if is_ready(dep):
                    continue
                self.apps.patch_namespaced_deployment_status(
                    str(dep.metadata.name), ns_name, {"status": ready_status(dep)}
                )
                done += 1
        self.marked += done
        return done

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception as err:  # keep going: the apiserver may restart under a test
                logger.warning("kubelet stand-in: %s", err)


def aggregate_cluster_roles(api_client: Any, names: tuple[str, ...] = ("view", "edit", "admin")) -> None:
    """Stand in for kube-controller-manager's ClusterRole aggregation controller.

    The apiserver's RBAC bootstrap policy creates ``admin``, ``edit`` and ``view`` with an
    ``aggregationRule`` and no rules; the controller-manager (not run by the local stack) fills them from
    the ``aggregate-to-*`` roles. Without this, binding ``admin`` grants nothing.
    """
    rbac = client.RbacAuthorizationV1Api(api_client)
    for name in names:
        role: Any = rbac.read_cluster_role(name)
        rules: list[Any] = []
        for selector in (
            role.aggregation_rule.cluster_role_selectors if role.aggregation_rule else None
        ) or []:
            labels = ",".join(f"{k}={v}" for k, v in (selector.match_labels or {}).items())
            members: list[Any] = rbac.list_cluster_role(label_selector=labels).items
            for member in members:
                for rule in member.rules or []:
                    as_dict = api_client.sanitize_for_serialization(rule)
                    if as_dict not in rules:
                        rules.append(as_dict)
        current = [api_client.sanitize_for_serialization(r) for r in role.rules or []]
        if rules and current != rules:
            rbac.patch_cluster_role(name, {"rules": rules})
