"""Events on a PipelineExecution from its status writes, and the CRD's notifier validation, on the real
apiserver."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s

from activities.errors import KubeInvalidError
from activities.events import EventRecorder, RunEvent
from activities.execution import ExecutionActivities
from activities.kube import Kube
from crds.execution import (
    PipelineExecution,
    PipelineExecutionSpec,
    PipelineExecutionStatus,
    StageStatus,
    WorkflowRef,
)
from crds.messages import ExecutionRef, WriteStatusInput
from crds.meta import ObjectMeta
from crds.reasons import EventReason, ExecutionPhase, StageState

pytestmark = pytest.mark.integration


@pytest.fixture
def kube(kube_api_client: k8s.ApiClient, crds_installed: None) -> Kube:
    return Kube(kube_api_client)


def _created(kube: Kube, namespace: str) -> PipelineExecution:
    return kube.create(
        PipelineExecution(
            # Routed to a task queue no worker serves: a worker running in the same session leaves it alone.
            metadata=ObjectMeta(
                name="app-1", namespace=namespace, annotations={"devops.cubepaas.io/task-queue": "no-worker"}
            ),
            spec=PipelineExecutionSpec(pipeline_name="app", run=1),
        )
    )


def _writer(kube: Kube, namespace: str) -> tuple[PipelineExecution, ExecutionActivities, ExecutionRef]:
    """A new run's CR, the activities that write its status, and its reference."""
    pe = _created(kube, namespace)
    return (
        pe,
        ExecutionActivities(kube),
        ExecutionRef(namespace=namespace, name="app-1", uid=pe.metadata.uid or ""),
    )


