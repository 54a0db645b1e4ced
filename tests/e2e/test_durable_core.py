"""The durable core, end to end: PipelineExecution CR -> Temporal workflow -> jenkins-lite -> CR and logs.

Every test runs on the real local stack (kube-apiserver + etcd, the Temporal dev server, S3, jenkins-lite)
with the real worker process (``python -m worker``, which also runs the bridge).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from activities.jenkins.jenkinsfile import cache_host_path
from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.messages import Signal, quota_workflow_id
from crds.reasons import ExecutionPhase, Reason, StageState
from crds.setting import CacheSettings
from worker.runs import create_run

pytestmark = pytest.mark.e2e

TERMINAL = {p.value for p in ExecutionPhase if p.is_terminal}
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
CACHE_ROOT = CacheSettings().host_path_root
#: The session worker's CUBEPAAS_VERIFIED_TTL (tests/e2e/conftest.py), in seconds.
VERIFIED_TTL = 3.0

THREE_STAGES = """
stages:
- name: Test
  steps:
  - runScriptConfig:
      {image: alpine, shellScript: "echo testing $CICD_GIT_COMMIT; test -f .cubepaas.devops.yml"}
- name: Build
  steps:
  - runScriptConfig: {image: alpine, shellScript: "for i in 1 2 3; do echo left $i; done"}
  - runScriptConfig: {image: alpine, shellScript: "for i in 1 2 3; do echo right $i; done"}
- name: Package
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo packaged > out.txt && cat out.txt"}
"""


@pytest.fixture
def project(project_namespace: Callable[..., str]) -> Callable[..., str]:
    """A fresh project (its Deployments become ready through the stack's controllers, scheduler and kwok)."""

    def make(**kwargs: Any) -> str:
        return project_namespace("core", **kwargs)

    return make


def run_pipeline(
    kube: Kube,
    kube_api_client: Any,
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
    namespace: str,
    pipeline_file: str,
    name: str = "app",
) -> PipelineExecution:
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
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        s3_client: Any,
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
        assert [ln for ln in text.splitlines() if ln.startswith("right ")] == [
            "right 1",
            "right 2",
            "right 3",
        ]
        left = s3_client.get_object("pipeline-logs", st.stages[2].steps[0].log_object).read().decode()
        assert "right" not in left and "left 3" in left
        assert f"{ns}/app/{pe.spec.run}/2-1.log" == st.stages[2].steps[1].log_object
        from crds.setting import PipelineSetting

        setting = kube.get(PipelineSetting, ns, "default").status
        assert setting is not None and setting.pipeline_namespace == f"{ns}-pipeline"
        assert setting.is_condition_true("Ready") and setting.jenkins_url


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
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        s3_client: Any,
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
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        temporal_client: Client,
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
        # The load is a local activity: one marker, which records the attempt that ended it.
        loads = [
            json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)
            for e in history.events
            if e.HasField("marker_recorded_event_attributes")
            and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
        ]
        loads = [m for m in loads if m["activity_type"] == "devops.execution.load"]
        assert len(loads) == 1 and loads[0]["attempt"] == 1, loads


SLEEPY = """
stages:
- name: Work
  steps:
  - runScriptConfig: {image: alpine, shellScript: "sleep 2; echo done"}
"""


