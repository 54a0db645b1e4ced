"""The local kube-apiserver (+ etcd): version, CRDs, RBAC with ServiceAccount tokens, optimistic locking."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devstack.testbin import KUBE_VERSION

pytestmark = pytest.mark.integration

GROUP = "stacktest.cubepaas.io"
PLURAL = "widgets"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _status_of(call: Callable[[], Any]) -> int:
    try:
        call()
    except ApiException as err:
        return int(err.status)
    return 200


def test_version_reports_the_pinned_kubernetes_minor_release(kube_api_client: Any) -> None:
    version = client.VersionApi(kube_api_client).get_code()
    minor = ".".join(KUBE_VERSION.split(".")[:2])  # "v1.34"
    assert version.git_version.startswith(minor + "."), version.git_version


def test_a_crd_installs_and_its_objects_are_served(kube_api_client: Any, kube_core: Any) -> None:
    ext = client.ApiextensionsV1Api(kube_api_client)
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                            },
                        }
                    },
                }
            ],
        },
    }
    try:
        ext.create_custom_resource_definition(crd)  # type: ignore[arg-type]  # a dict body is accepted
    except ApiException as err:
        assert err.status == 409  # installed by an earlier run on this stack
    deadline = time.monotonic() + 30
    while True:
        status = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}").status
        conditions = (status.conditions if status else None) or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            break
        assert time.monotonic() < deadline, f"CRD not established: {conditions}"
        time.sleep(0.2)

    namespace = _unique("stacktest-crd")
    kube_core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    custom = client.CustomObjectsApi(kube_api_client)
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3},
    }
    # The discovery of a just-established CRD can lag for a moment: retry 404s briefly.
    deadline = time.monotonic() + 30
    while True:
        try:
            custom.create_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, body)
            break
        except ApiException as err:
            if err.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    got: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "w1")  # type: ignore[assignment]
    assert got["spec"] == {"size": 3}
    listed: dict[str, Any] = custom.list_namespaced_custom_object(GROUP, "v1", namespace, PLURAL)  # type: ignore[assignment]
    assert [item["metadata"]["name"] for item in listed["items"]] == ["w1"]


def test_a_service_account_token_bound_to_a_narrow_role_gets_403_outside_it_and_200_inside(
    kube_api_client: Any, kube_core: Any, sa_client_factory: Callable[[str, str], Any]
) -> None:
    namespace, elsewhere = _unique("stacktest-rbac"), _unique("stacktest-other")
    kube_core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=elsewhere)))
    limited = client.CoreV1Api(sa_client_factory(namespace, "reader"))
    rbac = client.RbacAuthorizationV1Api(kube_api_client)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="configmap-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="configmap-reader"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="configmap-reader"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
        ),
    )

    deadline = time.monotonic() + 15  # the authorizer's informers see the binding within moments
    while _status_of(lambda: limited.list_namespaced_config_map(namespace)) != 200:
        assert time.monotonic() < deadline, "the bound Role never took effect"
        time.sleep(0.2)
    assert _status_of(lambda: limited.list_namespaced_secret(namespace)) == 403
    assert _status_of(lambda: limited.list_namespaced_config_map(elsewhere)) == 403
    assert _status_of(lambda: limited.list_namespace()) == 403
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="nope"))
    assert _status_of(lambda: limited.create_namespaced_config_map(namespace, body)) == 403


def test_an_update_with_a_stale_resource_version_gets_409(kube_core: Any) -> None:
    namespace = _unique("stacktest-conflict")
    kube_core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    created = kube_core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"k": "1"})
    )
    stale = created.metadata.resource_version
    created.data = {"k": "2"}
    updated = kube_core.replace_namespaced_config_map("cm", namespace, created)
    assert updated.metadata.resource_version != stale

    conflicting = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cm", resource_version=stale), data={"k": "3"}
    )
    with pytest.raises(ApiException) as caught:
        kube_core.replace_namespaced_config_map("cm", namespace, conflicting)
    assert caught.value.status == 409
    assert kube_core.read_namespaced_config_map("cm", namespace).data == {"k": "2"}
