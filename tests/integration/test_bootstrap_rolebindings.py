"""devops.rbac.reconcile against the real kube-apiserver (RBAC enforced, bootstrap ClusterRoles)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from activities.bootstrap import NamespaceActivities
from activities.errors import KubeForbiddenError
from activities.kube import Kube
from crds.messages import RoleBindingInput, RoleBindingResult
from devstack.proc import wait_for

pytestmark = pytest.mark.integration

RBAC = "rbac.authorization.k8s.io/v1"
PROJECT_LABEL = "devops.cubepaas.io/project"


@pytest.fixture
def admin(kube_api_client: k8s.ApiClient) -> Kube:
    return Kube(kube_api_client, field_manager="test-operator")


@pytest.fixture
def kube(kube_api_client: k8s.ApiClient) -> Kube:
    return Kube(kube_api_client)


@pytest.fixture
def activities(kube: Kube) -> NamespaceActivities:
    return NamespaceActivities(kube)


class Project:
    """A project namespace, its pipeline namespace and a few member namespaces, uniquely named."""

    def __init__(self, admin: Kube, members: int = 3) -> None:
        self.admin = admin
        suffix = uuid.uuid4().hex[:8]
        self.name = f"proj-{suffix}"
        self.pipeline = f"proj-{suffix}-pipeline"
        self.members = [f"proj-{suffix}-app{i}" for i in range(members)]
        self.outsider = f"other-{suffix}"
        self.namespace(self.name, labelled=True)
        self.namespace(self.pipeline, labelled=False)
        for ns in self.members:
            self.namespace(ns, labelled=True)
        self.namespace(self.outsider, labelled=False)

    def namespace(self, name: str, *, labelled: bool) -> None:
        labels = {PROJECT_LABEL: self.name} if labelled else {}
        self.admin.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        )

    @property
    def labelled(self) -> list[str]:
        return sorted([self.name, *self.members])

    def input(self, **overrides: Any) -> RoleBindingInput:
        return RoleBindingInput(project_namespace=self.name, pipeline_namespace=self.pipeline, **overrides)

    def binding(self, ns: str) -> dict[str, Any] | None:
        return self.admin.find_object(RBAC, "RoleBinding", "cubepaas-jenkins", ns)


def reconcile(activities: NamespaceActivities, inp: RoleBindingInput) -> RoleBindingResult:
    return activities.reconcile_rolebindings(inp)


def test_a_rolebinding_is_created_in_each_namespace_of_the_project_and_nowhere_else(
    activities: NamespaceActivities, admin: Kube
) -> None:
    project = Project(admin)
    result = reconcile(activities, project.input())

    assert (result.created, result.updated, result.deleted, result.unchanged) == (4, 0, 0, 0)
    assert result.namespaces == project.labelled
    for ns in project.labelled:
        rb = project.binding(ns)
        assert rb is not None
        assert rb["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "admin",
        }
        assert rb["subjects"] == [
            {"kind": "ServiceAccount", "name": "jenkins", "namespace": project.pipeline}
        ]
        assert rb["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "cubepaas-devops"
        assert rb["metadata"]["labels"][PROJECT_LABEL] == project.name
    assert project.binding(project.outsider) is None
    assert project.binding(project.pipeline) is None


def test_a_correct_state_costs_two_reads_and_no_write(
    activities: NamespaceActivities, admin: Kube, kube: Kube
) -> None:
    project = Project(admin)
    reconcile(activities, project.input())
    writes = kube.total_writes

    again = reconcile(activities, project.input())

    assert kube.total_writes == writes
    assert (again.created, again.updated, again.deleted, again.unchanged, again.writes) == (0, 0, 0, 4, 0)


def test_a_changed_role_ref_or_subject_is_repaired(activities: NamespaceActivities, admin: Kube) -> None:
    project = Project(admin)
    reconcile(activities, project.input())
    changed_role, changed_subject = project.members[0], project.members[1]
    # roleRef is immutable: someone deleted the binding and made it again with another role.
    old = project.binding(changed_role)
    assert old is not None
    admin.delete_object(RBAC, "RoleBinding", "cubepaas-jenkins", changed_role)
    admin.apply(
        {
            **{k: old[k] for k in ("apiVersion", "kind", "subjects")},
            "metadata": {
                "name": "cubepaas-jenkins",
                "namespace": changed_role,
                "labels": old["metadata"]["labels"],
            },
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        }
    )
    admin.merge_patch_object(
        RBAC,
        "RoleBinding",
        "cubepaas-jenkins",
        changed_subject,
        {"subjects": [{"kind": "ServiceAccount", "name": "intruder", "namespace": "elsewhere"}]},
    )

    result = reconcile(activities, project.input())

    assert (result.created, result.updated, result.deleted, result.unchanged) == (0, 2, 0, 2)
    assert result.writes == 3  # delete + create for the roleRef, one apply for the subject
    role_rb, subject_rb = project.binding(changed_role), project.binding(changed_subject)
    assert role_rb is not None and role_rb["roleRef"]["name"] == "admin"
    assert subject_rb is not None
    assert subject_rb["subjects"] == [
        {"kind": "ServiceAccount", "name": "jenkins", "namespace": project.pipeline}
    ]


def test_a_changed_cluster_role_setting_rebinds_every_namespace(
    activities: NamespaceActivities, admin: Kube
) -> None:
    project = Project(admin, members=1)
    reconcile(activities, project.input())
    result = reconcile(activities, project.input(cluster_role="edit"))
    assert (result.updated, result.writes) == (2, 4)
    assert all((project.binding(ns) or {})["roleRef"]["name"] == "edit" for ns in project.labelled)


def test_a_namespace_that_leaves_the_project_loses_its_rolebinding(
    activities: NamespaceActivities, admin: Kube
) -> None:
    project = Project(admin)
    reconcile(activities, project.input())
    leaving = project.members[2]
    admin.merge_patch_object(
        "v1", "Namespace", leaving, None, {"metadata": {"labels": {PROJECT_LABEL: None}}}
    )

    result = reconcile(activities, project.input())

    assert (result.created, result.updated, result.deleted, result.unchanged) == (0, 0, 1, 3)
    assert project.binding(leaving) is None
    assert leaving not in result.namespaces


def test_a_rolebinding_stripped_of_its_labels_is_relabelled_not_duplicated(
    activities: NamespaceActivities, admin: Kube
) -> None:
    project = Project(admin, members=1)
    reconcile(activities, project.input())
    ns = project.members[0]
    admin.merge_patch_object(
        RBAC, "RoleBinding", "cubepaas-jenkins", ns, {"metadata": {"labels": {PROJECT_LABEL: None}}}
    )
    result = reconcile(activities, project.input())
    assert result.writes == 1
    rb = project.binding(ns)
    assert rb is not None and rb["metadata"]["labels"][PROJECT_LABEL] == project.name


def test_the_admin_cluster_role_is_aggregated_by_the_controller_manager(admin: Kube) -> None:
    role = admin.read_object(RBAC, "ClusterRole", "admin")
    # Created by the apiserver's RBAC bootstrap policy, as an aggregated role...
    assert role["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
    selectors = role["aggregationRule"]["clusterRoleSelectors"]
    assert {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}} in selectors
    # ...whose rules the controller-manager's clusterrole-aggregation controller fills in.

    def grants_configmap_create() -> bool:
        rules = admin.read_object(RBAC, "ClusterRole", "admin").get("rules") or []
        return any("configmaps" in r.get("resources", []) and "create" in r.get("verbs", []) for r in rules)

    assert wait_for(grants_configmap_create, 30, "the aggregated rules of ClusterRole admin")


def test_the_jenkins_service_account_can_then_work_in_project_namespaces_only(
    activities: NamespaceActivities, admin: Kube, sa_client_factory: Callable[[str, str], k8s.ApiClient]
) -> None:
    project = Project(admin, members=1)
    reconcile(activities, project.input())
    jenkins = Kube(sa_client_factory(project.pipeline, "jenkins"))

    member = project.members[0]
    jenkins.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "deployed", "namespace": member},
            "data": {},
        }
    )
    assert jenkins.read_object("v1", "ConfigMap", "deployed", member)["metadata"]["name"] == "deployed"
    with pytest.raises(KubeForbiddenError):
        jenkins.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "deployed", "namespace": project.outsider},
                "data": {},
            }
        )
