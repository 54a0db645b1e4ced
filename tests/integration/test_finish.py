"""The finish activity on the real apiserver: the Pipeline's status, the terminal status and the
history limit of a run, in that order, in one call."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client as k8s

from activities.execution import ExecutionActivities
from activities.finish import FinishActivities
from activities.finished import RunFinishedActivities
from activities.kube import Kube
from crds.execution import PIPELINE_LABEL, PipelineExecution, PipelineExecutionSpec, PipelineExecutionStatus
from crds.messages import (
    ExecutionContext,
    ExecutionRef,
    FinishInput,
    RunFinishedInput,
    UpdatePipelineInput,
    WriteStatusInput,
)
from crds.meta import ObjectMeta
from crds.parse import parse_pipeline_file
from crds.pipeline import ExecutionHistoryLimit, Pipeline, PipelineSpec
from crds.reasons import ExecutionPhase
from crds.setting import PipelineSettingSpec
from worker.bridge import TASK_QUEUE_ANNOTATION

pytestmark = pytest.mark.integration

#: No worker serves this queue: bridges of other tests on the shared stack leave these runs alone.
NO_WORKER = {TASK_QUEUE_ANNOTATION: "test-finish-without-a-worker"}
ENDED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PIPELINE_FILE = """
stages:
- name: Build
  steps:
  - runScriptConfig: {image: alpine, shellScript: "true"}
"""


@pytest.fixture
def kube(kube_api_client: k8s.ApiClient, crds_installed: None) -> Kube:
    return Kube(kube_api_client)


def _run(kube: Kube, namespace: str, run: int, phase: ExecutionPhase | None) -> PipelineExecution:
    pe = kube.create(
        PipelineExecution(
            metadata=ObjectMeta(
                name=f"app-{run}", namespace=namespace, labels={PIPELINE_LABEL: "app"}, annotations=NO_WORKER
            ),
            spec=PipelineExecutionSpec(pipeline_name="app", run=run),
        )
    )
    if phase is not None:
        status = PipelineExecutionStatus()
        status.finish(phase, ENDED, "ended")
        kube.patch_status(PipelineExecution, namespace, pe.name, status)
    return pe


def _finish_input(namespace: str, pe: PipelineExecution, *, history: bool = True) -> FinishInput:
    ref = ExecutionRef(namespace=namespace, name=pe.name, uid=pe.metadata.uid or "")
    status = PipelineExecutionStatus()
    status.finish(ExecutionPhase.SUCCESS, ENDED, "Succeeded")
    context = ExecutionContext(
        execution=ref,
        pipeline="app",
        run=pe.spec.run,
        config=parse_pipeline_file(PIPELINE_FILE),
        setting=PipelineSettingSpec(),
        pipeline_namespace=f"{namespace}-pipeline",
    )
    return FinishInput(
        pipeline=UpdatePipelineInput(
            namespace=namespace, pipeline="app", execution=pe.name, run=pe.spec.run, state="Success"
        ),
        write=WriteStatusInput(execution=ref, status=status),
        history=RunFinishedInput(context=context) if history else None,
    )


def _finish(kube: Kube) -> FinishActivities:
    return FinishActivities(ExecutionActivities(kube), RunFinishedActivities(kube))


async def test_the_finish_writes_the_pipeline_status_then_the_run_s_then_applies_the_history_limit(
    kube: Kube, namespace: str
) -> None:
    kube.create(
        Pipeline(
            metadata=ObjectMeta(name="app", namespace=namespace),
            spec=PipelineSpec(
                repositoryUrl="file:///srv/git/app.git",
                executionHistoryLimit=ExecutionHistoryLimit(successful=2, failed=1),
            ),
        )
    )
    for run in (1, 2):
        _run(kube, namespace, run, ExecutionPhase.SUCCESS)
    current = _run(kube, namespace, 3, None)
    requests: list[tuple[str, str]] = []
    call_api = kube.api_client.call_api

    def counting(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        requests.append((method, urlsplit(url).path))
        return call_api(method, url, *args, **kwargs)

    kube.api_client.call_api = counting  # type: ignore[method-assign]
    try:
        result = await _finish(kube).finish(_finish_input(namespace, current))
    finally:
        kube.api_client.call_api = call_api  # type: ignore[method-assign]
    pipeline_path = f"/apis/devops.cubepaas.io/v1alpha1/namespaces/{namespace}/pipelines/app"
    # One read of the Pipeline serves both its status and the history limit in its spec.
    assert requests.count(("GET", pipeline_path)) == 1, requests

    assert result.write.written and result.write.exists
    assert result.pipeline_failed is None and result.history_failed is None
    pipeline = kube.get(Pipeline, namespace, "app")
    assert pipeline.status is not None
    assert (pipeline.status.last_execution_name, pipeline.status.last_run_state) == ("app-3", "Success")
    written = kube.get(PipelineExecution, namespace, "app-3").status
    assert written is not None and written.phase == ExecutionPhase.SUCCESS
    # The two newest successful runs are kept, the one that just ended among them; run 1 is deleted.
    assert sorted(result.deleted_executions) == ["app-1"]
    left = sorted(pe.name for pe in kube.list_resources(PipelineExecution, namespace))
    assert left == ["app-2", "app-3"]


async def test_the_finish_of_a_run_whose_pipeline_is_gone_still_writes_the_terminal_status(
    kube: Kube, namespace: str
) -> None:
    current = _run(kube, namespace, 1, None)
    result = await _finish(kube).finish(_finish_input(namespace, current, history=False))
    assert result.write.written and result.pipeline_failed is None and result.deleted_executions == []
    written = kube.get(PipelineExecution, namespace, "app-1").status
    assert written is not None and written.phase == ExecutionPhase.SUCCESS


async def test_the_finish_of_a_deleted_run_writes_nothing_and_applies_no_history_limit(
    kube: Kube, namespace: str
) -> None:
    current = _run(kube, namespace, 1, None)
    kube.delete(PipelineExecution, namespace, current.name)
    result = await _finish(kube).finish(_finish_input(namespace, current))
    assert not result.write.written and not result.write.exists and result.deleted_executions == []
