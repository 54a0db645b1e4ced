"""devops.namespace.bootstrap against the local cluster: the real Deployment controller, scheduler and
kwok nodes make its Deployments available; no test writes a status."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from activity_env import activity_environment
from kubernetes import client as k8s
from temporalio.exceptions import ApplicationError

from activities.bootstrap import NamespaceActivities
from activities.kube import Kube
from crds.messages import BootstrapInput, BootstrapResult

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


# A node selector that none of the stack's nodes carries: the pod stays Pending, as in any cluster.
UNSCHEDULABLE = {"devstack.cubepaas.io/no-such-node": "true"}


def run(activities: NamespaceActivities, admin: Kube, inp: BootstrapInput) -> BootstrapResult:
    heartbeats: list[Any] = []
    env = activity_environment()
    env.on_heartbeat = lambda *details: heartbeats.append(details)
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
    # Claims of a storage class that does not exist stay Pending, so no pod can be scheduled.
    inp = _input(
        ready_timeout_seconds=1,
        ready_poll_seconds=0.2,
        persistent_volumes=True,
        storage_class="devstack-no-such-class",
    )
    heartbeats: list[Any] = []
    env = activity_environment()
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
    # An operator pins MinIO to a node that does not exist: its new pod cannot be scheduled (the
    # bootstrap does not own nodeSelector, so it leaves the change alone).
    admin.merge_patch_object(
        "apps/v1",
        "Deployment",
        "minio",
        ns,
        {"spec": {"template": {"spec": {"nodeSelector": UNSCHEDULABLE}}}},
    )
    with pytest.raises(ApplicationError, match=f"Deployment {ns}/minio is not ready") as caught:
        activity_environment().run(activities.bootstrap, inp.model_copy(update={"ready_timeout_seconds": 1}))
    assert "jenkins" not in caught.value.message


def test_the_jenkins_service_account_may_run_agent_pods_in_its_own_namespace(
    activities: NamespaceActivities, admin: Kube, sa_client_factory: Callable[[str, str], k8s.ApiClient]
) -> None:
    """The jenkins ServiceAccount may manage agent pods in its own namespace (the agents RoleBinding)."""
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