class TestExecutorQuota:
    async def test_ten_runs_with_quota_two_never_exceed_two_at_once_and_leave_the_queue_in_run_order(
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        temporal_client: Client,
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
                if (
                    r.status
                    and (r.status.phase in past_quota or r.status.phase in TERMINAL)
                    and r.spec.run not in admitted
                ):
                    admitted.append(r.spec.run)
            if len(runs) == 10 and all(r.status and r.status.phase in TERMINAL for r in runs):
                break
            await asyncio.sleep(0.2)
        runs = kube.list_resources(PipelineExecution, ns)
        assert sorted(r.name for r in runs) == sorted(names)
        assert all(r.status and r.status.phase == ExecutionPhase.SUCCESS for r in runs), [
            (r.name, r.status.phase if r.status else None) for r in runs
        ]
        assert 1 <= most <= 2
        # The order of leaving the queue is the order of the quota workflow's grants: it signals one
        # execution at a time. (Not the runs' Provisioned times: two runs granted together provision
        # concurrently, and either may finish first.)
        run_of = {r.status.workflow.id: r.spec.run for r in runs if r.status and r.status.workflow}
        history = await temporal_client.get_workflow_handle(quota_workflow_id(ns)).fetch_history()
        granted: list[int] = []
        for event in history.events:
            if not event.HasField("signal_external_workflow_execution_initiated_event_attributes"):
                continue
            sent = event.signal_external_workflow_execution_initiated_event_attributes
            run = run_of.get(sent.workflow_execution.workflow_id)
            if sent.signal_name == Signal.SLOT_GRANTED and run is not None and run not in granted:
                granted.append(run)
        # The first two were granted as their acquires arrived; every run that had to wait was granted
        # in the order of its run number.
        assert sorted(granted) == list(range(1, 11))
        assert granted[2:] == sorted(granted[2:]), granted
        assert sorted(admitted) == list(range(1, 11))

    async def test_a_terminated_run_that_held_a_slot_gives_it_back_and_the_queue_moves_on(
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        temporal_client: Client,
    ) -> None:
        ns = project(executor_quota=1)
        url, sha = git_repo(LONG_STEP)
        pipeline_factory(ns, "app", url)
        holder = create_run(kube_api_client, ns, "app", commit=sha)
        wait_step_building(kube, ns, holder.name, 1)
        waiter = create_run(kube_api_client, ns, "app", commit=sha)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = kube.get(PipelineExecution, ns, waiter.name).status
            if st and st.phase == ExecutionPhase.QUEUEING:
                break
            await asyncio.sleep(0.2)
        held = kube.get(PipelineExecution, ns, holder.name).status
        assert held is not None and held.workflow is not None
        # Terminate (not cancel): the workflow runs no cleanup and never releases its slot itself.
        await temporal_client.get_workflow_handle(held.workflow.id).terminate(reason="operator")
        done = wait_terminal(kube, ns, waiter.name, timeout=120).status
        assert done is not None and done.phase == ExecutionPhase.SUCCESS, done.message
        # The terminated run's CR does not stay "Building": the bridge ends it, saying what happened.
        orphan = wait_terminal(kube, ns, holder.name, timeout=90).status
        assert orphan is not None and orphan.phase == ExecutionPhase.ABORTED
        assert "workflow was terminated" in (orphan.message or "")
        assert not orphan.is_condition_true("Succeeded")


# --- faults: worker crash, Temporal restart, a flaky Jenkins ---------------------------------------

LONG_STEP = """
stages:
- name: Long
  steps:
  - runScriptConfig: {image: alpine, shellScript: "for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 1; done"}
- name: After
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo after"}
"""
TASK_QUEUE_ANNOTATION = "devops.cubepaas.io/task-queue"


def wait_step_building(kube: Kube, ns: str, name: str, stage: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = kube.get(PipelineExecution, ns, name).status
        if st and len(st.stages) > stage and st.stages[stage].steps[0].state == StageState.BUILDING:
            return
        time.sleep(0.2)
    pytest.fail(f"stage {stage} of {ns}/{name} never started", pytrace=False)


def builds_of(jenkins_client: Any, job: str) -> list[int]:
    return sorted(b["number"] for b in jenkins_client.get_job_info(job)["builds"])


class TestDurability:
    def test_a_worker_killed_mid_build_is_replaced_and_the_run_finishes_with_exactly_one_build(
        self,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        dedicated_worker: Callable[[str], Any],
        jenkins_client: Any,
    ) -> None:
        ns = project(keep_jenkins_jobs=10)
        first = dedicated_worker(ns)
        first.start()
        url, sha = git_repo(LONG_STEP)
        pipeline_factory(ns, "app", url)
        pe = create_run(
            kube_api_client, ns, "app", commit=sha, annotations={TASK_QUEUE_ANNOTATION: first.queue}
        )
        wait_step_building(kube, ns, pe.name, 1)
        first.kill()
        second = dedicated_worker(ns)
        second.queue, second.env["CUBEPAAS_TASK_QUEUE"] = first.queue, first.queue
        second.start()
        st = wait_terminal(kube, ns, pe.name).status
        assert st is not None and st.phase == ExecutionPhase.SUCCESS, st.message
        assert st.jenkins is not None
        assert builds_of(jenkins_client, st.jenkins.job) == [1]
        assert all(step.log_object for stage in st.stages for step in stage.steps)

    def test_a_temporal_restart_mid_build_loses_nothing_and_starts_no_second_build(
        self,
        stack: Any,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        jenkins_client: Any,
    ) -> None:
        ns = project(keep_jenkins_jobs=10)
        pe = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, LONG_STEP)
        wait_step_building(kube, ns, pe.name, 1)
        stack.restart_component("temporal")
        st = wait_terminal(kube, ns, pe.name, timeout=240).status
        assert st is not None and st.phase == ExecutionPhase.SUCCESS, st.message
        assert st.jenkins is not None
        assert builds_of(jenkins_client, st.jenkins.job) == [1]

    def test_a_temporal_outage_longer_than_the_sdks_minute_of_retries_ends_no_worker_and_loses_no_run(
        self,
        stack: Any,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        jenkins_client: Any,
    ) -> None:
        ns = project(keep_jenkins_jobs=10)
        pe = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, LONG_STEP)
        wait_step_building(kube, ns, pe.name, 1)
        stack.stop_component("temporal")
        try:
            time.sleep(80)  # longer than the minute the SDK retries a poll error it does not know
            assert worker_process.exit_code() is None, "the worker process ended during the outage"
        finally:
            stack.start_component("temporal")
        st = wait_terminal(kube, ns, pe.name, timeout=240).status
        assert st is not None and st.phase == ExecutionPhase.SUCCESS, st.message
        assert st.jenkins is not None
        assert builds_of(jenkins_client, st.jenkins.job) == [1]
        assert worker_process.exit_code() is None

    def test_a_jenkins_restart_mid_build_ends_the_run_aborted_in_jenkins_not_cancelled(
        self,
        stack: Any,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
    ) -> None:
        ns = project()
        pe = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, LONG_STEP)
        wait_step_building(kube, ns, pe.name, 1)
        stack.jenkins_lite_restart()  # the running build cannot resume: Jenkins ends it ABORTED
        st = wait_terminal(kube, ns, pe.name, timeout=240).status
        assert st is not None and st.phase == ExecutionPhase.ABORTED, st.message
        succeeded = st.condition("Succeeded")
        assert succeeded is not None and succeeded.reason == Reason.ABORTED_IN_JENKINS, st.message
        # The console's last line before "Finished: ABORTED" says why.
        assert st.message is not None and st.message.startswith("Jenkins aborted the build"), st.message
        assert ": " in st.message.split("(e.g. Jenkins restarted)", 1)[1]

    def test_runs_finish_with_the_right_result_while_jenkins_answers_5xx_to_a_fifth_of_requests(
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        stack_env: dict[str, str],
        jenkins_client: Any,
    ) -> None:
        ns = project(keep_jenkins_jobs=10)
        set_faults(stack_env, {"failRate": 0.2})
        try:
            ok = run_pipeline(
                kube, kube_api_client, pipeline_factory, git_repo, ns, THREE_STAGES, name="good"
            )
            bad = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, FAILING, name="bad")
            good_st = wait_terminal(kube, ns, ok.name, timeout=300).status
            bad_st = wait_terminal(kube, ns, bad.name, timeout=300).status
        finally:
            set_faults(stack_env, {"failRate": 0.0})
        assert good_st is not None and good_st.phase == ExecutionPhase.SUCCESS, good_st.message
        assert bad_st is not None and bad_st.phase == ExecutionPhase.FAILED, bad_st.message
        for st in (good_st, bad_st):
            assert st.jenkins is not None
            assert builds_of(jenkins_client, st.jenkins.job) == [1]


