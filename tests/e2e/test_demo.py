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


def test_demo_runs_to_success_and_reuses_what_is_up(stack: Any) -> None:
    from devstack.demo import stop_worker

    pid_path = stack.dir / "worker.pid"
    ours = not _worker_running(pid_path)
    try:
        first = _demo(stack, "--non-interactive")
        out = f"exit {first.returncode}\n--- stdout\n{first.stdout}\n--- stderr\n{first.stderr}"
        assert first.returncode == 0, out
        assert re.search(r"pipelineexecution/(demo-\d+) succeeded", first.stdout), out
        assert "phase Success" in first.stdout and "\x1b[" not in first.stdout  # plain progress lines
        assert "/namespaces/" in first.stdout and "/workflows/" in first.stdout  # the Temporal UI link
        for hint in ("devopsctl pause", "devopsctl logs", "devopsctl cancel", "make demo-stop"):
            assert hint in first.stdout, out
        assert _worker_running(pid_path), "the demo leaves its worker running for the user"
        first_run = re.search(r"pipelineexecution/(demo-\d+) created", first.stdout)
        assert first_run is not None

        second = _demo(stack, "--non-interactive")
        out2 = f"exit {second.returncode}\n--- stdout\n{second.stdout}\n--- stderr\n{second.stderr}"
        assert second.returncode == 0, out2
        assert "already up" in second.stdout and "reused" in second.stdout, out2
        second_run = re.search(r"pipelineexecution/(demo-\d+) created", second.stdout)
        assert second_run is not None and second_run.group(1) != first_run.group(1), out2
    finally:
        if ours:
            stop_worker(stack)  # the harness owns the stack; the worker is the demo's
