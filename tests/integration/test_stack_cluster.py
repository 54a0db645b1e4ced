"""The local stack is a cluster: controllers, scheduler and kwok nodes do what a cluster's would.

Nothing here writes a status: every status asserted on is written by kube-controller-manager,
kube-scheduler or kwok.
"""

from __future__ import annotations

import http.server
import json
import os
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devstack.components import Context, http_get
from devstack.kwok import HOSTNAME_LABEL, STORAGE_CLASS, ZONE_LABEL, node_specs
from devstack.pki import Pki
from devstack.proc import wait_for
from devstack.stack import Stack
from devstack.state import read_credentials

pytestmark = pytest.mark.integration

LABEL = {"app": "stack-cluster-test"}
NODES = {spec.name for spec in node_specs()}


def _deployment(name: str, replicas: int = 2, node_selector: dict[str, str] | None = None) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {**LABEL, "deployment": name}},
            "template": {"metadata": {"labels": {**LABEL, "deployment": name}}, "spec": pod_spec},
        },
    }


def _condition(obj: Any, kind: str) -> Any:
    return next((c for c in (obj.status.conditions or []) if c.type == kind), None)


@pytest.fixture
def apps(kube_api_client: k8s.ApiClient) -> k8s.AppsV1Api:
    return k8s.AppsV1Api(kube_api_client)


@pytest.fixture
def fresh_namespace(kube_core: k8s.CoreV1Api) -> Iterator[str]:
    name = f"cluster-{uuid.uuid4().hex[:8]}"
    kube_core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        kube_core.delete_namespace(name)
    except ApiException as err:
        if err.status != 404:
            raise


def test_the_nodes_are_ready_with_their_hostname_zone_and_capacity(kube_core: k8s.CoreV1Api) -> None:
    nodes = {n.metadata.name: n for n in kube_core.list_node().items}
    assert set(nodes) >= NODES
    for name in NODES:
        node = nodes[name]
        assert node.metadata.labels[HOSTNAME_LABEL] == name
        assert node.metadata.labels[ZONE_LABEL].startswith("zone-")
        assert node.status.capacity["cpu"] == "8"
        assert _condition(node, "Ready").status == "True"  # reported by kwok, not by this test


def test_a_deployment_becomes_available_through_the_controllers_the_scheduler_and_kwok(
    apps: k8s.AppsV1Api, kube_core: k8s.CoreV1Api, fresh_namespace: str
) -> None:
    apps.create_namespaced_deployment(fresh_namespace, _deployment("web", replicas=2))

    def available() -> Any:
        dep = apps.read_namespaced_deployment("web", fresh_namespace)
        cond = _condition(dep, "Available") if dep.status else None
        return dep if cond is not None and cond.status == "True" and dep.status.ready_replicas == 2 else None

    wait_for(available, 60, "Deployment web to become Available")
    replica_sets = apps.list_namespaced_replica_set(fresh_namespace).items
    assert [rs.metadata.owner_references[0].name for rs in replica_sets] == ["web"]
    pods = kube_core.list_namespaced_pod(fresh_namespace, label_selector="deployment=web").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec.node_name in NODES  # bound by kube-scheduler
        assert pod.status.phase == "Running" and pod.status.pod_ip  # reported by kwok
        assert pod.spec.service_account_name == "default"  # the ServiceAccount admission plugin


def test_a_pod_that_no_node_matches_stays_pending_and_says_why(
    apps: k8s.AppsV1Api, kube_core: k8s.CoreV1Api, fresh_namespace: str
) -> None:
    selector = {"devstack.cubepaas.io/no-such-node": "true"}
    apps.create_namespaced_deployment(fresh_namespace, _deployment("stuck", 1, node_selector=selector))

    def unschedulable() -> Any:
        for pod in kube_core.list_namespaced_pod(fresh_namespace, label_selector="deployment=stuck").items:
            cond = _condition(pod, "PodScheduled") if pod.status else None
            if cond is not None and cond.status == "False":
                return cond
        return None

    cond = wait_for(unschedulable, 60, "the scheduler to report the pod Unschedulable")
    assert cond.reason == "Unschedulable"
    assert "node(s) didn't match Pod's node affinity/selector" in cond.message
    dep = apps.read_namespaced_deployment("stuck", fresh_namespace)
    assert not (dep.status.available_replicas or 0)