def set_faults(stack_env: dict[str, str], faults: dict[str, float]) -> None:
    req = urllib.request.Request(
        stack_env["JENKINS_URL"].rstrip("/") + "/cubepaas-lite/faults",
        data=json.dumps(faults).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic "
            + base64.b64encode(f"{stack_env['JENKINS_USER']}:{stack_env['JENKINS_TOKEN']}".encode()).decode(),
        },
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


# --- secrets, replay, drift ---------------------------------------------------------------------

WITH_SECRET = """
stages:
- name: Use
  steps:
  - runScriptConfig: {image: alpine, shellScript: "printf %s \\"$API_TOKEN\\" | sha256sum"}
    envFrom: [{sourceName: app-secret, sourceKey: token, targetKey: API_TOKEN}]
"""


class TestSecretsAndHistory:
    async def test_no_secret_appears_in_workflow_histories_or_crs_and_histories_replay(
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        s3_client: Any,
        temporal_client: Client,
        stack_env: dict[str, str],
    ) -> None:
        from activities.kube import encode_secret_data

        ns = project()
        value = "s3cr3t-" + uuid.uuid4().hex
        kube.ensure(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "app-secret", "namespace": ns},
                "data": encode_secret_data({"token": value}),
            }
        )
        pe = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, WITH_SECRET)
        done = wait_terminal(kube, ns, pe.name)
        st = done.status
        assert st is not None and st.phase == ExecutionPhase.SUCCESS, st.message
        log = s3_client.get_object("pipeline-logs", st.stages[1].steps[0].log_object).read().decode()
        assert hashlib.sha256(value.encode()).hexdigest() in log  # the step really got the value

        secrets = [value, stack_env["JENKINS_TOKEN"], stack_env["S3_SECRET_KEY"], stack_env["S3_ACCESS_KEY"]]
        assert st.workflow is not None
        histories = [await temporal_client.get_workflow_handle(st.workflow.id).fetch_history()]
        async for wf in temporal_client.list_workflows(f"WorkflowId = 'quota/{ns}'"):
            histories.append(
                await temporal_client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
            )
        for history in histories:
            raw = history.to_json()
            for secret in secrets:
                assert secret not in raw
                assert base64.b64encode(secret.encode()).decode()[:-4] not in raw
        cr_json = json.dumps(kube.read_object(done.api_version, done.kind, done.name, ns))
        for secret in secrets:
            assert secret not in cr_json

        # Replay: the recorded histories run again with the current code without nondeterminism.
        from temporalio.contrib.pydantic import pydantic_data_converter
        from temporalio.worker import Replayer

        from workflows.execution import PipelineExecutionWorkflow
        from workflows.quota import ExecutorQuotaWorkflow

        replayer = Replayer(
            workflows=[PipelineExecutionWorkflow, ExecutorQuotaWorkflow],
            data_converter=pydantic_data_converter,
        )
        for history in histories:
            result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
            assert result.replay_failure is None, result.replay_failure


