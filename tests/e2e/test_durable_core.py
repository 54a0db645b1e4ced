"""The durable core, end to end: PipelineExecution CR -> Temporal workflow -> jenkins-lite -> CR and logs.

Every test runs on the real local stack (kube-apiserver + etcd, the Temporal dev server, S3, jenkins-lite)
with the real worker process (``python -m worker``, which also runs the bridge).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from activities.kube import Kube
from crds.execution import PipelineExecution, PipelineExecutionSpec
from crds.meta import ObjectMeta
from crds.reasons import ExecutionPhase, StageState
from devstack.kubelet_sim import DeploymentReadiness
from worker.runs import create_run

pytestmark = pytest.mark.e2e

TERMINAL = {p.value for p in ExecutionPhase if p.is_terminal}

THREE_STAGES = """
stages:
- name: Test
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo testing $CICD_GIT_COMMIT; test -f .cubepaas.devops.yml"}
- name: Build
  steps:
  - runScriptConfig: {image: alpine, shellScript: "for i in 1 2 3; do echo left $i; done"}
  - runScriptConfig: {image: alpine, shellScript: "for i in 1 2 3; do echo right $i; done"}
- name: Package
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo packaged > out.txt && cat out.txt"}
"""


@pytest.fixture(scope="module")
def readiness(kube_api_client: Any) -> Iterator[DeploymentReadiness]:
    sim = DeploymentReadiness(kube_api_client).start()
    yield sim
    sim.stop()


@pytest.fixture
def project(project_namespace: Callable[..., str], readiness: DeploymentReadiness) -> Callable[..., str]:
    def make(**kwargs: Any) -> str:
        ns = project_namespace("core", **kwargs)
        readiness.add_project(ns)
        return ns

    return make


def run_pipeline(kube: Kube, kube_api_client: Any, pipeline_factory: Callable[..., Any],
                 git_repo: Callable[..., tuple[str, str]], namespace: str, pipeline_file: str,
                 name: str = "app") -> PipelineExecution:
    url, sha = git_repo(pipeline_file)
    pipeline_factory(namespace, name, url)
    created = create_run(kube_api_client, namespace, name, commit=sha)
    return created if isinstance(created, PipelineExecution) else PipelineExecution.model_validate(created)


def wait_terminal(kube: Kube, namespace: str, name: str, timeout: float = 180.0) -> PipelineExecution:
    deadline = time.monotonic() + timeout
    pe = kube.get(PipelineExecution, namespace, name)
    while time.monotonic() < deadline:
        pe = kube.get(PipelineExecution, namespace, name)
        if pe.status and pe.status.phase in TERMINAL:
            return pe
        time.sleep(0.5)
    pytest.fail(f"{namespace}/{name} not finished after {timeout}s: {pe.status!r}", pytrace=False)


class TestARunToTheEnd:
    def test_three_stages_with_parallel_steps_run_to_success_with_times_and_complete_logs(
        self, worker_process: Any, kube: Kube, kube_api_client: Any, project: Callable[..., str],
        pipeline_factory: Callable[..., Any], git_repo: Callable[..., tuple[str, str]], s3_client: Any,
    ) -> None:
        ns = project()
        pe = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, THREE_STAGES)
        done = wait_terminal(kube, ns, pe.name)
        st = done.status
        assert st is not None
        assert st.phase == ExecutionPhase.SUCCESS, st.message
        assert [s.name for s in st.stages] == ["Clone", "Test", "Build", "Package"]
        assert [len(s.steps) for s in st.stages] == [1, 1, 2, 1]
        for stage in st.stages:
            assert stage.state == StageState.SUCCESS
            assert stage.started and stage.ended and stage.started <= stage.ended
            for step in stage.steps:
                assert step.state == StageState.SUCCESS
                assert step.started and step.ended
                assert step.log_object
        assert st.workflow is not None and st.workflow.ui_url
        assert st.ended and st.started and st.duration
        assert done.status is not None and done.status.is_condition_true("Succeeded")
        build = s3_client.get_object("pipeline-logs", st.stages[2].steps[1].log_object)
        text = build.read().decode()
        assert [ln for ln in text.splitlines() if ln.startswith("right ")] == ["right 1", "right 2", "right 3"]
        left = s3_client.get_object("pipeline-logs", st.stages[2].steps[0].log_object).read().decode()
        assert "right" not in left and "left 3" in left
        assert f"{ns}/app/{pe.spec.run}/2-1.log" == st.stages[2].steps[1].log_object


FAILING = """
stages:
- name: Test
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo before the failure; echo oops >&2; exit 3"}
  - runScriptConfig: {image: alpine, shellScript: "echo the sibling finishes"}
