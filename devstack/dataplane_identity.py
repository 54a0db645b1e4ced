"""The minimal data-plane identity on a stack cluster: ``deploy/dataplane/rbac.yaml`` applied with the
cluster's admin kubeconfig, and a kubeconfig holding a token of its ServiceAccount (inline credentials
only, as the product accepts from a Secret)."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client as k8s

from activities.kube import Kube

RBAC = Path(__file__).resolve().parents[1] / "deploy" / "dataplane" / "rbac.yaml"


def dataplane_kubeconfig(
    admin_kubeconfig: Path,
    *,
    namespace: str = "cubepaas-dataplane",
    service_account: str = "cubepaas-devops",
    expiration_seconds: int = 86400,
) -> str:
    """Apply the data-plane RBAC and return a kubeconfig (YAML) with a token of its ServiceAccount."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    current = admin["current-context"]
    context = next(c["context"] for c in admin["contexts"] if c["name"] == current)
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    kube = Kube.from_kubeconfig(str(admin_kubeconfig))
    try:
        for manifest in yaml.safe_load_all(RBAC.read_text()):
            kube.apply(manifest)
        answer = k8s.CoreV1Api(kube.api_client).create_namespaced_service_account_token(
            service_account,
            namespace,
            k8s.AuthenticationV1TokenRequest(
                spec=k8s.V1TokenRequestSpec(expiration_seconds=expiration_seconds)
            ),
        )
    finally:
        kube.close()
    if answer.status is None or not answer.status.token:
        raise RuntimeError(f"no token issued for ServiceAccount {namespace}/{service_account}")
    user = f"{service_account}@{cluster['name']}"
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster["name"],
                    "cluster": {
                        "server": cluster["cluster"]["server"],
                        "certificate-authority-data": cluster["cluster"]["certificate-authority-data"],
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": answer.status.token}}],
            "contexts": [{"name": cluster["name"], "context": {"cluster": cluster["name"], "user": user}}],
            "current-context": cluster["name"],
        }
    )


__all__ = ["RBAC", "dataplane_kubeconfig"]