def _events(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    items = kube.list_objects("v1", "Event", namespace, field_selector="involvedObject.name=app-1")
    return {e["reason"]: e for e in items}


def test_status_writes_record_events_once_per_transition_and_repeats_raise_the_count(
    kube: Kube, namespace: str
) -> None:
    pe, acts, ref = _writer(kube, namespace)

    def write(status: PipelineExecutionStatus) -> None:
        acts.write_status(WriteStatusInput(execution=ref, status=status))

    st = PipelineExecutionStatus(phase=ExecutionPhase.BUILDING, message="Building")
    st.stages = [
        StageStatus(name="Clone", state=StageState.BUILDING),
        StageStatus(name="Test"),
        StageStatus(name="Lint"),
        StageStatus(name="Ship"),
    ]
    write(st)
    st.stages[0].state = StageState.SUCCESS  # the clone stage: no Event of its own
    write(st)
    st.stages[1].state = StageState.SUCCESS
    write(st)
    write(st)  # unchanged: nothing written, no event
    st.stages[2].state = StageState.SUCCESS
    write(st)
    st.stages[3].state = StageState.SUCCESS
    st.phase, st.message, st.duration = ExecutionPhase.SUCCESS, "all good", "5s"
    write(st)

    events = _events(kube, namespace)
    assert set(events) == {"Started", "StageSucceeded", "Succeeded"}
    stage = events["StageSucceeded"]
    assert (stage["count"], stage["type"], stage["message"]) == (2, "Normal", "Stage 2 'Lint' succeeded")
    # The stage that succeeded in the ending write is told by the ending Event: one write, one Event.
    assert events["Succeeded"]["message"] == "Run ended Success after 5s: all good (stage 3 'Ship' succeeded)"
    involved = stage["involvedObject"]
    assert (involved["kind"], involved["uid"], involved["apiVersion"]) == (
        "PipelineExecution",
        pe.metadata.uid,
        "devops.cubepaas.io/v1alpha1",
    )
    assert stage["source"]["component"] == "cubepaas-devops"


def test_the_apiserver_refuses_a_notifier_with_no_kind_or_two(kube: Kube, namespace: str) -> None:
    setting: dict[str, Any] = {
        "apiVersion": "devops.cubepaas.io/v1alpha1",
        "kind": "PipelineSetting",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {"notifiers": [{"name": "x"}]},
    }
    with pytest.raises(KubeInvalidError, match="exactly one of smtp, slack, msteams, webhook"):
        kube.apply(setting)
    setting["spec"]["notifiers"] = [
        {"name": "x", "webhook": {"url": "http://h"}, "slack": {"urlSecretRef": {"name": "s", "key": "url"}}}
    ]
    with pytest.raises(KubeInvalidError, match="exactly one of"):
        kube.apply(setting)
    setting["spec"]["notifiers"] = [{"name": "x", "webhook": {"url": "http://h"}}]
    kube.apply(setting)


class CountingKube(Kube):
    """Counts the GETs of PipelineExecutions this client sends."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        super().__init__(api_client)
        self.reads = 0

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        if method == "GET" and "/pipelineexecutions/" in path:
            self.reads += 1
        return super()._request(method, path, **kw)


def test_a_status_write_after_this_workers_own_reads_nothing_and_one_after_anothers_write_reads_again(
    kube_api_client: k8s.ApiClient, crds_installed: None, namespace: str
) -> None:
    counting = CountingKube(kube_api_client)
    pe = _created(counting, namespace)
    acts = ExecutionActivities(counting)
    ref = ExecutionRef(namespace=namespace, name="app-1", uid=pe.metadata.uid or "")
    st = PipelineExecutionStatus(phase=ExecutionPhase.BUILDING, message="Building")

    assert acts.write(WriteStatusInput(execution=ref, status=st)).written
    assert counting.reads == 1  # nothing remembered yet: read first
    st.message = "Running stage 'Test'"
    assert acts.write(WriteStatusInput(execution=ref, status=st)).written
    assert counting.reads == 1  # the CR as the last write left it, sent as the precondition

    # Someone else writes (a field the workflow owns, and the bridge's own): the remembered version is
    # stale, the patch is refused (409), the CR read, and the difference written over the live one.
    counting.patch_status(
        PipelineExecution, namespace, "app-1", {"message": "edited", "workflow": {"id": "w"}}
    )
    st.message = "Running stage 'Deploy'"
    assert acts.write(WriteStatusInput(execution=ref, status=st)).written
    assert counting.reads == 2
    live = counting.get(PipelineExecution, namespace, "app-1").status
    assert live is not None and live.message == "Running stage 'Deploy'"
    assert live.workflow is not None and live.workflow.id == "w"

    # The terminal write is the last one remembered: a later write (none is expected) reads again.
    st.phase, st.message = ExecutionPhase.SUCCESS, "done"
    assert acts.write(WriteStatusInput(execution=ref, status=st)).written
    reads = counting.reads
    assert not acts.write(WriteStatusInput(execution=ref, status=st)).written
    assert counting.reads == reads + 1


def test_a_status_with_its_workflow_link_writes_it_and_one_without_leaves_the_bridges_alone(
    kube: Kube, namespace: str
) -> None:
    _, acts, ref = _writer(kube, namespace)
    # A run of a version that did not link itself: the bridge's link stays.
    kube.patch_status(PipelineExecution, namespace, "app-1", {"workflow": {"id": "by-the-bridge"}})
    old = PipelineExecutionStatus(phase=ExecutionPhase.BUILDING, message="Building")
    assert acts.write(WriteStatusInput(execution=ref, status=old)).written
    live = kube.get(PipelineExecution, namespace, "app-1").status
    assert live is not None and live.workflow is not None and live.workflow.id == "by-the-bridge"
    # A run that links itself writes its link with its status.
    link = WorkflowRef.of("http://ui:8233", "default", "pe-wf", "run-1")
    new = old.model_copy(update={"workflow": link, "message": "Running"})
    assert acts.write(WriteStatusInput(execution=ref, status=new)).written
    live = kube.get(PipelineExecution, namespace, "app-1").status
    assert live is not None and live.workflow == link
    assert live.workflow.ui_url == "http://ui:8233/namespaces/default/workflows/pe-wf/run-1/history"


def test_an_event_recorded_again_by_a_worker_that_did_not_remember_it_is_applied_over(
    kube: Kube, namespace: str
) -> None:
    pe = _created(kube, namespace)
    started = RunEvent(EventReason.STARTED, "Run started: Building")
    EventRecorder(kube).record(pe, [started])  # created
    EventRecorder(kube).record(pe, [started])  # a restarted worker: the create is refused, the apply lands
    event = _events(kube, namespace)["Started"]
    assert event["count"] == 1 and event["message"] == "Run started: Building"