- name: Deploy
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo never"}
"""


class TestFailures:
    def test_a_failing_step_fails_the_run_names_the_step_and_skips_later_stages_keeping_its_log(
        self, worker_process: Any, kube: Kube, kube_api_client: Any, project: Callable[..., str],
        pipeline_factory: Callable[..., Any], git_repo: Callable[..., tuple[str, str]], s3_client: Any,
    ) -> None:
        ns = project()
        pe = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, FAILING)
        st = wait_terminal(kube, ns, pe.name).status
        assert st is not None
        assert st.phase == ExecutionPhase.FAILED
        assert "stage 'Test'" in (st.message or "") and st.stages[1].steps[0].name in (st.message or "")
        test_stage = st.stages[1]
        assert test_stage.state == StageState.FAILED
        assert [s.state for s in test_stage.steps] == [StageState.FAILED, StageState.SUCCESS]
        assert st.stages[2].state == StageState.SKIPPED
        assert [s.state for s in st.stages[2].steps] == [StageState.SKIPPED]
        log = s3_client.get_object("pipeline-logs", test_stage.steps[0].log_object).read().decode()
        assert "before the failure" in log and "oops" in log
        assert not st.is_condition_true("Succeeded")

    async def test_an_invalid_pipeline_file_fails_the_run_with_the_parsers_message_after_one_attempt(
        self, worker_process: Any, kube: Kube, kube_api_client: Any, project: Callable[..., str],
        pipeline_factory: Callable[..., Any], git_repo: Callable[..., tuple[str, str]], temporal_client: Client,
    ) -> None:
        ns = project()
        broken = "stages:\n- name: Build\n  steps:\n  - env: {A: b}\n"
        pe = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, broken)
        st = wait_terminal(kube, ns, pe.name).status
        assert st is not None
        assert st.phase == ExecutionPhase.FAILED
        assert "stages[0].steps[0] (line 4, column 5): exactly one of runScriptConfig" in (st.message or "")
        assert st.workflow is not None
        history = await temporal_client.get_workflow_handle(st.workflow.id).fetch_history()
        loads = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
                 and e.activity_task_scheduled_event_attributes.activity_type.name == "devops.execution.load"]
        starts = [e for e in history.events if e.HasField("activity_task_started_event_attributes")
                  and e.activity_task_started_event_attributes.scheduled_event_id == loads[0].event_id]
        assert len(loads) == 1 and len(starts) == 1
        assert starts[0].activity_task_started_event_attributes.attempt == 1


SLEEPY = """
stages:
- name: Work
  steps:
  - runScriptConfig: {image: alpine, shellScript: "sleep 2; echo done"}
"""


class TestExecutorQuota:
    def test_ten_runs_with_quota_two_never_exceed_two_at_once_and_all_finish_in_run_order(
        self, worker_process: Any, kube: Kube, kube_api_client: Any, project: Callable[..., str],
        pipeline_factory: Callable[..., Any], git_repo: Callable[..., tuple[str, str]],
    ) -> None:
        ns = project(executor_quota=2)
        url, sha = git_repo(SLEEPY)
        pipeline_factory(ns, "q", url)
        names = [create_run(kube_api_client, ns, "q", commit=sha).name for _ in range(10)]
        past_quota = {ExecutionPhase.PROVISIONING, ExecutionPhase.BUILDING, ExecutionPhase.PAUSED}
        most = 0
        admitted: list[int] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            runs = kube.list_resources(PipelineExecution, ns)
            active = [r for r in runs if r.status and r.status.phase in past_quota]
            most = max(most, len(active))
            for r in runs:
                if r.status and (r.status.phase in past_quota or r.status.phase in TERMINAL) \
                        and r.spec.run not in admitted:
                    admitted.append(r.spec.run)
            if len(runs) == 10 and all(r.status and r.status.phase in TERMINAL for r in runs):
                break
            time.sleep(0.2)
        runs = kube.list_resources(PipelineExecution, ns)
        assert sorted(r.name for r in runs) == sorted(names)
        assert all(r.status and r.status.phase == ExecutionPhase.SUCCESS for r in runs), [
            (r.name, r.status.phase if r.status else None) for r in runs]
        assert 1 <= most <= 2
        # The first two were admitted as they arrived; every run that had to wait left the queue in
        # the order of its run number.
        provisioned = sorted(runs, key=lambda r: next(
            c.last_transition_time for c in (r.status.conditions if r.status else [])
            if c.type == "Provisioned"))
        waited = [r.spec.run for r in provisioned][2:]
        assert waited == sorted(waited)
        assert sorted(admitted) == list(range(1, 11))
