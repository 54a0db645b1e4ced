"""activities.kube against the real kube-apiserver: errors classified once, SSA semantics, secrets."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from activities.errors import (
    KubeConflictError,
    KubeForbiddenError,
    KubeInvalidError,
    KubeNotFoundError,
)
from activities.kube import Kube, Outcome, encode_secret_data, kube_errors

pytestmark = pytest.mark.integration


@pytest.fixture
def kube(kube_api_client: Any, crds_installed: None) -> Kube:
    """A fresh Kube per test: its write counter starts at zero."""
    return Kube(kube_api_client)


def _configmap(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def test_reading_a_missing_object_raises_not_found(kube: Kube, namespace: str) -> None:
    with pytest.raises(KubeNotFoundError, match=f"read ConfigMap {namespace}/absent: HTTP 404 NotFound"):
        kube.read_object("v1", "ConfigMap", "absent", namespace)
    assert kube.find_object("v1", "ConfigMap", "absent", namespace) is None
    with pytest.raises(KubeNotFoundError):
        kube.read_secret(namespace, "absent")


def test_creating_an_existing_object_through_a_typed_client_is_a_transient_conflict(
    kube: Kube, namespace: str
) -> None:
    body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="twice"), data={"a": "1"})
    with kube_errors("create ConfigMap"):
        kube.core.create_namespaced_config_map(namespace, body)
    with pytest.raises(KubeConflictError, match="AlreadyExists"), kube_errors("create ConfigMap"):
        kube.core.create_namespaced_config_map(namespace, body)


def test_a_stale_resource_version_is_a_conflict_error(kube: Kube, namespace: str) -> None:
    created = kube.apply(_configmap(namespace, "cas", {"n": "1"}))
    stale = created["metadata"]["resourceVersion"]
    kube.apply(_configmap(namespace, "cas", {"n": "2"}))
    with pytest.raises(KubeConflictError, match="409 Conflict"):
        kube.merge_patch_object(
            "v1", "ConfigMap", "cas", namespace, {"metadata": {"resourceVersion": stale}, "data": {"n": "3"}}
        )
    with pytest.raises(KubeConflictError):
        kube.delete_object("v1", "ConfigMap", "cas", namespace, resource_version=stale)
    assert kube.read_object("v1", "ConfigMap", "cas", namespace)["data"] == {"n": "2"}


def test_an_object_the_apiserver_rejects_is_invalid(kube: Kube, namespace: str) -> None:
    with pytest.raises(KubeInvalidError, match="Invalid"):
        kube.apply(_configmap(namespace, "Not_A_Valid_Name", {}))
    deployment_without_selector = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "broken", "namespace": namespace},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }
    with pytest.raises(KubeInvalidError, match="selector"):
        kube.apply(deployment_without_selector)


def test_a_service_account_without_rights_gets_forbidden(
    kube: Kube, namespace: str, sa_client_factory: Callable[[str, str], k8s.ApiClient]
) -> None:
    kube.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody", "namespace": namespace}}
    )
    narrow = Kube(sa_client_factory(namespace, "nobody"))
    with pytest.raises(KubeForbiddenError, match="403 Forbidden"):
        narrow.read_object("v1", "ConfigMap", "anything", namespace)
    with pytest.raises(KubeForbiddenError):
        narrow.apply(_configmap(namespace, "x", {}))


def test_applying_the_same_manifest_twice_changes_nothing_the_second_time(kube: Kube, namespace: str) -> None:
    manifest = _configmap(namespace, "ssa", {"k": "v"})
    first = kube.apply(manifest)
    second = kube.apply(manifest)
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert kube.writes["ConfigMap"] == 2  # both were write requests, only the first changed anything
    managers = {m["manager"] for m in second["metadata"]["managedFields"]}
    assert managers == {"cubepaas-devops"}


def test_ensure_costs_one_read_and_no_write_when_the_object_is_correct(kube: Kube, namespace: str) -> None:
    manifest = _configmap(namespace, "ensured", {"k": "v"})
    assert kube.ensure(manifest) is Outcome.CREATED
    writes = kube.total_writes
    assert kube.ensure(manifest) is Outcome.UNCHANGED
    assert kube.total_writes == writes
    kube.merge_patch_object("v1", "ConfigMap", "ensured", namespace, {"data": {"k": "drifted"}})
    assert kube.ensure(manifest) is Outcome.UPDATED
    assert kube.read_object("v1", "ConfigMap", "ensured", namespace)["data"] == {"k": "v"}


def test_apply_without_force_conflicts_with_another_manager_and_force_takes_over(
    kube: Kube, namespace: str
) -> None:
    kube.apply(_configmap(namespace, "shared", {"k": "theirs"}), field_manager="someone-else")
    with pytest.raises(KubeConflictError, match="someone-else"):
        kube.apply(_configmap(namespace, "shared", {"k": "ours"}), force=False)
    applied = kube.apply(_configmap(namespace, "shared", {"k": "ours"}), force=True)
    assert applied["data"] == {"k": "ours"}
    owners = {m["manager"] for m in applied["metadata"]["managedFields"] if "f:data" in m.get("fieldsV1", {})}
    assert owners == {"cubepaas-devops"}


def test_changing_an_immutable_role_ref_recreates_the_rolebinding(kube: Kube, namespace: str) -> None:
    def binding(role: str) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "rb", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "jenkins", "namespace": namespace}],
        }

    first = kube.apply(binding("view"))
    with pytest.raises(KubeInvalidError, match="roleRef"):
        kube.apply(binding("edit"))
    assert kube.ensure(binding("edit")) is Outcome.RECREATED
    live = kube.read_object("rbac.authorization.k8s.io/v1", "RoleBinding", "rb", namespace)
    assert live["roleRef"]["name"] == "edit" and live["metadata"]["uid"] != first["metadata"]["uid"]


def test_secrets_are_read_decoded(kube: Kube, namespace: str) -> None:
    values = {"username": "admin", "token": "11abc", "note": "ünïcode"}
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": namespace},
            "data": encode_secret_data(values),
        }
    )
    assert kube.read_secret(namespace, "creds") == values


def test_label_selected_lists_return_only_matching_objects_across_namespaces(
    kube: Kube, namespace: str
) -> None:
    mark = uuid.uuid4().hex[:8]
    for i in range(3):
        cm = _configmap(namespace, f"sel-{i}", {})
        cm["metadata"]["labels"] = {"mark": mark if i < 2 else "other"}
        kube.apply(cm)
    found = kube.list_objects("v1", "ConfigMap", label_selector=f"mark={mark}")
    assert sorted(o["metadata"]["name"] for o in found) == ["sel-0", "sel-1"]
    assert all(o["kind"] == "ConfigMap" for o in found)
