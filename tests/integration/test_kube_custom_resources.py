"""activities.kube's dynamic side: our custom resources in and out as pydantic models."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from activities.errors import KubeConflictError, KubeInvalidError, KubeNotFoundError
from activities.kube import Kube
from crds.execution import PipelineExecution, PipelineExecutionSpec, PipelineExecutionStatus
from crds.meta import ObjectMeta
from crds.reasons import ExecutionPhase

pytestmark = pytest.mark.integration


@pytest.fixture
def kube(kube_api_client: k8s.ApiClient, crds_installed: None) -> Kube:
    """A fresh Kube per test: its write counter starts at zero."""
    return Kube(kube_api_client)


def _execution(namespace: str, name: str = "app-1", run: int = 1) -> PipelineExecution:
    return PipelineExecution(
        # Routed to a task queue no worker serves: a worker running in the same session leaves it alone.
        metadata=ObjectMeta(
            name=name,
            namespace=namespace,
            labels={"devops.cubepaas.io/pipeline": "app"},
            annotations={"devops.cubepaas.io/task-queue": "kube-tests-no-worker"},
        ),
        spec=PipelineExecutionSpec(pipeline_name="app", run=run, branch="main"),
    )


def test_a_custom_resource_goes_in_and_comes_back_as_its_model(kube: Kube, namespace: str) -> None:
    created = kube.create(_execution(namespace))
    assert isinstance(created, PipelineExecution) and created.metadata.uid
    read = kube.get(PipelineExecution, namespace, "app-1")
    assert read.spec.pipeline_name == "app" and read.spec.run == 1 and read.spec.branch == "main"
    assert kube.find(PipelineExecution, namespace, "absent") is None
    with pytest.raises(KubeNotFoundError, match=f"read PipelineExecution {namespace}/absent"):
        kube.get(PipelineExecution, namespace, "absent")
    assert kube.writes["PipelineExecution"] == 1


def test_creating_a_taken_name_is_a_conflict(kube: Kube, namespace: str) -> None:
    kube.create(_execution(namespace))
    with pytest.raises(KubeConflictError, match="AlreadyExists"):
        kube.create(_execution(namespace))


def test_the_server_rejects_an_invalid_object_as_invalid_naming_the_field(kube: Kube, namespace: str) -> None:
    bad = _execution(namespace).to_dict()
    del bad["spec"]["pipelineName"]
    with pytest.raises(KubeInvalidError, match="pipelineName"):
        kube.apply(bad)  # server-side apply works for our kinds too
    kube.create(_execution(namespace))
    with pytest.raises(KubeInvalidError, match="run is immutable"):
        kube.patch(PipelineExecution, namespace, "app-1", {"spec": {"run": 2}})


def test_status_goes_through_the_status_subresource_and_leaves_spec_alone(kube: Kube, namespace: str) -> None:
    kube.create(_execution(namespace))
    status = PipelineExecutionStatus(phase=ExecutionPhase.BUILDING, message="Running stage 'Build'")
    patched = kube.patch_status(PipelineExecution, namespace, "app-1", status)
    assert patched.status is not None and patched.status.phase is ExecutionPhase.BUILDING
    # A status patch that tries to change spec changes only status.
    kube.merge_patch_object(
        "devops.cubepaas.io/v1alpha1",
        "PipelineExecution",
        "app-1",
        namespace,
        {"spec": {"branch": "hacked"}, "status": {"message": "still building"}},
        subresource="status",
    )
    now = kube.get(PipelineExecution, namespace, "app-1")
    assert now.spec.branch == "main" and now.status is not None and now.status.message == "still building"


def test_a_stale_resource_version_loses_the_compare_and_swap(kube: Kube, namespace: str) -> None:
    first = kube.create(_execution(namespace))
    stale_rv = first.metadata.resource_version
    kube.patch_status(
        PipelineExecution, namespace, "app-1", {"message": "moved on"}, resource_version=stale_rv
    )
    with pytest.raises(KubeConflictError):
        kube.patch_status(
            PipelineExecution, namespace, "app-1", {"message": "late"}, resource_version=stale_rv
        )

    current = kube.get(PipelineExecution, namespace, "app-1")
    stale = current.model_copy(deep=True)
    current.spec.paused = True
    replaced = kube.replace(current)
    assert replaced.spec.paused and replaced.metadata.resource_version != stale.metadata.resource_version
    stale.spec.cancelled = True
    with pytest.raises(KubeConflictError, match="409"):
        kube.replace(stale)
    with pytest.raises(ValueError, match="resourceVersion"):
        kube.replace(_execution(namespace))


def test_lists_select_by_label(kube: Kube, namespace: str) -> None:
    for run in (1, 2):
        kube.create(_execution(namespace, f"app-{run}", run))
    other = _execution(namespace, "other-1")
    other.metadata.labels = {"devops.cubepaas.io/pipeline": "other"}
    kube.create(other)
    found = kube.list_resources(
        PipelineExecution, namespace, label_selector="devops.cubepaas.io/pipeline=app"
    )
    assert sorted(e.name for e in found) == ["app-1", "app-2"]
    assert {e.metadata.name for e in kube.list_resources(PipelineExecution)} >= {"app-1", "app-2", "other-1"}
    kube.delete(PipelineExecution, namespace, "other-1")
    kube.delete(PipelineExecution, namespace, "other-1")  # already gone: fine by default
    with pytest.raises(KubeNotFoundError):
        kube.delete(PipelineExecution, namespace, "other-1", missing_ok=False)
