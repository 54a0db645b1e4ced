"""Steering runs: pause, resume, cancel, approve and reject, from our client, the Temporal CLI and the CR.

Every test runs a real pipeline on the local stack with the real worker (``python -m worker``).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.messages import (
    ControlInput,
    GateDecisionInput,
    Query,
    QuotaState,
    Signal,
    StatusQueryResult,
    Update,
    quota_workflow_id,
)
from crds.reasons import ExecutionPhase, StageState
from worker.runs import create_run

pytestmark = pytest.mark.e2e

TERMINAL = {p for p in ExecutionPhase if p.is_terminal}
TEMPORAL_CLI = str(Path(__import__("sys").executable).with_name("temporal"))

TWO_STAGES = """
stages:
- name: First
  steps:
  - runScriptConfig: {image: alpine, shellScript: "for i in 1 2 3; do echo first $i; sleep 1; done"}
- name: Second
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo second"}
"""
LONG = """
stages:
- name: Long
  steps:
  - runScriptConfig: {image: alpine, shellScript: "for i in $(seq 1 120); do echo tick $i; sleep 1; done"}
- name: Never
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo never"}
"""
APPROVAL = """
stages:
- name: Build
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo built"}
- name: Deploy
  approval: true
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo deployed"}
"""


@pytest.fixture
def start_run(
    worker_process: Any,
    kube: Kube,
    kube_api_client: Any,
    project_namespace: Callable[..., str],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
) -> Callable[..., PipelineExecution]:
    def start(
        pipeline_file: str, *, poll_interval: str = "1s", name: str = "app", keep_jenkins_jobs: int = 0
    ) -> PipelineExecution:
        ns = project_namespace("ctl", poll_interval=poll_interval, keep_jenkins_jobs=keep_jenkins_jobs)
        url, sha = git_repo(pipeline_file)
        pipeline_factory(ns, name, url)
        return create_run(kube_api_client, ns, name, commit=sha)

    return start


def current(kube: Kube, pe: PipelineExecution) -> PipelineExecution:
    return kube.get(PipelineExecution, pe.namespace, pe.name)


def wait_for(
    kube: Kube,
    pe: PipelineExecution,
    pred: Callable[[PipelineExecution], bool],
    what: str,
    timeout: float = 90,
) -> PipelineExecution:
    deadline = time.monotonic() + timeout
    cur = current(kube, pe)
    while time.monotonic() < deadline:
        cur = current(kube, pe)
        if cur.status is not None and pred(cur):
            return cur
        time.sleep(0.2)
    pytest.fail(
        f"{pe.namespace}/{pe.name}: timed out waiting for {what}; status: {cur.status!r}", pytrace=False
    )


def workflow_id(kube: Kube, pe: PipelineExecution) -> str:
    cur = wait_for(
        kube, pe, lambda p: p.status is not None and p.status.workflow is not None, "status.workflow"
    )
    assert cur.status is not None and cur.status.workflow is not None
    return cur.status.workflow.id


def stage_running(i: int) -> Callable[[PipelineExecution], bool]:
    return lambda p: (
        p.status is not None and len(p.status.stages) > i and p.status.stages[i].state == StageState.BUILDING
    )


def phase_is(*phases: ExecutionPhase) -> Callable[[PipelineExecution], bool]:
    return lambda p: p.status is not None and p.status.phase in phases


def temporal_cli(stack_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [
            TEMPORAL_CLI,
            *args,
            "--address",
            stack_env["TEMPORAL_ADDRESS"],
            "--namespace",
            stack_env["TEMPORAL_NAMESPACE"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def set_spec(kube: Kube, pe: PipelineExecution, **fields: bool) -> None:
    kube.patch(PipelineExecution, pe.namespace, pe.name, {"spec": fields})


def assert_held_paused(kube: Kube, pe: PipelineExecution, polls: int = 4) -> None:
    """Stage 2 does not start while paused, checked over several poll intervals."""
    wait_for(kube, pe, phase_is(ExecutionPhase.PAUSED), "phase Paused")
    for _ in range(polls * 5):
        cur = current(kube, pe)
        assert cur.status is not None
        assert cur.status.stages[2].state == StageState.WAITING
        assert cur.status.phase == ExecutionPhase.PAUSED
        time.sleep(0.2)


PAUSE_ROUTES = ["client", "temporal-cli", "cr-field"]


class TestPauseAndResume:
    @pytest.mark.parametrize("route", PAUSE_ROUTES)
    async def test_a_pause_during_stage_one_holds_stage_two_until_resumed_then_the_run_succeeds(
        self,
        route: str,
        start_run: Callable[..., PipelineExecution],
        kube: Kube,
        temporal_client: Client,
        stack_env: dict[str, str],
    ) -> None:
        pe = start_run(TWO_STAGES)
        wid = workflow_id(kube, pe)
        wait_for(kube, pe, stage_running(1), "stage 1 running")
        handle = temporal_client.get_workflow_handle(wid)
        if route == "client":
            await handle.signal(Signal.PAUSE, ControlInput(reason="inspect", user="alice"))
        elif route == "temporal-cli":
            temporal_cli(stack_env, "workflow", "signal", "--workflow-id", wid, "--name", "pause")
        else:
            set_spec(kube, pe, paused=True)
        assert_held_paused(kube, pe)
        if route == "client":
            # The status query answers while paused; the search attributes find the paused run.
            q = await handle.query(Query.STATUS, result_type=StatusQueryResult)
            assert q.paused and q.phase == ExecutionPhase.PAUSED and q.pending_gate == 2
            listed = temporal_cli(
                stack_env,
                "workflow",
                "list",
                "--query",
                f"DevopsPipeline='app' AND DevopsNamespace='{pe.namespace}' AND DevopsPhase='Paused'",
            )
            assert wid in listed.stdout
        if route == "client":
            await handle.signal(Signal.RESUME)
        elif route == "temporal-cli":
            temporal_cli(stack_env, "workflow", "signal", "--workflow-id", wid, "--name", "resume")
        else:
            set_spec(kube, pe, paused=False)
        done = wait_for(kube, pe, phase_is(*TERMINAL), "the end")
        assert done.status is not None
        assert done.status.phase == ExecutionPhase.SUCCESS, done.status.message
        assert done.status.stages[2].state == StageState.SUCCESS


CANCEL_ROUTES = ["client", "temporal-cli-signal", "temporal-cli-cancel", "cr-field"]


class TestCancel:
    @pytest.mark.parametrize("route", CANCEL_ROUTES)
    async def test_a_cancel_during_a_long_step_aborts_the_build_keeps_the_partial_log_and_frees_the_slot(
        self,
        route: str,
        start_run: Callable[..., PipelineExecution],
        kube: Kube,
        temporal_client: Client,
        stack_env: dict[str, str],
        jenkins_client: Any,
        s3_client: Any,
    ) -> None:
        pe = start_run(LONG, poll_interval="2s", keep_jenkins_jobs=5)
        wid = workflow_id(kube, pe)
        wait_for(kube, pe, stage_running(1), "the long step running")
        await asyncio.sleep(2)
        handle = temporal_client.get_workflow_handle(wid)
        if route == "client":
            await handle.signal(Signal.CANCEL, ControlInput(reason="no longer needed"))
        elif route == "temporal-cli-signal":
            temporal_cli(stack_env, "workflow", "signal", "--workflow-id", wid, "--name", "cancel")
        elif route == "temporal-cli-cancel":
            temporal_cli(stack_env, "workflow", "cancel", "--workflow-id", wid)
        else:
            set_spec(kube, pe, cancelled=True)
        done = wait_for(kube, pe, phase_is(*TERMINAL), "the end", timeout=60)
        st = done.status
        assert st is not None
        assert st.phase == ExecutionPhase.ABORTED, st.message
        long_step = st.stages[1].steps[0]
        assert long_step.state == StageState.ABORTED
        assert [s.state for s in st.stages[2].steps] == [StageState.SKIPPED]
        assert long_step.log_object
        log = s3_client.get_object("pipeline-logs", long_step.log_object).read().decode()
        assert "tick 1\n" in log and "tick 120" not in log
        assert st.jenkins is not None and st.jenkins.build is not None
        info = jenkins_client.get_build_info(st.jenkins.job, st.jenkins.build)
        assert info["result"] == "ABORTED" and not info["building"]
        # The slot is given back before the terminal status is written: a finished CR means a free slot.
        quota = temporal_client.get_workflow_handle(quota_workflow_id(pe.namespace))
        state = await quota.query(Query.QUOTA, result_type=QuotaState)
        assert wid not in state.holders and all(w.workflow_id != wid for w in state.waiting)


class TestApproval:
    async def test_an_approval_stage_waits_until_approved_then_continues(
        self,
        start_run: Callable[..., PipelineExecution],
        kube: Kube,
        temporal_client: Client,
    ) -> None:
        pe = start_run(APPROVAL)
        wid = workflow_id(kube, pe)
        waiting = wait_for(
            kube, pe, lambda p: p.status is not None and p.status.pending_gate == 2, "the approval gate"
        )
        assert waiting.status is not None and "Waiting for approval" in (waiting.status.message or "")
        assert waiting.status.stages[2].state == StageState.WAITING
        handle = temporal_client.get_workflow_handle(wid)
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(Update.APPROVE, GateDecisionInput(stage=1))
        assert isinstance(err.value.cause, ApplicationError)
        assert "stage 1 is not waiting for approval" in err.value.cause.message
        approved = await handle.execute_update(Update.APPROVE, GateDecisionInput(user="bob"), result_type=int)
        assert approved == 2
        done = wait_for(kube, pe, phase_is(*TERMINAL), "the end")
        assert done.status is not None
        assert done.status.phase == ExecutionPhase.SUCCESS, done.status.message
        assert done.status.stages[2].state == StageState.SUCCESS

    async def test_a_rejected_stage_ends_the_run_denied(
        self,
        start_run: Callable[..., PipelineExecution],
        kube: Kube,
        temporal_client: Client,
        stack_env: dict[str, str],
    ) -> None:
        pe = start_run(APPROVAL)
        wid = workflow_id(kube, pe)
        wait_for(kube, pe, lambda p: p.status is not None and p.status.pending_gate == 2, "the approval gate")
        temporal_cli(stack_env, "workflow", "signal", "--workflow-id", wid, "--name", "reject")
        done = wait_for(kube, pe, phase_is(*TERMINAL), "the end")
        assert done.status is not None
        assert done.status.phase == ExecutionPhase.DENIED, done.status.message
        assert done.status.stages[2].state in (StageState.SKIPPED, StageState.DENIED)

    async def test_approving_when_no_stage_waits_is_rejected_with_a_reason(
        self,
        start_run: Callable[..., PipelineExecution],
        kube: Kube,
        temporal_client: Client,
    ) -> None:
        pe = start_run(LONG)
        wid = workflow_id(kube, pe)
        wait_for(kube, pe, stage_running(1), "the long step running")
        handle = temporal_client.get_workflow_handle(wid)
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(Update.APPROVE, GateDecisionInput())
        assert isinstance(err.value.cause, ApplicationError)
        assert err.value.cause.message == "no stage is waiting for approval"
        await handle.signal(Signal.CANCEL)
        wait_for(kube, pe, phase_is(*TERMINAL), "the end")

    async def test_a_pause_during_the_approval_wait_still_holds_the_stage_once_it_is_approved(
        self, start_run: Callable[..., PipelineExecution], kube: Kube, temporal_client: Client
    ) -> None:
        pe = start_run(APPROVAL)
        handle = temporal_client.get_workflow_handle(workflow_id(kube, pe))
        wait_for(kube, pe, lambda p: p.status is not None and p.status.pending_gate == 2, "the approval gate")
        await handle.signal(Signal.PAUSE)
        assert await handle.execute_update(Update.APPROVE, GateDecisionInput(), result_type=int) == 2
        assert_held_paused(kube, pe)
        await handle.signal(Signal.RESUME)
        done = wait_for(kube, pe, phase_is(*TERMINAL), "the end")
        assert done.status is not None
        assert done.status.phase == ExecutionPhase.SUCCESS, done.status.message
