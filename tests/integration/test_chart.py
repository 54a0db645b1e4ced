"""The Helm chart: it lints, renders what deploy/manifests holds, applies cleanly and installs.

Against the local stack's apiserver, with the stack's helm and kubectl (``HELM`` / ``KUBECTL`` in its
environment).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.kube import Kube

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "chart"
MANIFESTS = ROOT / "deploy" / "manifests" / "worker.yaml"


def tool(stack_env: dict[str, str], name: str) -> str:
    found = stack_env.get(name.upper()) or os.environ.get(name.upper()) or shutil.which(name)
    if not found:
        pytest.fail(f"no {name}: the local stack provides it (python -m devstack up)", pytrace=False)
    return found


@pytest.fixture(scope="module")
def helm(stack_env: dict[str, str]) -> str:
    return tool(stack_env, "helm")


@pytest.fixture(scope="module")
def kubectl(stack_env: dict[str, str]) -> str:
    return tool(stack_env, "kubectl")


def run(command: list[str], stack_env: dict[str, str], stdin: str | None = None) -> str:
    env = dict(os.environ, KUBECONFIG=stack_env["KUBECONFIG"], HELM_CACHE_HOME="/tmp/cubepaas-helm-cache")
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, env=env, timeout=180, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def render(helm: str, stack_env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    out = run([helm, "template", "cubepaas", str(CHART), "--namespace", "cubepaas-system", *args], stack_env)
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture
def release_namespace(kube: Kube) -> Iterator[str]:
    name = f"chart-{uuid.uuid4().hex[:6]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete_object("v1", "Namespace", name)


def test_helm_lint_passes(helm: str, stack_env: dict[str, str]) -> None:
    out = run([helm, "lint", "--strict", str(CHART)], stack_env)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_the_shipped_manifests_are_the_charts_output(helm: str, stack_env: dict[str, str]) -> None:
    from devstack.manifests import render_manifests

    assert MANIFESTS.read_text() == render_manifests(helm), "deploy/manifests is stale: run `make manifests`"


def test_the_default_render_holds_every_piece_of_the_worker_and_the_webhook_receiver(
    helm: str, stack_env: dict[str, str]
) -> None:
    docs = render(helm, stack_env)
    pieces = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    each = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]
    each += ["PodDisruptionBudget", "NetworkPolicy"]
    assert pieces == sorted(
        [(kind, "cubepaas-worker") for kind in each]
        + [("Role", "cubepaas-worker-leader-election"), ("RoleBinding", "cubepaas-worker-leader-election")]
        + [(kind, "cubepaas-webhooks") for kind in each]
    )
    deployment = next(
        d for d in docs if (d["kind"], d["metadata"]["name"]) == ("Deployment", "cubepaas-worker")
    )
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CUBEPAAS_LEADER_ELECTION"]["value"] == "true"
    assert env["CUBEPAAS_LEASE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["CUBEPAAS_INSTALL_CRDS"]["value"] == "false"
    role = next(d for d in docs if d["kind"] == "Role")
    assert {"get", "update", "create"} == {v for rule in role["rules"] for v in rule["verbs"]}


def test_the_webhook_receiver_runs_worker_webhooks_with_only_settings_it_reads_and_its_own_identity(
    helm: str, stack_env: dict[str, str]
) -> None:
    from worker.settings import WorkerSettings

    docs = render(
        helm,
        stack_env,
        "--set",
        "webhook.url=https://ci.example.com",
        "--set",
        "webhook.registryTokenSecret=registry-notify",
    )
    deployment = next(
        d for d in docs if (d["kind"], d["metadata"]["name"]) == ("Deployment", "cubepaas-webhooks")
    )
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "worker.webhooks"]
    assert pod["serviceAccountName"] == "cubepaas-webhooks"
    env = {e["name"]: e for e in container["env"]}
    read = {str(field.validation_alias) for field in WorkerSettings.model_fields.values()}
    assert set(env) <= read, set(env) - read
    assert env["CUBEPAAS_WEBHOOK_URL"]["value"] == "https://ci.example.com"
    token = {"name": "registry-notify", "key": "token"}
    assert env["CUBEPAAS_REGISTRY_TOKEN"]["valueFrom"]["secretKeyRef"] == token
    assert container["ports"] == [
        {"name": "http", "containerPort": int(env["CUBEPAAS_WEBHOOK_PORT"]["value"])}
    ]
    binding = next(
        d for d in docs if (d["kind"], d["metadata"]["name"]) == ("ClusterRoleBinding", "cubepaas-webhooks")
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "cubepaas-webhooks", "namespace": "cubepaas-system"}
    ]
    assert not any(
        d["metadata"]["name"] == "cubepaas-webhooks"
        for d in render(helm, stack_env, "--set", "webhook.enabled=false")
    )


def test_values_for_temporal_cloud_and_mtls_become_the_settings_the_worker_reads(
    helm: str, stack_env: dict[str, str]
) -> None:
    from worker.settings import WorkerSettings

    docs = render(
        helm,
        stack_env,
        "--set",
        "temporal.apiKey.secretName=temporal-key",
        "--set",
        "temporal.tls.clientCertSecret=temporal-client",
        "--set",
        "temporal.tls.caFromSecret=true",
        "--set",
        "temporal.tls.serverName=frontend.temporal",
        "--set",
        "worker.watchNamespaces={team-a,team-b}",
        "--set",
        "serviceMonitor.enabled=true",
    )
    deployment = next(
        d for d in docs if (d["kind"], d["metadata"]["name"]) == ("Deployment", "cubepaas-worker")
    )
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["TEMPORAL_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "temporal-key", "key": "api-key"}
    assert pod["volumes"] == [{"name": "temporal-tls", "secret": {"secretName": "temporal-client"}}]
    mount = pod["containers"][0]["volumeMounts"][0]["mountPath"]
    # Every plain variable the chart sets is one the worker's settings read.
    read = {str(field.validation_alias) for field in WorkerSettings.model_fields.values()}
    assert set(env) <= read, set(env) - read
    assert env["TEMPORAL_TLS_CERT"]["value"] == f"{mount}/tls.crt"
    assert env["TEMPORAL_TLS_CA"]["value"] == f"{mount}/ca.crt"
    assert env["CUBEPAAS_WATCH_NAMESPACES"]["value"] == "team-a,team-b"
    assert any(d["kind"] == "ServiceMonitor" for d in docs)


def test_helm_template_applies_cleanly_with_a_server_side_dry_run(
    helm: str, kubectl: str, stack_env: dict[str, str], kube: Kube, crds_installed: None
) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cubepaas-system"}})
    out = run([helm, "template", "cubepaas", str(CHART), "--namespace", "cubepaas-system"], stack_env)
    applied = run([kubectl, "apply", "--dry-run=server", "-f", "-"], stack_env, stdin=out)
    # "created" on a fresh cluster; "configured"/"unchanged" where the RBAC test applied them already.
    lines = applied.splitlines()
    assert len(lines) == len([d for d in yaml.safe_load_all(out) if d]), applied
    assert all(re.search(r" (created|configured|unchanged) \(server dry run\)$", line) for line in lines), (
        applied
    )
    assert any(line.startswith("deployment.apps/cubepaas-worker ") for line in lines)


def test_helm_install_into_the_local_cluster_creates_the_worker(
    helm: str, stack_env: dict[str, str], kube: Kube, kube_api_client: Any, release_namespace: str
) -> None:
    release = release_namespace  # one release per namespace; its cluster-scoped names carry it too
    run(
        [
            helm,
            "install",
            release,
            str(CHART),
            "--namespace",
            release_namespace,
            "--set",
            "image.repository=localhost/cubepaas/devops-worker",
            # kwok "runs" the pods: the release is installed only once the Deployment is available.
            "--wait",
            "--timeout",
            "3m",
        ],
        stack_env,
    )
    try:
        status = yaml.safe_load(
            run([helm, "status", release, "-n", release_namespace, "-o", "yaml"], stack_env)
        )
        assert status["info"]["status"] == "deployed"
        deployment = kube.read_object("apps/v1", "Deployment", f"{release}-worker", release_namespace)
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == f"{release}-worker"
        assert deployment["status"].get("availableReplicas") == 2
        assert kube.read_object("rbac.authorization.k8s.io/v1", "ClusterRole", f"{release}-worker")["rules"]
        receiver = kube.read_object("apps/v1", "Deployment", f"{release}-webhooks", release_namespace)
        assert receiver["spec"]["template"]["spec"]["serviceAccountName"] == f"{release}-webhooks"
        assert receiver["status"].get("availableReplicas") == 2
        # The chart's crds/ are installed with the release unless the cluster has them already
        # (helm never overwrites CRDs): either way every kind is served afterwards.
        from kubernetes import client

        served = {
            crd.metadata.name
            for crd in client.ApiextensionsV1Api(kube_api_client).list_custom_resource_definition().items
        }
        shipped = {
            yaml.safe_load(path.read_text())["metadata"]["name"] for path in (CHART / "crds").glob("*.yaml")
        }
        assert len(shipped) == 6 and shipped <= served
    finally:
        run([helm, "uninstall", release, "-n", release_namespace], stack_env)
