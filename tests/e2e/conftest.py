"""End-to-end fixtures: a real worker process, project namespaces, local git repositories, the CLI.

Fixtures:
  worker_process      session: installs the CRDs, starts ``python -m worker`` with the stack env (its own
                      health/metrics ports; log in test-output/worker.log), waits for /readyz, and stops
                      it with SIGTERM at the end. Yields the ``SessionWorker``. A worker that dies
                      fails the test it died in and is started again for the next.
  kube                session: ``activities.kube.Kube`` on the stack's apiserver (admin).
  project_namespace   factory ``(prefix="e2e", *, executor_quota=2, poll_interval="1s",
                      keep_jenkins_jobs=0) -> namespace``: a fresh namespace with the Secrets
                      ``jenkins-credentials`` (username/token) and ``pipeline-logs-s3`` (accessKey/secretKey)
                      and the PipelineSetting ``default`` (External Jenkins = the stack's jenkins-lite,
                      objectStore = the stack's MinIO, the given quota and poll interval).
  git_repo            factory ``(pipeline_file, files=None, branch="main") -> (file:// url, commit sha)``: a
                      local bare repository whose branch holds ``.cubepaas.devops.yml`` (and ``files``).
  pipeline_factory    factory ``(namespace, name, repo_url, branch="main") -> Pipeline``.
  devopsctl           ``(*args, timeout=..., check=False) -> CompletedProcess``: the real console script as a
                      subprocess, with the stack env.
  cli_env             the environment those subprocesses get (os.environ + stack env).

Helpers (import them in test modules by copying; conftest modules are not importable by name):
:func:`wait_for` (poll a predicate), :func:`get_execution`. As fixtures: ``wait_until``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec
from devstack import proc as devproc
from devstack.gitrepo import make_git_repo
from devstack.project import apply_project

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = REPO_ROOT / "test-output"
WORKER_READY_TIMEOUT = 90.0

T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.3) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail the test with ``what`` on timeout."""
    try:
        return devproc.wait_for(predicate, timeout, what, interval)
    except TimeoutError as err:
        pytest.fail(str(err), pytrace=False)


def get_execution(kube: Kube, namespace: str, name: str) -> PipelineExecution:
    return kube.get(PipelineExecution, namespace, name)