def test_a_deleted_namespace_is_emptied_and_removed_by_the_namespace_controller(
    apps: k8s.AppsV1Api, kube_core: k8s.CoreV1Api
) -> None:
    name = f"cluster-gone-{uuid.uuid4().hex[:8]}"
    kube_core.create_namespace({"metadata": {"name": name}})
    kube_core.create_namespaced_config_map(name, {"metadata": {"name": "data"}, "data": {"k": "v"}})
    apps.create_namespaced_deployment(name, _deployment("web", 1))
    wait_for(
        lambda: kube_core.list_namespaced_pod(name).items, 60, "the Deployment's pod in the new namespace"
    )

    kube_core.delete_namespace(name)

    def gone() -> bool:
        try:
            kube_core.read_namespace(name)
        except ApiException as err:
            return err.status == 404
        return False

    assert wait_for(gone, 90, f"namespace {name} to be finalized")


def test_owner_references_cascade_to_dependents(
    apps: k8s.AppsV1Api, kube_core: k8s.CoreV1Api, fresh_namespace: str
) -> None:
    owner = kube_core.create_namespaced_config_map(fresh_namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    kube_core.create_namespaced_config_map(
        fresh_namespace, {"metadata": {"name": "dependent", "ownerReferences": [ref]}}
    )
    apps.create_namespaced_deployment(fresh_namespace, _deployment("web", 1))
    wait_for(lambda: kube_core.list_namespaced_pod(fresh_namespace).items, 60, "the Deployment's pod")

    kube_core.delete_namespaced_config_map("owner", fresh_namespace)
    apps.delete_namespaced_deployment("web", fresh_namespace)  # background propagation: RS, then pods

    def dependents_gone() -> bool:
        names = {cm.metadata.name for cm in kube_core.list_namespaced_config_map(fresh_namespace).items}
        replica_sets = apps.list_namespaced_replica_set(fresh_namespace).items
        pods = kube_core.list_namespaced_pod(fresh_namespace).items
        return "dependent" not in names and not replica_sets and not pods

    assert wait_for(dependents_gone, 60, "the garbage collector to delete the dependents")


def test_a_jobs_pod_completes_and_the_job_succeeds(
    kube_api_client: k8s.ApiClient, fresh_namespace: str
) -> None:
    batch = k8s.BatchV1Api(kube_api_client)
    batch.create_namespaced_job(
        fresh_namespace,
        {
            "metadata": {"name": "once"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "run", "image": "registry.invalid/job:1"}],
                    }
                }
            },
        },
    )

    def succeeded() -> Any:
        job = batch.read_namespaced_job("once", fresh_namespace)
        return job if job.status and job.status.succeeded == 1 else None

    job = wait_for(succeeded, 60, "Job once to succeed")
    assert _condition(job, "Complete").status == "True"


def test_a_claim_of_the_default_storage_class_is_bound(
    kube_core: k8s.CoreV1Api, fresh_namespace: str
) -> None:
    kube_core.create_namespaced_persistent_volume_claim(
        fresh_namespace,
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )

    def bound() -> Any:
        claim = kube_core.read_namespaced_persistent_volume_claim("data", fresh_namespace)
        return claim if claim.status and claim.status.phase == "Bound" else None

    claim = wait_for(bound, 60, "the claim to be bound")
    assert claim.spec.storage_class_name == STORAGE_CLASS  # the DefaultStorageClass admission plugin


def test_a_new_namespace_gets_its_default_service_account_and_root_ca(
    kube_core: k8s.CoreV1Api, fresh_namespace: str, stack: Stack
) -> None:
    def ready() -> bool:
        accounts = {
            sa.metadata.name for sa in kube_core.list_namespaced_service_account(fresh_namespace).items
        }
        maps = {cm.metadata.name for cm in kube_core.list_namespaced_config_map(fresh_namespace).items}
        return "default" in accounts and "kube-root-ca.crt" in maps

    assert wait_for(ready, 30, "the default ServiceAccount and kube-root-ca.crt")
    root_ca = kube_core.read_namespaced_config_map("kube-root-ca.crt", fresh_namespace)
    assert root_ca.data["ca.crt"].strip() == stack.ca_cert_path.read_text().strip()


