"""Pure functions that turn build snapshots into the execution's status (deterministic, no I/O).

Stage 0 of the status is the clone stage the Jenkinsfile generator adds; the pipeline file's stages
follow from index 1, so stage indexes match the plan's, the gates' (``crds.messages.gate_input_id``)
and the log objects'.
"""

from __future__ import annotations

from datetime import UTC, datetime

from crds.execution import PipelineExecutionStatus, StageStatus, StepStatus
from crds.messages import BuildSnapshot, ExecutionContext, StepReport
from crds.pipeline_file import PipelineConfig
from crds.reasons import StageState
from crds.text import escape_controls

CLONE_STAGE = "Clone"


def execution_id(ctx: ExecutionContext) -> str:
    """The value of the build parameter that ties a Jenkins build to this execution."""
    return f"{ctx.execution.namespace}/{ctx.execution.name}/{ctx.execution.uid}"


def init_stages(status: PipelineExecutionStatus, config: PipelineConfig, branch: str, event: str) -> None:
    """All stages Waiting, except those whose ``when`` does not match this run: Skipped."""
    stages = [
        StageStatus(
            name=CLONE_STAGE,
            state=StageState.WAITING,
            steps=[StepStatus(name="clone", state=StageState.WAITING)],
        )
    ]
    for stage in config.stages:
        state = StageState.WAITING if stage.applies(branch, event) else StageState.SKIPPED
        stages.append(
            StageStatus(
                name=stage.name,
                state=state,
                steps=[
                    StepStatus(
                        name=step.display_name(),
                        state=state if state == StageState.SKIPPED else StageState.WAITING,
                    )
                    for step in stage.steps
                ],
            )
        )
    status.stages = stages


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
        _derive_stage(stage)
    if snap.data_plane_waiting:
        status.message = waiting_for_data_plane(snap.data_plane_waiting)
    elif snap.agent_waiting:
        status.message = f"{AGENT_WAITING} {snap.agent_waiting}"
    elif (status.message or "").startswith((AGENT_WAITING, DATA_PLANE_WAITING)):
        status.message = "Building"


AGENT_WAITING = "Waiting for the build agent to be scheduled:"
DATA_PLANE_WAITING = "Waiting for data-plane cluster"


def waiting_for_data_plane(error: str) -> str:
    """The status message while a data plane does not answer; ``error`` names its cluster
    ("data-plane cluster dp1: ...", as :class:`activities.kube.Kube` words it)."""
    return f"Waiting for {error}"


def _derive_stage(stage: StageStatus) -> None:
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


def needs_approval(config: PipelineConfig, status: PipelineExecutionStatus, stage: int) -> bool:
    if stage < 1 or stage > len(config.stages):
        return False
    return config.stages[stage - 1].approval and status.stages[stage].state != StageState.SKIPPED


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


def close_steps(status: PipelineExecutionStatus, *, aborted: bool) -> None:
    """At the end: steps that never started are Skipped; running ones Aborted."""
    for stage in status.stages:
        for step in stage.steps:
            if step.state == StageState.WAITING:
                step.state = StageState.SKIPPED
            elif step.state == StageState.BUILDING:
                step.state = StageState.ABORTED if aborted else StageState.FAILED
        if stage.state == StageState.WAITING:
            stage.state = StageState.SKIPPED
        else:
            _derive_stage(stage)


def _duration(start: datetime | None, end: datetime | None) -> str:
    if not start or not end:
        return ""
    secs = (end - start).total_seconds()
    if secs < 60:
        return f"{secs:.1f}s"
    whole = int(secs)
    return f"{whole // 60}m{whole % 60:02d}s"


def markdown(status: PipelineExecutionStatus) -> str:
    """The Temporal UI's current details: a stage/step table with states and durations."""
    lines = [
        f"**Phase:** {status.phase or ''}  ",
        escape_controls(status.message or ""),
        "",
        "| # | Stage | Step | State | Duration |",
        "|---|---|---|---|---|",
    ]
    for i, stage in enumerate(status.stages):
        lines.append(
            f"| {i} | {_cell(stage.name)} |  | {stage.state} | {_duration(stage.started, stage.ended)} |"
        )
        for j, step in enumerate(stage.steps):
            lines.append(
                f"| {i}.{j} |  | {_cell(step.name)} | {step.state} | {_duration(step.started, step.ended)} |"
            )
    return "\n".join(lines)


def _cell(text: str) -> str:
    return escape_controls(text.replace("|", "\\|").replace("\n", " "))
