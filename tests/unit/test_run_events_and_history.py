"""The Kubernetes Events a status change produces, and which runs a history limit deletes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activities.events import event_name, status_events
from activities.history import executions_to_delete
from crds.execution import (
    JenkinsBuildRef,
    PipelineExecution,
    PipelineExecutionSpec,
    PipelineExecutionStatus,
    RunSummary,
    StageStatus,
)
from crds.meta import ObjectMeta
from crds.pipeline import ExecutionHistoryLimit, PipelineSpec
from crds.reasons import ConditionStatus, ConditionType, EventReason, ExecutionPhase, StageState

pytestmark = pytest.mark.unit


def status(phase: ExecutionPhase | None, *stages: StageState, **fields: object) -> PipelineExecutionStatus:
    st = PipelineExecutionStatus(phase=phase, **fields)
    st.stages = [StageStatus(name=f"s{i}", state=s) for i, s in enumerate(stages)]
    return st


def reasons(old: PipelineExecutionStatus | None, new: PipelineExecutionStatus) -> list[str]:
    return [e.reason.value for e in status_events(old, new)]


W, B, OK, KO = StageState.WAITING, StageState.BUILDING, StageState.SUCCESS, StageState.FAILED


def test_the_first_status_is_started_and_queueing_is_queued() -> None:
    assert reasons(None, status(ExecutionPhase.WAITING)) == ["Started"]
    assert reasons(status(ExecutionPhase.WAITING), status(ExecutionPhase.QUEUEING)) == ["Queued"]
    assert reasons(status(ExecutionPhase.QUEUEING), status(ExecutionPhase.QUEUEING)) == []


def test_stage_ends_and_the_build_start_are_told_once_each() -> None:
    before = status(ExecutionPhase.BUILDING, OK, B, W)
    after = status(ExecutionPhase.BUILDING, OK, KO, W, jenkins=JenkinsBuildRef(job="j", build=3))
    events = status_events(before, after)
    assert [(e.reason, e.type) for e in events] == [
        (EventReason.BUILD_STARTED, "Normal"),
        (EventReason.STAGE_FAILED, "Warning"),
    ]
    assert events[1].message == "Stage 1 's1' failed"
    assert reasons(after, after) == []


def test_a_build_started_with_the_run_is_named_in_started() -> None:
    first = status(ExecutionPhase.BUILDING, B, jenkins=JenkinsBuildRef(job="j", build=1), message="Building")
    events = status_events(None, first)
    assert [(e.reason, e.message) for e in events] == [
        (EventReason.STARTED, "Run started: Building; Jenkins build j #1")
    ]


def test_a_run_that_starts_and_ends_in_one_write_gets_one_event_that_tells_it_all() -> None:
    done = status(
        ExecutionPhase.SUCCESS, OK, OK, jenkins=JenkinsBuildRef(job="j", build=4), duration="2s", message="ok"
    )
    events = status_events(None, done)
    assert [(e.reason, e.type) for e in events] == [(EventReason.SUCCEEDED, "Normal")]
    assert events[0].message == (
        "Run ended Success after 2s: ok (started; Jenkins build j #4; stage 1 's1' succeeded)"
    )


def test_a_stage_that_fails_in_the_ending_write_keeps_its_own_warning() -> None:
    ref = JenkinsBuildRef(job="j", build=2)
    building = status(ExecutionPhase.BUILDING, B, B, B, jenkins=ref)
    failed = status(ExecutionPhase.FAILED, OK, OK, KO, jenkins=ref, duration="3s")
    events = status_events(building, failed)
    assert [(e.reason, e.type) for e in events] == [
        (EventReason.STAGE_FAILED, "Warning"),
        (EventReason.FAILED, "Warning"),
    ]
    assert events[1].message == "Run ended Failed after 3s (stage 1 's1' succeeded)"


def test_the_clone_stage_is_told_when_it_fails_not_when_it_succeeds() -> None:
    building = status(ExecutionPhase.BUILDING, B, W)
    assert reasons(building, status(ExecutionPhase.BUILDING, OK, B)) == []
    failed = status_events(building, status(ExecutionPhase.FAILED, KO, W))
    assert [(e.reason, e.message) for e in failed] == [
        (EventReason.STAGE_FAILED, "Stage 0 's0' failed"),
        (EventReason.FAILED, "Run ended Failed"),
    ]


def test_approval_pause_resume_and_the_end_are_told_with_warnings_for_bad_endings() -> None:
    building = status(ExecutionPhase.BUILDING, OK, W)
    waiting = status(ExecutionPhase.BUILDING, OK, W, pending_gate=1)
    assert reasons(building, waiting) == ["WaitingForApproval"]
    paused = status(ExecutionPhase.PAUSED, OK, W)
    assert reasons(building, paused) == ["Paused"]
    assert reasons(paused, building) == ["Resumed"]
    failed = status(ExecutionPhase.FAILED, OK, KO, duration="12s", message="step failed")
    events = status_events(building, failed)
    assert [(e.reason, e.type) for e in events] == [
        (EventReason.STAGE_FAILED, "Warning"),
        (EventReason.FAILED, "Warning"),
    ]
    assert events[1].message == "Run ended Failed after 12s: step failed"
    succeeded = status_events(building, status(ExecutionPhase.SUCCESS, OK, OK))
    assert [(e.reason, e.type, e.message) for e in succeeded] == [
        (EventReason.SUCCEEDED, "Normal", "Run ended Success (stage 1 's1' succeeded)")
    ]
    assert reasons(failed, failed) == []


def test_each_run_and_reason_has_one_event_object_whose_count_grows() -> None:
    pe = PipelineExecution(
        metadata=ObjectMeta(name="app-3", namespace="p", uid="abc"),
        spec=PipelineExecutionSpec(pipeline_name="app", run=3),
    )
    name = event_name(pe, EventReason.STAGE_SUCCEEDED)
    assert name.startswith("app-3.") and name.endswith(".stagesucceeded")
    recreated = pe.model_copy(update={"metadata": ObjectMeta(name="app-3", namespace="p", uid="other")})
    assert event_name(recreated, EventReason.STAGE_SUCCEEDED) != name


# --- history limits -----------------------------------------------------------------------------------


def run(n: int, phase: ExecutionPhase | None, notifying: bool = False) -> PipelineExecution:
    st = PipelineExecutionStatus(phase=phase)
    if notifying:
        now = datetime.now(UTC)
        st.set_condition(ConditionType.NOTIFIED, ConditionStatus.UNKNOWN, "Notifying", None, now)
    return PipelineExecution(
        metadata=ObjectMeta(name=f"app-{n}", namespace="p", uid=f"u{n}"),
        spec=PipelineExecutionSpec(pipeline_name="app", run=n),
        status=st,
    )


def names(runs: list[RunSummary]) -> list[str]:
    return [r.name for r in runs]


def test_the_newest_successful_and_failed_runs_are_kept_and_older_finished_ones_deleted() -> None:
    S, F, A = ExecutionPhase.SUCCESS, ExecutionPhase.FAILED, ExecutionPhase.ABORTED
    runs = [run(1, S), run(2, F), run(3, S), run(4, A), run(5, S), run(6, F), run(7, S)]
    doomed = executions_to_delete([r.summary() for r in runs], ExecutionHistoryLimit(successful=2, failed=1))
    assert names(doomed) == ["app-1", "app-2", "app-3", "app-4"]


def test_running_paused_queued_and_still_notifying_runs_are_never_deleted_nor_counted() -> None:
    S = ExecutionPhase.SUCCESS
    runs = [
        run(1, ExecutionPhase.PAUSED),
        run(2, ExecutionPhase.BUILDING),
        run(3, S, notifying=True),
        run(4, S),
        run(5, ExecutionPhase.QUEUEING),
        run(6, S),
        run(7, None),
    ]
    limit = ExecutionHistoryLimit(successful=1, failed=1)
    assert names(executions_to_delete([r.summary() for r in runs], limit)) == ["app-4"]


def test_a_run_summarised_from_the_apiservers_json_equals_the_one_from_its_model() -> None:
    for pe in (run(3, ExecutionPhase.SUCCESS, notifying=True), run(4, ExecutionPhase.FAILED), run(5, None)):
        assert RunSummary.of(pe.to_dict()) == pe.summary()
    assert RunSummary.of(run(6, ExecutionPhase.SUCCESS).to_dict()) == RunSummary(
        "app-6", "u6", "app", 6, ExecutionPhase.SUCCESS, notifying=False
    )


def test_an_object_without_a_run_number_or_with_an_unknown_phase_counts_as_no_finished_run() -> None:
    assert RunSummary.of({"metadata": {"name": "x"}, "spec": {"pipelineName": "app"}}) is None
    odd = RunSummary.of(
        {"metadata": {"name": "x"}, "spec": {"pipelineName": "app", "run": 1}, "status": {"phase": "Zz"}}
    )
    assert odd is not None and not odd.is_finished


def test_the_default_history_limits_are_fifty_and_fifty() -> None:
    spec = PipelineSpec(repository_url="https://x/y.git")
    assert (spec.execution_history_limit.successful, spec.execution_history_limit.failed) == (50, 50)
    assert spec.to_dict()["executionHistoryLimit"] == {"successful": 50, "failed": 50}