def test_kubectl_cordons_and_uncordons_a_node(kube_core: k8s.CoreV1Api, stack_env: dict[str, str]) -> None:
    node = sorted(NODES)[-1]
    env = dict(os.environ, KUBECONFIG=stack_env["KUBECONFIG"])

    def kubectl(*args: str) -> str:
        done = subprocess.run(
            [stack_env["KUBECTL"], *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        assert f"node/{node} cordoned" in kubectl("cordon", node)
        assert kube_core.read_node(node).spec.unschedulable is True
    finally:
        kubectl("uncordon", node)
    assert not kube_core.read_node(node).spec.unschedulable


def test_helm_installs_a_chart_into_the_stack(
    kube_core: k8s.CoreV1Api, stack_env: dict[str, str], fresh_namespace: str, tmp_path: Any
) -> None:
    chart = tmp_path / "hello"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hello\nversion: 0.1.0\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    env = dict(os.environ, KUBECONFIG=stack_env["KUBECONFIG"], HELM_CACHE_HOME=str(tmp_path / "cache"))
    done = subprocess.run(
        [stack_env["HELM"], "install", "demo", str(chart), "-n", fresh_namespace, "--set", "greeting=hi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert kube_core.read_namespaced_config_map("demo-greeting", fresh_namespace).data == {"greeting": "hi"}


@pytest.mark.parametrize("name", ["kube-controller-manager", "kube-scheduler"])
def test_the_control_plane_serves_healthz_and_authenticates_callers_by_the_stacks_ca(
    stack: Stack, name: str
) -> None:
    ctx = Context(
        dir=stack.dir, creds=read_credentials(stack.dir / "credentials.json"), pki=Pki(stack.dir / "pki")
    )
    state = stack.status_of(name)
    assert state.healthy, state.detail
    assert http_get(f"{state.url}/healthz", context=ctx.admin_ssl_context()) == (200, b"ok")
    # /metrics is not public: without a client certificate the caller is anonymous and refused.
    anonymous = ssl.create_default_context(cafile=str(ctx.pki.ca_cert))
    assert http_get(f"{state.url}/metrics", context=anonymous)[0] == 403
    assert http_get(f"{state.url}/metrics", context=ctx.admin_ssl_context())[0] == 200


class _Notifications(http.server.BaseHTTPRequestHandler):
    """Collects the registry's notification envelopes (what the triggers' receiver will get)."""

    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.extend(json.loads(body).get("events", []))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_buildah_pushes_to_the_stacks_registry_which_announces_the_push_to_the_webhook_port(
    stack_env: dict[str, str], tmp_path: Any
) -> None:
    storage = [
        "--root",
        str(tmp_path / "root"),
        "--runroot",
        str(tmp_path / "run"),
        "--storage-driver",
        "vfs",
    ]

    def buildah(*args: str) -> str:
        done = subprocess.run(
            ["buildah", *storage, *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    receiver = http.server.ThreadingHTTPServer(
        ("127.0.0.1", int(stack_env["CUBEPAAS_WEBHOOK_PORT"])), _Notifications
    )
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        (tmp_path / "hello.txt").write_text("hello from a build step\n")
        container = buildah("from", "scratch")
        buildah("copy", container, str(tmp_path / "hello.txt"), "/hello.txt")
        buildah("commit", "--quiet", container, "localhost/devstack-test:1")
        repository = f"devstack-test/{uuid.uuid4().hex[:8]}"
        target = f"docker://{stack_env['REGISTRY_HOST']}/{repository}:1"
        buildah("push", "--tls-verify=false", "localhost/devstack-test:1", target)

        status, body = http_get(f"{stack_env['REGISTRY_URL']}/v2/{repository}/tags/list")
        assert status == 200 and json.loads(body) == {"name": repository, "tags": ["1"]}

        def push_event() -> dict[str, Any] | None:
            return next(
                (
                    e
                    for e in list(_Notifications.received)
                    if e.get("action") == "push" and e.get("target", {}).get("repository") == repository
                ),
                None,
            )

        event = wait_for(push_event, 60, f"the registry's push notification for {repository}")
        assert event["target"]["tag"] == "1"
    finally:
        receiver.shutdown()
        receiver.server_close()
