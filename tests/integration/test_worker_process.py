"""``python -m worker`` as a real process against the local stack: health, readiness, metrics, drain."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.kube import Kube
from crds.execution import PipelineExecution, PipelineExecutionSpec
from crds.meta import ObjectMeta
from worker.bridge import TASK_QUEUE_ANNOTATION

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GRACE_SECONDS = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:
        return 0, str(err)


def _wait_for(
    check: Callable[[], Any], what: str, proc: subprocess.Popen[bytes], log: Path, within: float = 60
) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"the worker exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-4000:]}"
            )
        last = check()
        if last:
            return last
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what} (last: {last!r}); worker log:\n{log.read_text()[-4000:]}")


class WorkerProcess:
    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, log: Path, task_queue: str, namespace: str
    ) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.task_queue, self.namespace = task_queue, namespace

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, check: Callable[[], Any], what: str, within: float = 60) -> Any:
        return _wait_for(check, what, self.proc, self.log, within)

    def terminate(self, within: float) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(within)
        return code, time.monotonic() - started


@contextlib.contextmanager
def _start(
    stack_env: dict[str, str], tmp_path: Path, namespace: str, **overrides: str
) -> Iterator[WorkerProcess]:
    port = _free_port()
    task_queue = f"worker-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **stack_env,
        "CUBEPAAS_TASK_QUEUE": task_queue,
        "CUBEPAAS_WATCH_NAMESPACES": namespace,
        "CUBEPAAS_HEALTH_HOST": "127.0.0.1",
        "CUBEPAAS_HEALTH_PORT": str(port),
        "CUBEPAAS_METRICS_PORT": str(_free_port()),
        "CUBEPAAS_SHUTDOWN_GRACE": str(GRACE_SECONDS),
        "CUBEPAAS_INSTALL_CRDS": "false",
        **overrides,
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield WorkerProcess(proc, port, log, task_queue, namespace)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def worker_process(stack_env: dict[str, str], tmp_path: Path, namespace: str) -> Iterator[WorkerProcess]:
    with _start(stack_env, tmp_path, namespace) as process:
        yield process


def test_the_worker_serves_health_readiness_and_metrics_and_drains_on_sigterm(
    worker_process: WorkerProcess, kube: Kube, stack_env: dict[str, str]
) -> None:
    w = worker_process
    w.wait_for(lambda: _get(w.url("/healthz"))[0] == 200, "/healthz")
    w.wait_for(lambda: _get(w.url("/readyz"))[0] == 200, "/readyz")
    assert "bridge: ok" in _get(w.url("/readyz"))[1]

    # The bridge in the process starts the real workflow for a new execution and links it.
    kube.create(
        PipelineExecution(
            metadata=ObjectMeta(
                name="app-1", namespace=w.namespace, annotations={TASK_QUEUE_ANNOTATION: w.task_queue}
            ),
            spec=PipelineExecutionSpec(pipelineName="app", run=1, branch="main"),
        )
    )

    def linked() -> Any:
        pe = kube.get(PipelineExecution, w.namespace, "app-1")
        return pe.status is not None and pe.status.workflow is not None and pe.status.workflow.run_id

    w.wait_for(linked, "status.workflow of the execution", within=30)

    def metrics() -> str | None:
        status, text = _get(w.url("/metrics"))
        wanted = (
            "temporal_request",
            "cubepaas_bridge_workflow_starts_total",
            "cubepaas_bridge_watches_running",
        )
        return text if status == 200 and all(name in text for name in wanted) else None

    text = w.wait_for(metrics, "SDK and bridge metrics on /metrics", within=30)
    assert 'cubepaas_bridge_workflow_starts_total{result="started"} 1.0' in text, [
        line for line in text.splitlines() if "cubepaas" in line
    ]
    assert "cubepaas_bridge_watches_running 1.0" in text

    code, took = w.terminate(within=GRACE_SECONDS + 15)
    log = w.log.read_text()
    assert code == 0, log[-4000:]
    assert took < GRACE_SECONDS + 10, f"took {took:.1f}s"
    assert "worker stopped" in log
    for secret in ("S3_SECRET_KEY", "JENKINS_TOKEN", "S3_ACCESS_KEY"):
        value = stack_env.get(secret) or ""
        assert not value or value not in log


def test_the_worker_is_alive_but_not_ready_without_temporal_and_still_stops_cleanly(
    stack_env: dict[str, str], tmp_path: Path, namespace: str
) -> None:
    closed_port = _free_port()
    with _start(stack_env, tmp_path, namespace, TEMPORAL_ADDRESS=f"127.0.0.1:{closed_port}") as w:
        w.wait_for(lambda: _get(w.url("/healthz"))[0] == 200, "/healthz")
        status, body = _get(w.url("/readyz"))
        assert status == 503
        assert "temporal: not ready" in body
        code, _ = w.terminate(within=GRACE_SECONDS + 15)
        assert code == 0, w.log.read_text()[-4000:]
        assert "cannot reach Temporal" in w.log.read_text()