class TestNamespaceDrift:
    def test_a_drifted_namespace_is_repaired_by_the_next_run_and_a_correct_one_costs_no_writes(
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
    ) -> None:
        ns = project()
        team = f"{ns}-team"
        kube.ensure(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": team, "labels": {"devops.cubepaas.io/project": ns}},
            }
        )
        url, sha = git_repo(SLEEPY.replace("sleep 2; ", ""))
        pipeline_factory(ns, "app", url)

        def provisioned(run_name: str) -> str:
            st = wait_terminal(kube, ns, run_name).status
            assert st is not None and st.phase == ExecutionPhase.SUCCESS, st.message
            cond = st.condition("Provisioned")
            assert cond is not None and cond.message
            return cond.message

        first = provisioned(create_run(kube_api_client, ns, "app", commit=sha).name)
        assert " 0 writes" not in first and "RoleBindings +1" in first
        # Within the worker's CUBEPAAS_VERIFIED_TTL (3 s here) a run trusts the bootstrap just done.
        soon = provisioned(create_run(kube_api_client, ns, "app", commit=sha).name)
        assert re.fullmatch(rf"{ns}-pipeline: verified \d+s ago", soon), soon
        time.sleep(VERIFIED_TTL + 0.5)
        second = provisioned(create_run(kube_api_client, ns, "app", commit=sha).name)
        assert second.endswith(": 0 writes; RoleBindings +0 ~0 -0"), second

        pipeline_ns = f"{ns}-pipeline"
        kube.delete_object("v1", "Service", "registry", pipeline_ns)
        rb = kube.read_object("rbac.authorization.k8s.io/v1", "RoleBinding", "cubepaas-jenkins", team)
        rb["subjects"][0]["name"] = "someone-else"
        kube.rbac.replace_namespaced_role_binding("cubepaas-jenkins", team, rb)
        time.sleep(VERIFIED_TTL + 0.5)
        third = provisioned(create_run(kube_api_client, ns, "app", commit=sha).name)
        assert ": 1 writes;" in third and "~1" in third, third
        assert kube.find_object("v1", "Service", "registry", pipeline_ns) is not None
        rb = kube.read_object("rbac.authorization.k8s.io/v1", "RoleBinding", "cubepaas-jenkins", team)
        assert rb["subjects"][0]["name"] == "jenkins"


