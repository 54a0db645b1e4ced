"""How the finish activity treats the faults of its steps (its happy path runs on the real apiserver in
tests/integration/test_finish.py). The steps are fakes here: the point is what the activity does with
their errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import pytest
from temporalio.exceptions import ApplicationError

from activities.errors import DevopsError, KubeForbiddenError, KubeTransientError
from activities.execution import ExecutionActivities
from activities.finish import FinishActivities
from activities.finished import RunFinishedActivities
from crds.execution import PipelineExecutionStatus
from crds.messages import (
    ExecutionContext,
    ExecutionRef,
    FinishInput,
    RunFinishedInput,
    RunFinishedResult,
    UpdatePipelineInput,
    WriteStatusInput,
    WriteStatusResult,
)
from crds.meta import ObjectMeta
from crds.parse import parse_pipeline_file
from crds.pipeline import Pipeline, PipelineSpec
from crds.reasons import ExecutionPhase
from crds.setting import PipelineSettingSpec

REF = ExecutionRef(namespace="proj", name="app-1", uid="u1")
PIPELINE_FILE = "stages:\n- name: B\n  steps:\n  - runScriptConfig: {image: a, shellScript: x}\n"


PIPELINE = Pipeline(
    metadata=ObjectMeta(name="app", namespace="proj"),
    spec=PipelineSpec(repositoryUrl="file:///srv/git/app.git"),
)


class Steps:
    def __init__(self, pipeline_error: DevopsError | None = None, history_error: DevopsError | None = None):
        self.pipeline_error, self.history_error = pipeline_error, history_error
        self.order: list[str] = []
        self.written: list[PipelineExecutionStatus] = []

    def set_pipeline_status(self, inp: UpdatePipelineInput) -> Pipeline | None:
        self.order.append("pipeline")
        if self.pipeline_error is not None:
            raise self.pipeline_error
        return PIPELINE

    def write(self, inp: WriteStatusInput) -> WriteStatusResult:
        self.order.append("write")
        self.written.append(inp.status.model_copy(deep=True))
        return WriteStatusResult(written=True)

    async def run(self, inp: RunFinishedInput, pipeline: Pipeline | None = None) -> RunFinishedResult:
        self.order.append("history" if pipeline is PIPELINE else "history (Pipeline read again)")
        if self.history_error is not None:
            raise self.history_error
        return RunFinishedResult(deleted_executions=["app-0"])


def _input() -> FinishInput:
    status = PipelineExecutionStatus()
    status.finish(ExecutionPhase.SUCCESS, datetime(2026, 12, 1, tzinfo=UTC), "Succeeded")
    context = ExecutionContext(
        execution=REF,
        pipeline="app",
        run=1,
        config=parse_pipeline_file(
            "stages:\n- name: B\n  steps:\n  - runScriptConfig: {image: a, shellScript: x}\n"
        ),
        setting=PipelineSettingSpec(),
        pipeline_namespace="proj-pipeline",
    )
    return FinishInput(
        pipeline=UpdatePipelineInput(
            namespace="proj", pipeline="app", execution="app-1", run=1, state="Success"
        ),
        write=WriteStatusInput(execution=REF, status=status),
        history=RunFinishedInput(context=context),
    )


def _finish(steps: Steps) -> FinishActivities:
    return FinishActivities(cast(ExecutionActivities, steps), cast(RunFinishedActivities, steps))


async def test_the_steps_run_in_order_the_pipeline_read_once_and_the_result_names_what_was_deleted() -> None:
    steps = Steps()
    result = await _finish(steps).finish(_input())
    assert steps.order == ["pipeline", "write", "history"]  # the history limit uses the Pipeline read
    assert result.deleted_executions == ["app-0"] and result.pipeline_failed is None


async def test_a_transient_pipeline_fault_fails_the_activity_before_anything_is_written() -> None:
    steps = Steps(pipeline_error=KubeTransientError("apiserver said 503"))
    with pytest.raises(ApplicationError) as err:
        await _finish(steps).finish(_input())
    assert not err.value.non_retryable and steps.order == ["pipeline"]


async def test_a_permanent_pipeline_fault_is_named_in_the_terminal_status_and_the_run_still_ends() -> None:
    steps = Steps(pipeline_error=KubeForbiddenError("pipelines is forbidden"))
    result = await _finish(steps).finish(_input())
    assert result.pipeline_failed == "pipelines is forbidden"
    assert steps.order == ["pipeline", "write", "history (Pipeline read again)"]
    assert steps.written[0].message == "Succeeded (Pipeline app status failed: pipelines is forbidden)"


async def test_a_history_limit_fault_is_reported_not_raised() -> None:
    steps = Steps(history_error=KubeTransientError("list timed out"))
    result = await _finish(steps).finish(_input())
    assert result.history_failed == "list timed out" and result.write.written
