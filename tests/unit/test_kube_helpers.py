"""activities.kube without a server: error classification, desired-vs-live comparison, REST paths."""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from activities.bootstrap import (
    deployment_readiness,
    desired_workloads,
    network_policy_manifest,
    project_rolebinding_manifest,
)
from activities.errors import (
    KubeConflictError,
    KubeForbiddenError,
    KubeInvalidError,
    KubeNotFoundError,
    KubeTransientError,
    TransientError,
    to_application_error,
)
from activities.kube import (
    Kube,
    classify,
    classify_status,
    contains,
    decode_secret_data,
    differs,
    encode_secret_data,
    kind_info,
)
from crds.messages import BootstrapInput, RoleBindingInput

pytestmark = pytest.mark.unit


def _status_body(code: int, reason: str, message: str) -> str:
    return json.dumps(
        {"kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message}
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, KubeNotFoundError),
        (409, KubeConflictError),
        (400, KubeInvalidError),
        (422, KubeInvalidError),
        (401, KubeForbiddenError),
        (403, KubeForbiddenError),
        (410, KubeTransientError),
        (429, KubeTransientError),
        (500, KubeTransientError),
        (503, KubeTransientError),
    ],
)
def test_each_http_status_becomes_the_error_a_retry_policy_needs(
    status: int, expected: type[Exception]
) -> None:
    err = classify_status(status, "read Secret ns/x", _status_body(status, "Reason", "the server said so"))
    assert type(err) is expected
    assert "read Secret ns/x" in err.message and "the server said so" in err.message


def test_a_conflict_is_transient_and_retryable_by_temporal() -> None:
    err = classify(ApiException(status=409, reason="Conflict"), "replace Pipeline ns/p")
    assert isinstance(err, KubeConflictError) and isinstance(err, TransientError)
    app_err = to_application_error(err)
    assert app_err.type == "KubeConflictError" and not app_err.non_retryable


def test_a_permanent_error_is_non_retryable_at_the_activity_boundary() -> None:
    app_err = to_application_error(classify_status(422, "apply Deployment ns/d", None))
    assert app_err.type == "KubeInvalidError" and app_err.non_retryable


def test_connection_failures_and_timeouts_are_transient() -> None:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 1)
    for exc in (
        urllib3.exceptions.MaxRetryError(pool, "/api", reason=None),
        urllib3.exceptions.ReadTimeoutError(pool, "/api", "read timed out"),
        ConnectionRefusedError("refused"),
        TimeoutError("timed out"),
    ):
        assert isinstance(classify(exc, "list namespaces"), KubeTransientError)


def test_an_unrelated_exception_is_not_swallowed_by_classification() -> None:
    with pytest.raises(ZeroDivisionError):
        classify(ZeroDivisionError(), "x")


def test_desired_fields_are_contained_despite_server_defaults() -> None:
    desired = {"spec": {"ports": [{"port": 80, "targetPort": 80}], "selector": {"app": "a"}}}
    live = {
        "metadata": {"resourceVersion": "5"},
        "spec": {
            "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}],
            "selector": {"app": "a"},
            "clusterIP": "10.0.0.7",
        },
    }
    assert contains(live, desired)
    assert not contains(live, {"spec": {"ports": [{"port": 81}]}})
    # A list with an extra element (a container, a port added by hand) is drift too.
    assert not contains({"ports": [{"port": 80}, {"port": 81}]}, {"ports": [{"port": 80}]})
    assert not contains({"a": 1}, {"b": None})


def test_differs_compares_labels_and_the_body_but_not_identity_or_status() -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"a": "1"}},
        "data": {"k": "v"},
    }
    live = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "uid": "u", "labels": {"a": "1", "other": "x"}},
        "data": {"k": "v"},
    }
    assert not differs(manifest, live)
    assert differs(manifest, {**live, "metadata": {"name": "c", "labels": {}}})
    assert differs(manifest, {**live, "data": {"k": "changed"}})
    assert differs(manifest, None)


def test_secret_data_round_trips_through_base64() -> None:
    values = {"token": "s3cr3t", "unicode": "päss"}
    assert decode_secret_data({"data": encode_secret_data(values)}) == values


def test_rest_paths_of_builtin_kinds() -> None:
    assert kind_info("v1", "Namespace").path(name="p") == "/api/v1/namespaces/p"
    assert (
        kind_info("apps/v1", "Deployment").path("ns", "d", "status")
        == "/apis/apps/v1/namespaces/ns/deployments/d/status"
    )
    assert (
        kind_info("rbac.authorization.k8s.io/v1", "RoleBinding").path()
        == "/apis/rbac.authorization.k8s.io/v1/rolebindings"
    )
    with pytest.raises(ValueError):
        kind_info("v1", "Unknown")


def _deployment(generation: int, observed: int | None, available: int, updated: int) -> dict[str, Any]:
    status: dict[str, Any] = {"availableReplicas": available, "updatedReplicas": updated}
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"generation": generation}, "spec": {"replicas": 1}, "status": status}


def test_a_deployment_is_ready_only_when_its_current_generation_is_available() -> None:
    assert deployment_readiness(_deployment(2, 2, 1, 1)) == (True, "")
    assert not deployment_readiness(_deployment(2, 1, 1, 1))[0]  # old status of a changed spec
    assert not deployment_readiness(_deployment(1, None, 0, 0))[0]
    assert not deployment_readiness(_deployment(1, 1, 0, 1))[0]


def test_external_jenkins_mode_desires_no_jenkins_workload() -> None:
    managed = BootstrapInput(project_namespace="p", pipeline_namespace="p-pipeline")
    external = managed.model_copy(update={"jenkins_mode": "External"})

    def names(inp: BootstrapInput) -> set[tuple[str, str]]:
        return {(m["kind"], m["metadata"]["name"]) for m in desired_workloads(inp)}

    assert ("Deployment", "jenkins") in names(managed) and ("Service", "jenkins") in names(managed)
    assert not any(name == "jenkins" for _, name in names(external))


def test_persistent_volumes_switch_workloads_from_empty_dirs_to_claims() -> None:
    inp = BootstrapInput(project_namespace="p", pipeline_namespace="pp", persistent_volumes=True)
    volumes = [
        v
        for m in desired_workloads(inp)
        if m["kind"] == "Deployment"
        for v in m["spec"]["template"]["spec"]["volumes"]
    ]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v}
    assert claims == {"jenkins-home", "registry-data", "minio-data"}


def test_network_policy_admits_the_project_namespaces_and_listed_ones() -> None:
    inp = BootstrapInput(
        project_namespace="p", pipeline_namespace="pp", allowed_ingress_namespaces=["devops-system"]
    )
    peers = network_policy_manifest(inp)["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"devops.cubepaas.io/project": "p"}}} in peers
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "devops-system"}}} in peers


def test_project_rolebinding_grants_the_cluster_role_to_the_jenkins_service_account() -> None:
    rb = project_rolebinding_manifest(RoleBindingInput(project_namespace="p", pipeline_namespace="pp"), "app")
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"}
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "jenkins", "namespace": "pp"}]
    assert rb["metadata"]["namespace"] == "app"


def test_an_unreachable_apiserver_is_a_transient_error() -> None:
    cfg = k8s.Configuration()
    cfg.host = "http://127.0.0.1:9"  # discard port: nothing listens
    cfg.retries = 0
    kube = Kube(k8s.ApiClient(cfg), request_timeout=(1.0, 1.0))
    with pytest.raises(KubeTransientError, match="list namespaces"):
        kube.list_objects("v1", "Namespace")
