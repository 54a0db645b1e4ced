"""Bad input ends a run with a clear, safe message: real worker, real stack (issue 10, defects 4, 6, 7)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.meta import GROUP, VERSION
from crds.reasons import ExecutionPhase
from worker.runs import create_run

pytestmark = pytest.mark.e2e

TERMINAL = {p.value for p in ExecutionPhase if p.is_terminal}
WORKER_LOG = Path(__file__).resolve().parents[2] / "test-output" / "worker.log"


def wait_terminal(kube: Kube, namespace: str, name: str, timeout: float = 180.0) -> PipelineExecution:
    deadline = time.monotonic() + timeout
    pe = kube.get(PipelineExecution, namespace, name)
    while time.monotonic() < deadline:
        pe = kube.get(PipelineExecution, namespace, name)
        if pe.status and pe.status.phase in TERMINAL:
            return pe
        time.sleep(0.5)
    pytest.fail(f"{namespace}/{name} not finished after {timeout}s: {pe.status!r}", pytrace=False)


def raw_status(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    obj = kube.custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PipelineExecution.plural(), name
    )
    status: dict[str, Any] = obj.get("status") or {}
    return status


def test_a_control_character_in_the_pipeline_name_ends_the_run_with_an_escaped_message(
    worker_process: Any, kube: Kube, project_namespace: Callable[..., str]
) -> None:
    ns = project_namespace("esc")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PipelineExecution",
        "metadata": {"name": "esc-1"},
        "spec": {"pipelineName": "app\x00\x1b[2Jx", "run": 1, "branch": "main"},
    }
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PipelineExecution.plural(), body)
    done = wait_terminal(kube, ns, "esc-1")
    assert done.status is not None and done.status.phase == ExecutionPhase.FAILED
    status = raw_status(kube, ns, "esc-1")
    messages = [status.get("message") or ""] + [
        c.get("message") or "" for c in status.get("conditions") or []
    ]
    assert any("app\\x00\\x1b[2Jx" in m for m in messages), messages
    assert not any("\x00" in m or "\x1b" in m for m in messages), messages
    assert b"\x00" not in WORKER_LOG.read_bytes()


def test_a_repository_that_does_not_exist_is_reported_with_gits_reason(
    worker_process: Any,
    kube: Kube,
    kube_api_client: Any,
    project_namespace: Callable[..., str],
    pipeline_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    ns = project_namespace("git")
    pipeline_factory(ns, "app", (tmp_path / "no-such-repo.git").as_uri())
    pe = create_run(kube_api_client, ns, "app", commit="0" * 40)
    st = wait_terminal(kube, ns, pe.name).status
    assert st is not None and st.phase == ExecutionPhase.FAILED
    assert "does not appear to be a git repository" in (st.message or ""), st.message
    assert "the repository exists" not in (st.message or "")


def test_a_nul_in_a_script_of_the_pipeline_file_fails_the_run_naming_the_field(
    worker_process: Any,
    kube: Kube,
    kube_api_client: Any,
    project_namespace: Callable[..., str],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
) -> None:
    ns = project_namespace("nul")
    url, sha = git_repo(
        'stages:\n- name: Build\n  steps:\n  - runScriptConfig: {image: alpine, shellScript: "a\\0b"}\n'
    )
    pipeline_factory(ns, "app", url)
    pe = create_run(kube_api_client, ns, "app", commit=sha)
    st = wait_terminal(kube, ns, pe.name).status
    assert st is not None and st.phase == ExecutionPhase.FAILED
    assert "stages[0].steps[0].runScriptConfig.shellScript" in (st.message or ""), st.message
    assert "control characters" in (st.message or "")
    assert st.jenkins is None  # refused before any job or build exists


LONG_FIRST_RUN = """
stages:
- name: Build
  steps:
  - runScriptConfig:
      image: alpine
      shellScript: |
        if [ "$CICD_EXECUTION_SEQUENCE" = 1 ]; then sleep 45; fi
        echo built $CICD_EXECUTION_SEQUENCE
"""


def test_keeping_the_last_job_never_deletes_the_job_of_a_run_still_building(
    worker_process: Any,
    kube: Kube,
    kube_api_client: Any,
    project_namespace: Callable[..., str],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
    jenkins_client: Any,
) -> None:
    ns = project_namespace("keep", executor_quota=3, keep_jenkins_jobs=1)
    url, sha = git_repo(LONG_FIRST_RUN)
    pipeline_factory(ns, "app", url)
    first = create_run(kube_api_client, ns, "app", commit=sha)
    deadline = time.monotonic() + 120
    while not (
        (st := kube.get(PipelineExecution, ns, first.name).status) and st.jenkins and st.jenkins.build
    ):
        assert time.monotonic() < deadline, "the first run's build did not start"
        time.sleep(0.5)
    # Two short runs end while the first still builds; each one's cleanup keeps "the last 1 job".
    later = [create_run(kube_api_client, ns, "app", commit=sha) for _ in range(2)]
    for pe in later:
        done = wait_terminal(kube, ns, pe.name).status
        assert done is not None and done.phase == ExecutionPhase.SUCCESS, done
    running = kube.get(PipelineExecution, ns, first.name).status
    assert running is not None and running.phase not in TERMINAL, "the long run ended too early to prove it"
    done = wait_terminal(kube, ns, first.name).status
    assert done is not None and done.phase == ExecutionPhase.SUCCESS, done.message if done else None
    # Once every run has ended, the last cleanup keeps exactly the newest run's job.
    prefix = f"{ns}-app-"
    jobs = sorted(j["name"] for j in jenkins_client.get_jobs() if j["name"].startswith(prefix))
    assert jobs == [f"{prefix}3"]