class TestCleanup:
    def test_the_agent_pods_and_the_jenkins_job_of_a_finished_run_are_deleted_after_its_logs_are_stored(
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        jenkins_client: Any,
        s3_client: Any,
        wait_until: Callable[..., Any],
    ) -> None:
        ns = project()
        pe = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, LONG_STEP)
        wait_step_building(kube, ns, pe.name, 1)
        selector = f"devops.cubepaas.io/execution={pe.name}"

        def agent_pods() -> list[dict[str, Any]]:
            return kube.list_objects("v1", "Pod", namespace=f"{ns}-pipeline", label_selector=selector)

        running = agent_pods()  # jenkins-lite made it from the podTemplate; the scheduler placed it
        assert len(running) == 1 and running[0]["spec"]["nodeName"], running
        st = wait_terminal(kube, ns, pe.name).status
        assert st is not None and st.jenkins is not None
        assert st.phase == ExecutionPhase.SUCCESS, st.message
        # Deleted before the run is finished (kwok then removes a terminating pod, as a kubelet would).
        assert all(p["metadata"].get("deletionTimestamp") for p in agent_pods())
        wait_until(lambda: not agent_pods(), 60, "the agent pod to be gone")
        assert not jenkins_client.job_exists(st.jenkins.job)
        for stage in st.stages:
            for step in stage.steps:
                assert step.log_object
                assert s3_client.stat_object("pipeline-logs", step.log_object).size > 0


MANY_STEPS = """
stages:
- name: One
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo a; sleep 1"}
  - runScriptConfig: {image: alpine, shellScript: "echo b; sleep 2"}
  - runScriptConfig: {image: alpine, shellScript: "echo c; sleep 3"}
- name: Two
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo d; sleep 1"}
  - runScriptConfig: {image: alpine, shellScript: "echo e; sleep 2"}
- name: Three
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo f"}
"""


