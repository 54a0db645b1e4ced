"""How a run ends: the terminal phase, its reason and message, from what happened (pure functions).

Every way a run can end is one :class:`Ending`, and the workflow settles each through one finish path
(status, Pipeline status, cleanup, the quota slot). This module decides which ending; it does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

from crds.execution import PipelineExecutionStatus, StageStatus, StepStatus
from crds.messages import BuildSnapshot, RunStep
from crds.reasons import ConditionType, ExecutionPhase, Reason, StageState


@dataclass(frozen=True)
class Ending:
    """The terminal phase, the reason and the message of a run; ``failed`` names a failed condition."""

    phase: ExecutionPhase
    reason: Reason
    message: str
    failed: ConditionType | None = None


@dataclass(frozen=True)
class StepFailure:
    """The condition and the default reason an error in a phase of the workflow ends the run with."""

    condition: ConditionType
    reason: Reason
    what: str


FAILURES: dict[RunStep, StepFailure] = {
    RunStep.LOAD: StepFailure(ConditionType.INITIALIZED, Reason.CONFIG_INVALID, "loading the run"),
    RunStep.QUEUE: StepFailure(ConditionType.PROVISIONED, Reason.QUOTA_UNAVAILABLE, "queueing"),
    RunStep.PROVISION: StepFailure(
        ConditionType.PROVISIONED, Reason.JENKINS_NOT_READY, "provisioning the pipeline namespace"
    ),
    RunStep.BUILD: StepFailure(ConditionType.BUILT, Reason.BUILD_FAILED, "starting the build"),
    RunStep.FOLLOW: StepFailure(ConditionType.BUILT, Reason.BUILD_FAILED, "following the build"),
    RunStep.FINISH: StepFailure(ConditionType.SUCCEEDED, Reason.INTERNAL_ERROR, "finishing the run"),
}


def error_text(err: BaseException) -> str:
    """What an activity failure says: the application error's own message, or what timed out."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError):
        return cause.message
    if isinstance(cause, TimeoutError):
        name = err.activity_type if isinstance(err, ActivityError) else "an activity"
        kind = cause.type.name.lower().replace("_", "-") if cause.type else "timeout"
        return f"{name} timed out ({kind}); its retries ran out"
    return str(cause or err)


def error_reason(err: BaseException) -> Reason | None:
    """The reason an application error names in its details (see ``activities.errors``), if any."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.details:
        return Reason.parse(cause.details[0])
    return None


#: ``ApplicationError.type`` of the faults the workflow waits out (``activities.errors.WaitError``).
DATA_PLANE_UNAVAILABLE = "DataPlaneUnavailableError"


def waits_for_data_plane(err: BaseException) -> bool:
    """The activity failed because the project's data-plane cluster does not answer (the run waits)."""
    cause = err.cause if isinstance(err, ActivityError) else err
    return isinstance(cause, ApplicationError) and cause.type == DATA_PLANE_UNAVAILABLE


def for_error(step: RunStep, err: BaseException) -> Ending:
    """An activity of ``step`` failed for good: the run fails with the error's reason (or the step's)."""
    failure = FAILURES[step]
    text = error_text(err)
    reason = error_reason(err) or failure.reason
    if reason == Reason.JENKINS_NOT_FOUND and step == RunStep.FOLLOW:
        text = f"{text} (the build or its job was deleted in Jenkins)"
    return Ending(ExecutionPhase.FAILED, reason, text, failure.condition)


def cancelled(reason: str) -> Ending:
    return Ending(ExecutionPhase.ABORTED, Reason.CANCELLED, f"Aborted: {reason or 'cancelled'}")


def aborted_by_jenkins(snap: BuildSnapshot, *, rejected: bool, stop_requested: bool) -> bool:
    """The build ended ABORTED though this run neither stopped it nor rejected one of its stages."""
    return (snap.result or "").upper() == "ABORTED" and not rejected and not stop_requested


def for_build(
    status: PipelineExecutionStatus,
    snap: BuildSnapshot,
    *,
    rejected: bool,
    stop_requested: bool,
    console_line: str = "",
) -> Ending:
    """The build ended: Success, Denied (a rejected stage), Aborted or Failed naming what failed."""
    result = (snap.result or "").upper()
    failed = _first_failed_step(status)
    # A run with a failed step is never Success, whatever the build's result says (a Jenkins whose step
    # thread died has been seen reporting SUCCESS).
    if result == "SUCCESS" and failed is None:
        return Ending(ExecutionPhase.SUCCESS, Reason.BUILD_SUCCEEDED, "Succeeded")
    if rejected:
        return Ending(ExecutionPhase.DENIED, Reason.APPROVAL_DENIED, "A stage's approval was rejected")
    if result == "ABORTED":
        if stop_requested:
            return Ending(ExecutionPhase.ABORTED, Reason.CANCELLED, "The build was aborted")
        if console_line.startswith(TIMEOUT_LINE):
            message = f"The build exceeded a timeout ({TIMEOUT_LINE})"
            return Ending(ExecutionPhase.ABORTED, Reason.TIMED_OUT, message)
        said = f": {console_line}" if console_line else ""
        return Ending(
            ExecutionPhase.ABORTED,
            Reason.ABORTED_IN_JENKINS,
            f"Jenkins aborted the build, though the run did not ask it to (e.g. Jenkins restarted){said}",
        )
    if failed is not None:
        stage, step = failed
        why = f": {step.message}" if step.message else ""
        return Ending(
            ExecutionPhase.FAILED,
            Reason.STEP_FAILED,
            f"Step '{step.name}' of stage '{stage.name}' failed{why}",
        )
    why = f": {snap.failure}" if snap.failure else ""
    return Ending(
        ExecutionPhase.FAILED, Reason.BUILD_FAILED, f"The build ended {result or 'without a result'}{why}"
    )


def _first_failed_step(status: PipelineExecutionStatus) -> tuple[StageStatus, StepStatus] | None:
    for stage in status.stages:
        for step in stage.steps:
            if step.state == StageState.FAILED:
                return stage, step
    return None


#: What Jenkins' ``timeout`` step writes to the console when it aborts the build.
TIMEOUT_LINE = "Timeout has been exceeded"

__all__ = [
    "DATA_PLANE_UNAVAILABLE",
    "FAILURES",
    "Ending",
    "aborted_by_jenkins",
    "cancelled",
    "error_reason",
    "error_text",
    "for_build",
    "for_error",
    "waits_for_data_plane",
]
