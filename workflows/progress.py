"""Pure functions that turn build snapshots into the execution's status (deterministic, no I/O).

Stage 0 of the status is the clone stage the Jenkinsfile generator adds; the pipeline file's stages
follow from index 1, so stage indexes match the plan's, the gates' (``crds.messages.gate_input_id``)
and the log objects'.
"""

from __future__ import annotations

from datetime import datetime

from crds.build_status import derive_stage
from crds.execution import PipelineExecutionStatus, StageStatus, StepStatus
from crds.messages import ExecutionContext
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


def needs_approval(config: PipelineConfig, status: PipelineExecutionStatus, stage: int) -> bool:
    if stage < 1 or stage > len(config.stages):
        return False
    return config.stages[stage - 1].approval and status.stages[stage].state != StageState.SKIPPED


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
            derive_stage(stage)


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
