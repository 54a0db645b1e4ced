"""The receiver's shipped ServiceAccount is enough for its job and for nothing else.

The receiver process runs with only the ``cubepaas-webhooks`` identity of the Helm chart's rendered
objects (``deploy/manifests/worker.yaml``, from ``templates/webhook-*.yaml``; a bearer token, no admin
certificate) and turns a signed push into a run, once; the same identity is refused everything else a
compromised receiver might try.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from webhook_client import NOT_RUN, ReceiverProcess, post

from activities.errors import KubeForbiddenError
from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec
from crds.pipeline_file import PipelineConfig
from worker.webhooks.events import Provider
from worker.webhooks.secrets import ensure_webhook_secret
from worker.webhooks.signatures import sign

pytestmark = pytest.mark.e2e

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "manifests"
PUSH = (
    Path(__file__).resolve().parents[1] / "contract" / "payloads" / "github" / "push-branch.json"
).read_bytes()
CONFIG = {
    "stages": [{"name": "Test", "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": "true"}}]}]
}


def receiver_kubeconfig(kube: Kube, stack: Any, path: Path) -> Path:
    from kubernetes import client

    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = kube.core.create_namespaced_service_account_token("cubepaas-webhooks", "cubepaas-system", request)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "webhooks",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": kube.core.api_client.configuration.host,
                    "certificate-authority": str(stack.ca_cert_path),
                },
            }
        ],
        "users": [{"name": "cubepaas-webhooks", "user": {"token": token.status.token}}],
        "contexts": [{"name": "webhooks", "context": {"cluster": "local", "user": "cubepaas-webhooks"}}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_receiver_creates_runs_with_only_its_shipped_cluster_role_and_nothing_more(
    stack: Any, stack_env: dict[str, str], kube: Kube, namespace: str, tmp_path: Path
) -> None:
    rendered = (MANIFESTS / "worker.yaml").read_text()
    shipped = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(rendered) if d}
    assert {
        (kind, "cubepaas-webhooks")
        for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service")
    } <= shipped
    # Applied as a user would: kubectl, server-side (the chart's render, with the namespace first).
    kubectl = stack_env.get("KUBECTL") or shutil.which("kubectl") or pytest.fail("no kubectl", pytrace=False)
    subprocess.run(
        [kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(MANIFESTS / "worker.yaml")],
        env=dict(os.environ, KUBECONFIG=stack_env["KUBECONFIG"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    pipeline = kube.create(
        Pipeline(
            metadata=ObjectMeta(name="app", namespace=namespace, annotations=NOT_RUN),
            spec=PipelineSpec(
                repository_url="https://git.example.com/app.git", config=PipelineConfig.model_validate(CONFIG)
            ),
        )
    )
    secret = ensure_webhook_secret(kube, pipeline).encode()
    kubeconfig = receiver_kubeconfig(kube, stack, tmp_path / "kubeconfig")

    receiver = ReceiverProcess(
        {**stack_env, "KUBECONFIG": str(kubeconfig)}, tmp_path / "webhooks.log"
    ).start()
    try:
        headers = {
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            **sign(Provider.GITHUB, secret, PUSH),
        }
        first = post(receiver.port, f"/hooks/github/{namespace}/app", PUSH, headers)
        again = post(receiver.port, f"/hooks/github/{namespace}/app", PUSH, headers)
    finally:
        receiver.stop()
    assert first[0] == 201, (first, receiver.log_tail())
    assert again[0] == 200 and again[1]["run"] == first[1]["run"]
    assert [pe.name for pe in kube.list_resources(PipelineExecution, namespace)] == [first[1]["run"]]

    confined = Kube.from_kubeconfig(str(kubeconfig))
    refused = {
        "delete a run": lambda: confined.delete_object(
            PipelineExecution.model_fields["api_version"].default,
            "PipelineExecution",
            first[1]["run"],
            namespace,
        ),
        "edit a run's spec": lambda: confined.patch(
            PipelineExecution, namespace, first[1]["run"], {"spec": {"cancelled": True}}
        ),
        "edit a pipeline's spec": lambda: confined.patch(
            Pipeline, namespace, "app", {"spec": {"defaultBranch": "x"}}
        ),
        "list secrets": lambda: confined.list_objects("v1", "Secret", namespace),
        "write a secret": lambda: confined.apply(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": namespace}}
        ),
        "write an execution's status": lambda: confined.patch_status(
            PipelineExecution, namespace, first[1]["run"], {"phase": "Success"}
        ),
        "read a pod": lambda: confined.find_object("v1", "Pod", "any", namespace),
    }
    allowed = []
    for what, attempt in refused.items():
        try:
            attempt()
            allowed.append(what)
        except KubeForbiddenError:
            pass
    assert allowed == [], f"the receiver's ServiceAccount may {allowed}"
