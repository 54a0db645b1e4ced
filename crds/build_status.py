"""How a build snapshot and a stored step log change an execution's status (pure, no I/O).

Both the workflow and the follow activity apply them (the activity writes the changes it sees into the
CR while it follows the build; the workflow takes the result over), so they live next to the models.
"""

from __future__ import annotations

from datetime import UTC, datetime

from crds.execution import PipelineExecutionStatus, StageStatus
from crds.messages import BuildSnapshot, StepReport
from crds.pipeline_file import PipelineConfig
from crds.reasons import StageState


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None


def apply_snapshot(
    status: PipelineExecutionStatus, snap: BuildSnapshot, config: PipelineConfig | None
) -> None:
    """Copy step states and times from Jenkins, then derive each stage's state from its steps."""
    for s in snap.steps:
        if s.stage >= len(status.stages) or s.step >= len(status.stages[s.stage].steps):
            continue
        stage = status.stages[s.stage]
        if stage.state == StageState.SKIPPED:
            continue
        step = stage.steps[s.step]
        step.state = StageState(s.state)
        step.started = _time(s.started_ms) or step.started
        step.ended = _time(s.ended_ms) if step.state.is_terminal else None
        if s.message and step.log_object is None:  # a stored log's report has the final word
            step.message = s.message
    for stage in status.stages:
        derive_stage(stage)
    if snap.data_plane_waiting:
        status.message = waiting_for_data_plane(snap.data_plane_waiting)
    elif snap.agent_waiting:
        status.message = f"{AGENT_WAITING} {snap.agent_waiting}"
    elif (status.message or "").startswith((AGENT_WAITING, DATA_PLANE_WAITING)):
        status.message = "Building"


def every_stage_ended(status: PipelineExecutionStatus) -> bool:
    """Nothing is left to run: what is still to tell is the build's end, which Jenkins reports moments
    after its last stage (so the follow lets the end's write carry the last stage's)."""
    return bool(status.stages) and all(StageState(stage.state).is_terminal for stage in status.stages)


AGENT_WAITING = "Waiting for the build agent to be scheduled:"
DATA_PLANE_WAITING = "Waiting for data-plane cluster"


def waiting_for_data_plane(error: str) -> str:
    """The status message while a data plane does not answer; ``error`` names its cluster
    ("data-plane cluster dp1: ...", as :class:`activities.kube.Kube` words it)."""
    return f"Waiting for {error}"


def pipeline_status_step(pipeline: str) -> str:
    """How a status message names the step that writes the Pipeline's status (when it fails)."""
    return f"Pipeline {pipeline} status"


def housekeeping_failed(message: str | None, what: str, cause: str) -> str:
    """The status message of a run whose housekeeping step ``what`` failed (the run still ends)."""
    return f"{message or ''} ({what} failed: {cause})".strip()


def derive_stage(stage: StageStatus) -> None:
    if stage.state == StageState.SKIPPED or not stage.steps:
        return
    states = [StageState(s.state) for s in stage.steps]
    for bad in (StageState.FAILED, StageState.ABORTED, StageState.DENIED):
        if bad in states and all(s.is_terminal for s in states):
            stage.state = bad
            break
    else:
        if all(s == StageState.SUCCESS or s == StageState.SKIPPED for s in states):
            stage.state = StageState.SUCCESS
        elif any(s != StageState.WAITING for s in states):
            stage.state = StageState.BUILDING
        else:
            stage.state = StageState.WAITING
    starts = [s.started for s in stage.steps if s.started]
    stage.started = min(starts) if starts else None
    ends = [s.ended for s in stage.steps if s.ended]
    stage.ended = max(ends) if ends and StageState(stage.state).is_terminal else None


def set_log_object(
    status: PipelineExecutionStatus, stage: int, step: int, name: str, report: StepReport | None = None
) -> None:
    """The step's stored log, and what its script reported there: the image it pushed, the release it
    installed, or why it failed (which replaces Jenkins' "script returned exit code 1")."""
    if stage < len(status.stages) and step < len(status.stages[stage].steps):
        target = status.stages[stage].steps[step]
        target.log_object = name
        if report is not None:
            target.image = report.image or target.image
            target.release = report.release or target.release
            if report.error and target.state == StageState.FAILED:
                target.message = report.error


__all__ = [
    "AGENT_WAITING",
    "DATA_PLANE_WAITING",
    "apply_snapshot",
    "derive_stage",
    "set_log_object",
    "waiting_for_data_plane",
]
