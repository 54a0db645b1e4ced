"""The shipped manifests: they apply, and the worker's ClusterRole is enough to run pipelines.

The proof is the real thing: a worker process whose only Kubernetes identity is the ``cubepaas-worker``
ServiceAccount of ``deploy/manifests/worker.yaml`` (the Helm chart's output; a bearer token, no admin
certificate) provisions a project and runs a pipeline to Success, electing itself leader with the
chart's Lease Role first. Any missing permission fails the run with a 403 in its status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.reasons import ExecutionPhase
from worker.runs import create_run

pytestmark = pytest.mark.e2e

LEASE = "cubepaas-worker-leader"  # the one name the chart's leader-election Role grants
MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "manifests" / "worker.yaml"
PIPELINE = """
stages:
- name: Test
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo as the service account of the worker"}
"""


def delete_lease(api_client: Any, namespace: str, name: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoordinationV1Api(api_client).delete_namespaced_lease(name, namespace)
    except ApiException as err:
        if err.status != 404:
            raise


def service_account_kubeconfig(kube: Kube, stack: Any, path: Path) -> Path:
    from kubernetes import client

    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = kube.core.create_namespaced_service_account_token("cubepaas-worker", "cubepaas-system", request)
    server = kube.core.api_client.configuration.host
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "worker",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(stack.ca_cert_path)}}
        ],
        "users": [{"name": "cubepaas-worker", "user": {"token": token.status.token}}],
        "contexts": [{"name": "worker", "context": {"cluster": "local", "user": "cubepaas-worker"}}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_worker_runs_a_pipeline_with_only_the_permissions_of_its_shipped_cluster_role(
    stack: Any,
    stack_env: dict[str, str],
    kube: Kube,
    kube_api_client: Any,
    project_namespace: Callable[..., str],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
    dedicated_worker: Callable[[str], Any],
    tmp_path: Path,
) -> None:
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]
    assert {d["kind"] for d in docs} >= {
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    }
    # Applied as a user would: kubectl, server-side (the file holds kinds the product never writes).
    kubectl = stack_env.get("KUBECTL") or shutil.which("kubectl") or pytest.fail("no kubectl", pytrace=False)
    subprocess.run(
        [kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(MANIFESTS)],
        env=dict(os.environ, KUBECONFIG=stack_env["KUBECONFIG"]),
        check=True,
        capture_output=True,
        timeout=120,
    )

    ns = project_namespace("rbac")
    team = f"{ns}-team"  # a project namespace: the worker must be allowed to grant `admin` there
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": team, "labels": {"devops.cubepaas.io/project": ns}},
        }
    )
    worker = dedicated_worker(ns)
    worker.env["KUBECONFIG"] = str(service_account_kubeconfig(kube, stack, tmp_path / "kubeconfig"))
    worker.env["CUBEPAAS_INSTALL_CRDS"] = "false"  # CRDs are the cluster admin's to install, not the worker's
    # The bridge runs only once the worker holds the chart's Lease (a left-over holder would delay it).
    delete_lease(kube_api_client, "cubepaas-system", LEASE)
    worker.env.update(
        CUBEPAAS_LEADER_ELECTION="true", CUBEPAAS_LEASE_NAMESPACE="cubepaas-system", CUBEPAAS_LEASE_NAME=LEASE
    )
    worker.start()
    url, sha = git_repo(PIPELINE)
    pipeline_factory(ns, "app", url)
    pe = create_run(
        kube_api_client, ns, "app", commit=sha, annotations={"devops.cubepaas.io/task-queue": worker.queue}
    )
    deadline = time.monotonic() + 180
    st = None
    while time.monotonic() < deadline:
        st = kube.get(PipelineExecution, ns, pe.name).status
        if st is not None and st.phase is not None and st.phase.is_terminal:
            break
        time.sleep(0.5)
    assert st is not None and st.phase == ExecutionPhase.SUCCESS, st
    assert st.workflow is not None  # the bridge, too, ran as the service account
    rb = kube.read_object(
        "rbac.authorization.k8s.io/v1", "RoleBinding", "cubepaas-jenkins-agents", f"{ns}-pipeline"
    )
    assert rb["roleRef"]["name"] == "edit"
    granted = kube.read_object("rbac.authorization.k8s.io/v1", "RoleBinding", "cubepaas-jenkins", team)
    assert granted["roleRef"]["name"] == "admin"
