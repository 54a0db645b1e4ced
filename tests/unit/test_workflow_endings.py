"""How a run ends, and what the control signals do to its state (pure functions, no server)."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, TimeoutError, TimeoutType

from activities.errors import ConfigError, JenkinsPermanentError, PermanentError, to_application_error
from crds import build_status
from crds.execution import PipelineExecutionStatus
from crds.messages import (
    BuildSnapshot,
    ControlInput,
    ExecutionState,
    GateDecisionInput,
    RunStep,
    StepSnapshot,
)
from crds.parse import parse_pipeline_file
from crds.reasons import ConditionType, ExecutionPhase, Reason
from workflows import controls, endings, progress

pytestmark = pytest.mark.unit

FILE = """
stages:
- name: Test
  steps:
  - runScriptConfig: {image: alpine, shellScript: "true"}
  - runScriptConfig: {image: alpine, shellScript: "true"}
"""


def activity_error(cause: BaseException, activity_type: str = "devops.logs.store_step") -> ActivityError:
    err = ActivityError(
        "Activity task failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="w",
        activity_type=activity_type,
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    err.__cause__ = cause
    return err


def test_the_ending_of_a_failed_build_names_the_failed_step_and_stage() -> None:
    config = parse_pipeline_file(FILE)
    status = PipelineExecutionStatus()
    progress.init_stages(status, config, "main", "push")
    snap = BuildSnapshot(
        building=False,
        result="FAILURE",
        steps=[StepSnapshot(stage=1, step=1, state="Failed", started_ms=1, ended_ms=2)],
    )
    build_status.apply_snapshot(status, snap, config)
    ending = endings.for_build(status, snap, rejected=False, stop_requested=False)
    assert (ending.phase, ending.reason) == (ExecutionPhase.FAILED, Reason.STEP_FAILED)
    assert "Test" in ending.message and status.stages[1].steps[1].name in ending.message


@pytest.mark.parametrize(
    ("step", "condition", "reason"),
    [
        (RunStep.LOAD, ConditionType.INITIALIZED, Reason.CONFIG_INVALID),
        (RunStep.QUEUE, ConditionType.PROVISIONED, Reason.QUOTA_UNAVAILABLE),
        (RunStep.PROVISION, ConditionType.PROVISIONED, Reason.JENKINS_NOT_READY),
        (RunStep.BUILD, ConditionType.BUILT, Reason.BUILD_FAILED),
        (RunStep.FOLLOW, ConditionType.BUILT, Reason.BUILD_FAILED),
    ],
)
def test_an_error_without_a_reason_fails_the_run_with_the_default_reason_of_its_phase(
    step: RunStep, condition: ConditionType, reason: Reason
) -> None:
    err = activity_error(to_application_error(PermanentError("the object store refused the upload")))
    ending = endings.for_error(step, err)
    assert (ending.phase, ending.failed, ending.reason) == (ExecutionPhase.FAILED, condition, reason)
    assert ending.message == "the object store refused the upload"


def test_an_error_that_names_a_reason_fails_the_run_with_that_reason() -> None:
    err = activity_error(to_application_error(ConfigError("bad file", reason=Reason.CONFIG_INVALID)))
    assert endings.for_error(RunStep.BUILD, err).reason == Reason.CONFIG_INVALID
    gone = activity_error(
        to_application_error(JenkinsPermanentError("build x #1", reason=Reason.JENKINS_NOT_FOUND))
    )
    ending = endings.for_error(RunStep.FOLLOW, gone)
    assert ending.reason == Reason.JENKINS_NOT_FOUND and "deleted in Jenkins" in ending.message


def test_a_reason_outside_the_closed_list_is_replaced_by_the_phases_default() -> None:
    err = activity_error(ApplicationError("odd", "NoSuchReason", type="X", non_retryable=True))
    assert endings.for_error(RunStep.PROVISION, err).reason == Reason.JENKINS_NOT_READY


def test_an_activity_whose_retries_timed_out_says_which_activity_timed_out() -> None:
    timeout = TimeoutError("timeout", type=TimeoutType.SCHEDULE_TO_CLOSE, last_heartbeat_details=[])
    ending = endings.for_error(RunStep.FOLLOW, activity_error(timeout))
    assert "devops.logs.store_step timed out (schedule-to-close)" in ending.message


def test_an_aborted_build_is_a_cancel_only_when_the_run_asked_for_the_stop() -> None:
    status = PipelineExecutionStatus()
    snap = BuildSnapshot(building=False, result="ABORTED")
    ours = endings.for_build(status, snap, rejected=False, stop_requested=True)
    assert (ours.phase, ours.reason) == (ExecutionPhase.ABORTED, Reason.CANCELLED)
    assert endings.aborted_by_jenkins(snap, rejected=False, stop_requested=False)
    theirs = endings.for_build(
        status, snap, rejected=False, stop_requested=False, console_line="Jenkins is restarting"
    )
    assert (theirs.phase, theirs.reason) == (ExecutionPhase.ABORTED, Reason.ABORTED_IN_JENKINS)
    assert theirs.message.endswith(": Jenkins is restarting")
    timed_out = endings.for_build(
        status, snap, rejected=False, stop_requested=False, console_line="Timeout has been exceeded"
    )
    assert (timed_out.phase, timed_out.reason) == (ExecutionPhase.ABORTED, Reason.TIMED_OUT)
    denied = endings.for_build(status, snap, rejected=True, stop_requested=False)
    assert denied.reason == Reason.APPROVAL_DENIED and not endings.aborted_by_jenkins(
        snap, rejected=True, stop_requested=False
    )


def test_the_first_cancel_counts_and_a_finished_run_ignores_pause_and_cancel() -> None:
    state = ExecutionState()
    assert controls.cancel(state, ControlInput(reason="first"))
    assert not controls.cancel(state, ControlInput(reason="second"))
    assert state.cancel is not None and state.cancel.reason == "first"
    done = ExecutionState()
    done.status.phase = ExecutionPhase.SUCCESS
    assert not controls.pause(done) and not controls.cancel(done, None)


def test_pause_and_resume_change_the_state_once_each() -> None:
    state = ExecutionState()
    assert controls.pause(state) and not controls.pause(state)
    assert state.status.paused
    assert controls.resume(state) and not controls.resume(state)
    assert not state.status.paused


def test_a_decision_must_name_the_waiting_stage_and_the_first_decision_counts() -> None:
    state = ExecutionState()
    with pytest.raises(controls.NotWaitingForApproval, match="no stage is waiting"):
        controls.waiting_stage(state, None, "Deploy")
    state.awaiting_approval = 2
    with pytest.raises(controls.NotWaitingForApproval, match="stage 2 \\('Deploy'\\) is"):
        controls.waiting_stage(state, GateDecisionInput(stage=1), "Deploy")
    assert controls.waiting_stage(state, None, "Deploy") == 2
    controls.decide(state, 2, approve=False, inp=GateDecisionInput(reason="not today"))
    controls.decide(state, 2, approve=True, inp=None)
    assert state.rejected == {2: "not today"} and state.approved == []


def test_a_state_carried_by_an_older_run_still_decodes_with_its_gate_ids() -> None:
    legacy = {
        "status": {"phase": "Building"},
        "stored_logs": [[0, 0], [1, 0]],
        "known": {"number": 1, "pending_gates": ["Gate2", "NotOurs"]},
        "approved": [1],
        "generation": 3,
    }
    state = ExecutionState.model_validate(legacy)
    assert state.stored_logs[1].stage == 1 and (0, 0) in state.stored_logs
    assert state.known is not None and state.known.pending_gates == [2]
    assert state.generation == 3


def test_a_condition_cannot_be_set_without_the_time_of_the_transition() -> None:
    status = PipelineExecutionStatus()
    with pytest.raises(TypeError):
        status.set_condition(ConditionType.BUILT, "True", Reason.BUILD_STARTED, "go")