class TestLongHistories:
    async def test_a_run_continues_as_new_mid_build_and_still_ends_with_every_stage_and_log(
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        s3_client: Any,
        temporal_client: Client,
        jenkins_client: Any,
    ) -> None:
        ns = project(keep_jenkins_jobs=5)
        url, sha = git_repo(MANY_STEPS)
        pipeline_factory(ns, "app", url)
        pe = create_run(
            kube_api_client, ns, "app", commit=sha, annotations={"devops.cubepaas.io/history-limit": "10"}
        )
        st = wait_terminal(kube, ns, pe.name).status
        assert st is not None and st.workflow is not None and st.jenkins is not None
        assert st.phase == ExecutionPhase.SUCCESS, st.message
        assert [len(s.steps) for s in st.stages] == [1, 3, 2, 1]
        assert all(
            step.state == StageState.SUCCESS and step.log_object for s in st.stages for step in s.steps
        )
        assert builds_of(jenkins_client, st.jenkins.job) == [1]
        runs = [wf async for wf in temporal_client.list_workflows(f"WorkflowId = '{st.workflow.id}'")]
        assert len(runs) >= 2, "the run never continued as new"
        first = temporal_client.get_workflow_handle(st.workflow.id, run_id=st.workflow.run_id)
        assert (await first.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
        for stage, step, text in ((1, 2, "c"), (2, 1, "e"), (3, 0, "f")):
            log = (
                s3_client.get_object("pipeline-logs", st.stages[stage].steps[step].log_object).read().decode()
            )
            assert log.strip().splitlines()[0] == text


CACHE_DIR = "/root/.cache/go-build"
CACHED = f"""
stages:
- name: Build
  steps:
  - runScriptConfig:
      image: golang
      shellScript: |
        echo "node: $(kubectl get pod "$NODE_NAME" -o 'jsonpath={{.spec.nodeName}}')"
        if [ -e {CACHE_DIR}/marker ]
        then echo "cache: $(cat {CACHE_DIR}/marker)"
        else echo "cache: empty"
        fi
        echo "run $CICD_EXECUTION_SEQUENCE" > {CACHE_DIR}/marker
    cache: {{paths: [{CACHE_DIR}]}}
"""


class TestBuildCaches:
    def test_a_cache_is_seen_by_the_next_run_on_the_same_node_and_not_by_one_the_scheduler_put_elsewhere(
        self,
        worker_process: Any,
        stack: Any,
        stack_env: dict[str, str],
        kube: Kube,
        kube_api_client: Any,
        project: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        jenkins_client: Any,
        s3_client: Any,
    ) -> None:
        import subprocess

        from crds.pipeline import Pipeline

        ns = project(keep_jenkins_jobs=5)
        url, sha = git_repo(CACHED)
        pipeline_factory(ns, "app", url)

        def run() -> tuple[str, str, str]:
            """(the node the step saw its pod on, what it found in the cache, the job's Jenkinsfile)."""
            pe = create_run(kube_api_client, ns, "app", commit=sha)
            st = wait_terminal(kube, ns, pe.name).status
            assert st is not None and st.jenkins is not None
            assert st.phase == ExecutionPhase.SUCCESS, st.message
            log = s3_client.get_object("pipeline-logs", st.stages[1].steps[0].log_object).read().decode()
            lines = dict(line.split(": ", 1) for line in log.splitlines() if ": " in line)
            return lines["node"], lines["cache"], str(jenkins_client.get_job_config(st.jenkins.job))

        def cache_nodes() -> list[str]:
            status = kube.get(Pipeline, ns, "app").status
            assert status is not None
            return [n.node_name for n in status.cache_nodes]

        node, cache, first_job = run()
        assert cache == "empty"
        assert "hostPath" in first_job and CACHE_DIR in first_job  # a volume mounted by the caching step
        assert "preferredDuringScheduling" not in first_job  # no history yet
        assert cache_nodes() == [node]  # recorded from the pod the scheduler placed

        again, cache, second_job = run()
        assert "preferredDuringScheduling" in second_job and f"- {node}" in second_job
        assert again == node, "the scheduler did not honour the preferred cache node"
        assert cache == "run 1"  # written by run 1 on the same node
        assert cache_nodes() == [node]

        kubectl = [stack_env["KUBECTL"], "--kubeconfig", str(stack.kubeconfig_path)]
        subprocess.run([*kubectl, "cordon", node], check=True, capture_output=True)
        try:
            elsewhere, cache, _ = run()
        finally:
            subprocess.run([*kubectl, "uncordon", node], check=True, capture_output=True)
        assert elsewhere != node
        assert cache == "empty"  # the other node has no cache of this pipeline
        assert cache_nodes() == [elsewhere, node]
        host_dirs = {
            n: stack.dir / "nodes" / n / cache_host_path(CACHE_ROOT, ns, "app", CACHE_DIR).lstrip("/")
            for n in (node, elsewhere)
        }
        assert (host_dirs[node] / "marker").read_text() == "run 2\n"
        assert (host_dirs[elsewhere] / "marker").read_text() == "run 3\n"
