"""devops.namespace.bootstrap against the real kube-apiserver (no kubelet: the test plays the
Deployment controller by writing each Deployment's status)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.bootstrap import NamespaceActivities, deployment_readiness
from activities.kube import Kube
from crds.messages import BootstrapInput, BootstrapResult
from devstack.kubelet_sim import aggregate_cluster_roles

pytestmark = pytest.mark.integration

MANAGED_OBJECTS = {
    "Namespace/{ns}",
    "ServiceAccount/jenkins",
    "RoleBinding/cubepaas-jenkins-agents",
    "Secret/jenkins-admin",
    "Secret/registry-credentials",
    "Secret/minio-credentials",
    "Deployment/jenkins",
    "Deployment/registry",
    "Deployment/minio",
    "Service/jenkins",
    "Service/registry",
    "Service/minio",
    "NetworkPolicy/cubepaas-pipeline",
}


@pytest.fixture
def admin(kube_api_client: k8s.ApiClient) -> Kube:
    """The test's own access (its writes are not counted against the activity's)."""
    return Kube(kube_api_client, field_manager="test-operator")


@pytest.fixture
def kube(kube_api_client: k8s.ApiClient) -> Kube:
    """The activity's access: its write counter is what the tests assert on."""
    return Kube(kube_api_client)


@pytest.fixture
def activities(kube: Kube) -> NamespaceActivities:
    return NamespaceActivities(kube)


def _input(**overrides: Any) -> BootstrapInput:
    suffix = uuid.uuid4().hex[:8]
    fields: dict[str, Any] = {
        "project_namespace": f"proj-{suffix}",
        "pipeline_namespace": f"proj-{suffix}-pipeline",
        "ready_timeout_seconds": 30,
        "ready_poll_seconds": 0.2,
    }
    fields.update(overrides)
    return BootstrapInput(**fields)


def mark_deployments_ready(admin: Kube, namespace: str) -> int:
    """Write what the Deployment controller would: the current generation is available."""
    marked = 0
    for deployment in admin.list_objects("apps/v1", "Deployment", namespace):
        if deployment_readiness(deployment)[0]:
            continue
        replicas = deployment["spec"].get("replicas", 1)
        status = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }
        admin.merge_patch_object(
            "apps/v1",
            "Deployment",
            deployment["metadata"]["name"],
            namespace,
            {"status": status},
            subresource="status",
        )
        marked += 1
    return marked


