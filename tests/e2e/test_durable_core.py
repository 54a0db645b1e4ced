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