@pytest.fixture(scope="session")
def cli_env(stack_env: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(stack_env)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("NO_COLOR", None)
    return env


class SessionWorker:
    """The session's ``python -m worker`` (log: test-output/worker.log), started again if it dies."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = OUTPUT_DIR / "worker.log"

    def start(self) -> subprocess.Popen[bytes]:
        OUTPUT_DIR.mkdir(exist_ok=True)
        health_port = devproc.free_port()
        env = dict(self.env)
        env.update(
            {
                "CUBEPAAS_HEALTH_HOST": "127.0.0.1",
                "CUBEPAAS_HEALTH_PORT": str(health_port),
                "CUBEPAAS_METRICS_PORT": "0",
                "CUBEPAAS_SHUTDOWN_GRACE": "5",
            }
        )
        with self.log_path.open("ab") as log:
            log.write(f"\n==== worker started by pytest at {time.strftime('%H:%M:%S')} ====\n".encode())
            log.flush()
            proc = subprocess.Popen(
                [sys.executable, "-m", "worker"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.proc = proc
        ready_url = f"http://127.0.0.1:{health_port}/readyz"
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"python -m worker exited with {proc.returncode} during start-up; last lines of "
                    f"{self.log_path}:\n{self.tail()}",
                    pytrace=False,
                )
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as resp:
                    if resp.status == 200:
                        return proc
            except OSError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(
                    f"python -m worker not ready after {WORKER_READY_TIMEOUT:.0f}s ({ready_url}); "
                    f"last lines of {self.log_path}:\n{self.tail()}",
                    pytrace=False,
                )
            time.sleep(0.3)

    def exit_code(self) -> int | None:
        """The code it exited with, None while it runs (or was never started)."""
        return None if self.proc is None else self.proc.poll()

    def tail(self) -> str:
        return devproc.tail(self.log_path, 40) or "<no log>"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


SESSION_WORKER = SessionWorker()


@pytest.fixture(scope="session")
def worker_process(
    crds_installed: None, cli_env: dict[str, str], webhook_port: int
) -> Iterator[SessionWorker]:
    SESSION_WORKER.env = {
        **cli_env,
        # Where providers deliver (the session's receiver, tests/conftest.py), and a sync interval short
        # enough that a repository created at Gitea shows up within a test.
        "CUBEPAAS_WEBHOOK_URL": f"http://127.0.0.1:{webhook_port}",
        "CUBEPAAS_SCM_SYNC_INTERVAL": "5s",
        # Short, so a test can see a drifted namespace repaired by a later run without waiting a minute.
        "CUBEPAAS_VERIFIED_TTL": "3s",
        # The product runs workflows outside the SDK's sandbox; the session worker runs them in it, so
        # its run-time checks see every path the e2e tests take (the dedicated workers run as shipped).
        "CUBEPAAS_WORKFLOW_SANDBOX": "true",
    }
    SESSION_WORKER.start()
    yield SESSION_WORKER
    SESSION_WORKER.stop()


@pytest.fixture(autouse=True)
def session_worker_survives_each_test() -> Iterator[None]:
    """A worker that dies fails the test it died in, and the next tests get a new one.

    Without this one dead worker fails every later test, each only after its own timeout: a cascade
    that once outlasted the whole CI job and hid its cause.
    """
    yield
    code = SESSION_WORKER.exit_code()
    if code is None:
        return
    tail = SESSION_WORKER.tail()
    SESSION_WORKER.start()
    pytest.fail(f"the session's worker exited with {code} in this test; last lines:\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def project_namespace(kube: Kube, stack_env: dict[str, str], crds_installed: None) -> Callable[..., str]:
    def factory(
        prefix: str = "e2e",
        *,
        executor_quota: int = 2,
        poll_interval: str = "1s",
        keep_jenkins_jobs: int = 0,
    ) -> str:
        namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
        apply_project(
            kube,
            namespace,
            stack_env,
            executor_quota=executor_quota,
            poll_interval=poll_interval,
            keep_jenkins_jobs=keep_jenkins_jobs,
        )
        return namespace

    return factory


@pytest.fixture(scope="session")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[str, str]]:
    def factory(
        pipeline_file: str, files: dict[str, str] | None = None, branch: str = "main"
    ) -> tuple[str, str]:
        return make_git_repo(tmp_path_factory.mktemp("git"), pipeline_file, files, branch, author="e2e")

    return factory


@pytest.fixture(scope="session")
def pipeline_factory(kube: Kube, crds_installed: None) -> Callable[..., Pipeline]:
    def factory(namespace: str, name: str, repo_url: str, branch: str = "main") -> Pipeline:
        pipeline = Pipeline(
            metadata=ObjectMeta(name=name, namespace=namespace),
            spec=PipelineSpec(repository_url=repo_url, default_branch=branch),
        )
        return kube.create(pipeline)

    return factory


@pytest.fixture(scope="session")
def devopsctl(cli_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    script = Path(sys.executable).with_name("devopsctl")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "worker.cli"]

    def run(*args: str, timeout: float = 300.0, check: bool = False) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*command, *args],
            env=cli_env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"devopsctl {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}",
                pytrace=False,
            )
        return done

    return run


@pytest.fixture(scope="session")
def wait_until() -> Callable[..., Any]:
    """``wait_until(predicate, timeout, what, interval=0.3)``: :func:`wait_for` as a fixture."""
    return wait_for


@pytest.fixture(scope="session")
def devopsctl_command() -> list[str]:
    """The argv prefix that runs the CLI (for tests that need a Popen)."""
    script = Path(sys.executable).with_name("devopsctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "worker.cli"]


class DedicatedWorker:
    """A ``python -m worker`` of our own on its own task queue (the session worker ignores its runs)."""

    def __init__(self, env: dict[str, str], namespace: str) -> None:
        self.queue = f"e2e-{uuid.uuid4().hex[:8]}"
        self.env = dict(
            env,
            CUBEPAAS_TASK_QUEUE=self.queue,
            CUBEPAAS_WATCH_NAMESPACES=namespace,
            CUBEPAAS_METRICS_PORT="0",
            CUBEPAAS_HEALTH_HOST="127.0.0.1",
            CUBEPAAS_SHUTDOWN_GRACE="5",
            CUBEPAAS_RETENTION_SCHEDULE="false",  # the session worker's queue owns the daily sweep
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0  # of /healthz, /readyz, /metrics once started
        self.log = OUTPUT_DIR / f"worker-{self.queue}.log"

    def start(self) -> None:
        OUTPUT_DIR.mkdir(exist_ok=True)
        port = self.port = devproc.free_port()
        env = dict(self.env, CUBEPAAS_HEALTH_PORT=str(port))
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"dedicated worker not ready: {self.log.read_text()[-3000:]}", pytrace=False)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def dedicated_worker(
    cli_env: dict[str, str], crds_installed: None
) -> Iterator[Callable[[str], DedicatedWorker]]:
    made: list[DedicatedWorker] = []

    def make(namespace: str) -> DedicatedWorker:
        w = DedicatedWorker(cli_env, namespace)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()
