"""`make demo`'s script, run non-interactively as a user would (twice: the second run reuses everything)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.proc import is_running

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


def _worker_running(pid_path: Path) -> bool:
    try:
        info = json.loads(pid_path.read_text())
    except (OSError, ValueError):
        return False
    return is_running(int(info["pid"]), int(info["start_time"]))


def _demo(stack: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEVSTACK_DIR=str(stack.dir), PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "devstack.demo", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _check_loop(stack: Any, stdout: str) -> str:
    """The loop the demo printed happened in the cluster: a build run started by SCM polling for the pushed
    commit pushed an image; the deploy run was started by that image's push with its digest; the
    Deployment references the digest and is Available. Returns the build run's name."""
    from activities.kube import Kube
    from crds.execution import PipelineExecution
    from crds.reasons import ExecutionPhase, TriggeredBy
    from devstack.demo_loop import APP, APPS_NAMESPACE, BUILD, DEPLOY, IMAGE_REPOSITORY

    pushed = re.search(r"git push: commit ([0-9a-f]{12})", stdout)
    build_name = re.search(rf"pipelineexecution/({BUILD}-\d+) succeeded", stdout)
    deploy_name = re.search(rf"pipelineexecution/({DEPLOY}-\d+) succeeded", stdout)
    assert pushed and build_name and deploy_name, stdout
    kube = Kube.from_kubeconfig(str(stack.kubeconfig_path))
    try:
        build = kube.get(PipelineExecution, "demo", build_name.group(1))
        assert build.spec.triggered_by == TriggeredBy.POLL and build.spec.commit.startswith(pushed.group(1))
        assert build.status is not None and build.status.phase == ExecutionPhase.SUCCESS
        images = [step.image for stage in build.status.stages for step in stage.steps if step.image]
        assert len(images) == 1 and images[0].repository.endswith("/" + IMAGE_REPOSITORY), images
        digest = images[0].digest
        deploy = kube.get(PipelineExecution, "demo", deploy_name.group(1))
        assert deploy.spec.triggered_by == TriggeredBy.IMAGE
        assert deploy.spec.variables["CICD_IMAGE_REPO"] == IMAGE_REPOSITORY
        assert deploy.spec.variables["CICD_IMAGE_DIGEST"] == digest
        assert deploy.status is not None and deploy.status.phase == ExecutionPhase.SUCCESS
        deployment = kube.read_object("apps/v1", "Deployment", APP, APPS_NAMESPACE)
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"{images[0].repository}@{digest}"
        conditions = {c["type"]: c["status"] for c in deployment["status"]["conditions"]}
        assert conditions["Available"] == "True"
    finally:
        kube.close()
    return build_name.group(1)


def test_demo_shows_the_loop_from_a_push_to_an_available_deployment_and_reuses_what_is_up(
    stack: Any,
) -> None:
    from devstack.demo import RECEIVER, WORKER, stop_background

    running = {proc: _worker_running(proc.paths(stack)[0]) for proc in (WORKER, RECEIVER)}
    try:
        first = _demo(stack, "--non-interactive")
        out = f"exit {first.returncode}\n--- stdout\n{first.stdout}\n--- stderr\n{first.stderr}"
        assert first.returncode == 0, out
        assert "\x1b[" not in first.stdout  # plain progress lines
        assert "/namespaces/" in first.stdout and "/workflows/" in first.stdout  # the Temporal UI link
        for hint in ("devopsctl pause", "devopsctl logs", "devopsctl cancel", "make demo-stop"):
            assert hint in first.stdout, out
        first_build = _check_loop(stack, first.stdout)
        for proc in (WORKER, RECEIVER):
            assert _worker_running(proc.paths(stack)[0]), (
                f"the demo leaves its {proc.name} running for the user"
            )

        second = _demo(stack, "--non-interactive")
        out2 = f"exit {second.returncode}\n--- stdout\n{second.stdout}\n--- stderr\n{second.stderr}"
        assert second.returncode == 0, out2
        assert "already up" in second.stdout and second.stdout.count("reused") >= 2, out2
        assert _check_loop(stack, second.stdout) != first_build, out2  # a new commit, a new run
    finally:
        for proc, was_running in running.items():
            if not was_running:
                stop_background(
                    stack, proc
                )  # the harness owns the stack; the worker and receiver are the demo's