@contextmanager
def deployments_become_ready(admin: Kube, namespace: str) -> Iterator[None]:
    """A stand-in Deployment controller in a background thread while the activity runs."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        while not stop.wait(0.1):
            try:
                mark_deployments_ready(admin, namespace)
            except Exception as err:  # the namespace may not exist yet
                errors.append(err)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run(activities: NamespaceActivities, admin: Kube, inp: BootstrapInput) -> BootstrapResult:
    heartbeats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details)
    with deployments_become_ready(admin, inp.pipeline_namespace):
        return env.run(activities.bootstrap, inp)


def test_first_run_creates_the_whole_pipeline_namespace(activities: NamespaceActivities, admin: Kube) -> None:
    inp = _input()
    ns = inp.pipeline_namespace
    result = run(activities, admin, inp)

    assert set(result.applied_objects) == {o.format(ns=ns) for o in MANAGED_OBJECTS}
    assert result.applied == len(MANAGED_OBJECTS) and result.unchanged == 0
    assert result.writes == len(MANAGED_OBJECTS)
    namespace = admin.read_object("v1", "Namespace", ns)
    assert (
        namespace["metadata"]["labels"]["devops.cubepaas.io/pipeline-namespace-of"] == inp.project_namespace
    )
    jenkins = admin.read_secret(ns, "jenkins-admin")
    assert set(jenkins) == {"username", "password", "token"} and len(jenkins["token"]) == 34
    assert set(admin.read_secret(ns, "minio-credentials")) == {"accessKey", "secretKey"}
    assert set(admin.read_secret(ns, "registry-credentials")) == {"username", "password"}
    service = admin.read_object("v1", "Service", "jenkins", ns)
    assert [p["port"] for p in service["spec"]["ports"]] == [8080, 50000]
    assert result.jenkins_url == f"http://jenkins.{ns}.svc:8080"
    assert result.object_store_credentials_secret == "minio-credentials"
    # No generated credential leaks into the result (it is stored in the workflow history).
    dumped = result.model_dump_json()
    assert jenkins["token"] not in dumped and jenkins["password"] not in dumped


def test_a_second_run_on_a_correct_namespace_writes_nothing(
    activities: NamespaceActivities, admin: Kube, kube: Kube
) -> None:
    inp = _input()
    run(activities, admin, inp)
    writes_before = kube.total_writes

    again = run(activities, admin, inp)

    assert kube.total_writes == writes_before, kube.writes
    assert again.writes == 0 and again.applied == 0 and again.applied_objects == []
    assert again.unchanged == len(MANAGED_OBJECTS)


def test_a_drifted_namespace_is_repaired_exactly_where_it_drifted(
    activities: NamespaceActivities, admin: Kube, kube: Kube
) -> None:
    inp = _input()
    ns = inp.pipeline_namespace
    run(activities, admin, inp)
    admin.delete_object("v1", "Service", "registry", ns)
    admin.merge_patch_object(
        "apps/v1",
        "Deployment",
        "jenkins",
        ns,
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "jenkins", "image": "jenkins/jenkins:hacked"}]}}
            }
        },
    )
    before = kube.writes.copy()

    repaired = run(activities, admin, inp)

    assert sorted(repaired.applied_objects) == ["Deployment/jenkins", "Service/registry"]
    assert repaired.writes == 2 and kube.writes - before == {"Deployment": 1, "Service": 1}
    jenkins = admin.read_object("apps/v1", "Deployment", "jenkins", ns)
    assert jenkins["spec"]["template"]["spec"]["containers"][0]["image"] == inp.jenkins_image
    assert admin.find_object("v1", "Service", "registry", ns) is not None
    assert run(activities, admin, inp).writes == 0


def test_generated_secrets_are_kept_and_only_missing_keys_are_generated(
    activities: NamespaceActivities, admin: Kube
) -> None:
    inp = _input()
    ns = inp.pipeline_namespace
    run(activities, admin, inp)
    first = {
        name: admin.read_secret(ns, name)
        for name in ("jenkins-admin", "registry-credentials", "minio-credentials")
    }

    run(activities, admin, inp)
    assert {name: admin.read_secret(ns, name) for name in first} == first

    # An operator removes one key: only that one is generated again, the others are kept.
    admin.merge_patch_object("v1", "Secret", "jenkins-admin", ns, {"data": {"token": None}})
    repaired = run(activities, admin, inp)
    assert repaired.applied_objects == ["Secret/jenkins-admin"]
    now = admin.read_secret(ns, "jenkins-admin")
    assert now["password"] == first["jenkins-admin"]["password"]
    assert now["token"] and now["token"] != first["jenkins-admin"]["token"]


def test_a_secret_that_exists_before_the_first_run_is_never_rotated(
    activities: NamespaceActivities, admin: Kube
) -> None:
    inp = _input()
    ns = inp.pipeline_namespace
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "minio-credentials", "namespace": ns},
            "stringData": {"accessKey": "operator-chosen", "secretKey": "operator-secret-123"},
        }
    )
    run(activities, admin, inp)
    assert admin.read_secret(ns, "minio-credentials") == {
        "accessKey": "operator-chosen",
        "secretKey": "operator-secret-123",
    }


def test_external_jenkins_mode_creates_no_jenkins_workload(
    activities: NamespaceActivities, admin: Kube
) -> None:
    inp = _input(jenkins_mode="External")
    ns = inp.pipeline_namespace
    result = run(activities, admin, inp)

    assert {o for o in result.applied_objects if "jenkins" in o} == {
        "ServiceAccount/jenkins",  # Jenkins elsewhere may still use it for agents in this namespace
        "RoleBinding/cubepaas-jenkins-agents",
    }
    assert admin.find_object("apps/v1", "Deployment", "jenkins", ns) is None
    assert admin.find_object("v1", "Service", "jenkins", ns) is None
    assert admin.find_object("v1", "Secret", "jenkins-admin", ns) is None
    assert admin.find_object("apps/v1", "Deployment", "registry", ns) is not None
    assert result.jenkins_url is None


def test_persistent_volumes_are_claimed_when_asked_and_then_left_alone(
    activities: NamespaceActivities, admin: Kube, kube: Kube
) -> None:
    inp = _input(persistent_volumes=True, jenkins_volume_size="2Gi")
    ns = inp.pipeline_namespace
    result = run(activities, admin, inp)
    claims = {c["metadata"]["name"]: c for c in admin.list_objects("v1", "PersistentVolumeClaim", ns)}
    assert set(claims) == {"jenkins-home", "registry-data", "minio-data"}
    assert claims["jenkins-home"]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert {"PersistentVolumeClaim/jenkins-home", "Deployment/minio"} <= set(result.applied_objects)
    minio = admin.read_object("apps/v1", "Deployment", "minio", ns)
    assert minio["spec"]["template"]["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "minio-data"}}
    ]
    # A claim resized by an operator is not shrunk back (nor written at all).
    writes = kube.total_writes
    assert run(activities, admin, inp.model_copy(update={"jenkins_volume_size": "1Gi"})).writes == 0
    assert kube.total_writes == writes


def test_a_deployment_that_never_becomes_ready_fails_the_attempt_transiently_naming_it(
    activities: NamespaceActivities, admin: Kube
) -> None:
    inp = _input(ready_timeout_seconds=1, ready_poll_seconds=0.2)
    heartbeats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details)

    with pytest.raises(ApplicationError) as caught:
        env.run(activities.bootstrap, inp)

    err = caught.value
    assert err.type == "KubeTransientError" and not err.non_retryable
    assert f"Deployment {inp.pipeline_namespace}/jenkins is not ready after 1s" in err.message
    assert "registry" in err.message and "minio" in err.message
    assert any(d and d[0] == "waiting for" for d in heartbeats)


def test_only_the_deployment_still_not_ready_is_named(activities: NamespaceActivities, admin: Kube) -> None:
    inp = _input()
    ns = inp.pipeline_namespace
    run(activities, admin, inp)
    # MinIO's spec changes (a new generation) and no controller reports it.
    admin.merge_patch_object(
        "apps/v1",
        "Deployment",
        "minio",
        ns,
        {"spec": {"template": {"metadata": {"annotations": {"restartedAt": "now"}}}}},
    )
    with pytest.raises(ApplicationError, match=f"Deployment {ns}/minio is not ready") as caught:
        ActivityEnvironment().run(activities.bootstrap, inp.model_copy(update={"ready_timeout_seconds": 1}))
    assert "jenkins" not in caught.value.message


def test_the_jenkins_service_account_may_run_agent_pods_in_its_own_namespace(
    activities: NamespaceActivities, admin: Kube, sa_client_factory: Callable[[str, str], k8s.ApiClient]
) -> None:
    """The jenkins ServiceAccount may manage agent pods in its own namespace (the agents RoleBinding)."""
    aggregate_cluster_roles(admin.core.api_client)  # `edit` is aggregated; no controller-manager runs here
    inp = _input()
    ns = inp.pipeline_namespace
    run(activities, admin, inp)
    jenkins = Kube(sa_client_factory(ns, "jenkins"))
    jenkins.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "agent", "namespace": ns},
            "spec": {"containers": [{"name": "jnlp", "image": "jenkins/inbound-agent"}]},
        }
    )
    assert jenkins.read_object("v1", "Pod", "agent", ns)["metadata"]["name"] == "agent"
