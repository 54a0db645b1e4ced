"""Fault scenarios on the real local stack, shared by the chaos tests (``make chaos``) and ``make bench``.

Each scenario starts its own ``python -m worker`` process(es) on a unique task queue, watching only the
scenario's project namespace (``keepJenkinsJobs`` high, so every run's Jenkins job survives to be
counted), creates runs, breaks something mid-build, and returns a :class:`ChaosResult`:

- **lost**: runs whose CR did not reach a terminal phase before the deadline (or vanished);
- **duplicates**: Jenkins builds beyond the first, counted per run in its job (jenkins-lite);
- **worst resume**: for the worker-kill scenario, the longest time from the new worker's start until a
  run's status moved again (or the run ended) — the dead-worker figure; measured, never asserted.

Scenarios: :meth:`Chaos.component_outage` (``kube-apiserver``, ``jenkins`` or ``s3`` stopped mid-build,
then started again), :meth:`Chaos.worker_killed_in_burst`, :meth:`Chaos.two_workers` and
:meth:`Chaos.cr_deleted_mid_build`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.meta import GROUP, VERSION, ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec
from crds.reasons import ExecutionPhase
from devstack import proc as devproc
from devstack.gitrepo import make_git_repo
from devstack.project import apply_project
from devstack.stack import Stack
from worker.bridge import TASK_QUEUE_ANNOTATION
from worker.runs import create_run

REPO_ROOT = Path(__file__).resolve().parent.parent
TERMINAL = {p.value for p in ExecutionPhase if p.is_terminal}
WORKER_READY_TIMEOUT = 90.0
#: Deadline for every run of a scenario to end. Longer than the longest activity timeout (the bootstrap's
#: 15 min start-to-close): an activity whose worker died without a heartbeat timeout is retried only then,
#: and such a run is slow, not lost.
FINISH_TIMEOUT = 1200.0
OUTAGE_SECONDS = 5.0
T = TypeVar("T")


def say(text: str) -> None:
    print(text, flush=True)


def steps_file(stages: int, seconds: float) -> str:
    """A pipeline file of ``stages`` stages of one ``sleep`` step each: a state change every step."""
    lines = ["stages:"]
    for i in range(stages):
        script = json.dumps(f"echo stage {i}; sleep {seconds}; echo done")
        lines += [
            f"- name: S{i}",
            "  steps:",
            f"  - runScriptConfig: {{image: alpine, shellScript: {script}}}",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class ChaosResult:
    """What one scenario did to its runs."""

    scenario: str
    runs: int
    lost: int
    duplicates: int
    phases: Counter[str] = field(default_factory=Counter)
    worst_resume_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        phases = ", ".join(f"{k} {v}" for k, v in sorted(self.phases.items()))
        resume = (
            "" if self.worst_resume_seconds is None else f", worst resume {self.worst_resume_seconds:.1f} s"
        )
        return f"{self.runs} runs: {self.lost} lost, {self.duplicates} duplicate builds{resume} ({phases})"


class WorkerProcess:
    """One ``python -m worker`` on a task queue, watching chosen namespaces; log in ``output``."""

    def __init__(
        self, env: dict[str, str], queue: str, namespaces: list[str], output: Path, tag: str
    ) -> None:
        self.queue = queue
        self.port = devproc.free_port()
        self.env = dict(os.environ)
        self.env.update(env)
        self.env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "CUBEPAAS_TASK_QUEUE": queue,
                "CUBEPAAS_WATCH_NAMESPACES": ",".join(namespaces),
                "CUBEPAAS_HEALTH_HOST": "127.0.0.1",
                "CUBEPAAS_HEALTH_PORT": str(self.port),
                "CUBEPAAS_METRICS_PORT": "0",
                "CUBEPAAS_SHUTDOWN_GRACE": "5",
            }
        )
        output.mkdir(parents=True, exist_ok=True)
        self.log = output / f"worker-{queue}-{tag}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it and wait for /readyz; returns the monotonic time it was started."""
        began = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = began + WORKER_READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {devproc.tail(self.log)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return began
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"worker not ready after {WORKER_READY_TIMEOUT:.0f}s: {devproc.tail(self.log)}"
                )
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL, the whole process group (its own session): nothing gets to clean up."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class Chaos:
    """The scenarios, on one running stack. Close with :meth:`close`."""

    def __init__(self, stack: Stack, env: dict[str, str], kube: Kube, repos: Path, output: Path) -> None:
        self.stack = stack
        self.env = env
        self.kube = kube
        self.repos = repos
        self.output = output
        self.runner = asyncio.Runner()
        self.temporal: Client = self.runner.run(
            Client.connect(
                env["TEMPORAL_ADDRESS"],
                namespace=env["TEMPORAL_NAMESPACE"],
                data_converter=pydantic_data_converter,
            )
        )
        self.jenkins = requests.Session()
        self.jenkins.auth = (env["JENKINS_USER"], env["JENKINS_TOKEN"])
        self.workers: list[WorkerProcess] = []

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.runner.close()
        self.jenkins.close()

    # -- building blocks ---------------------------------------------------------------------------

    def project(self, scenario: str, *, quota: int) -> tuple[str, str]:
        """A fresh project namespace and task queue for one scenario."""
        tag = uuid.uuid4().hex[:6]
        namespace = f"chaos-{scenario}-{tag}"
        apply_project(
            self.kube, namespace, self.env, executor_quota=quota, poll_interval="1s", keep_jenkins_jobs=1000
        )
        return namespace, f"chaos-{tag}"

    def worker(self, queue: str, namespace: str, tag: str = "a") -> WorkerProcess:
        worker = WorkerProcess(self.env, queue, [namespace], self.output, tag)
        self.workers.append(worker)
        return worker

    def pipeline(self, namespace: str, text: str, name: str = "app") -> str:
        url, sha = make_git_repo(self.repos / f"{namespace}-{name}", text, author="chaos")
        self.kube.create(
            Pipeline(
                metadata=ObjectMeta(name=name, namespace=namespace),
                spec=PipelineSpec(repository_url=url, default_branch="main"),
            )
        )
        return sha

    def start_runs(
        self, namespace: str, queue: str, sha: str, count: int, pipeline: str = "app"
    ) -> list[str]:
        return [
            create_run(
                self.kube, namespace, pipeline, commit=sha, annotations={TASK_QUEUE_ANNOTATION: queue}
            ).name
            for _ in range(count)
        ]

    def cr(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.kube.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PipelineExecution.plural(), name
            )
        except Exception as err:  # 404, or the apiserver is down for the scenario
            if getattr(err, "status", None) == 404:
                return None
            raise
        return obj

    def statuses(self, namespace: str) -> dict[str, dict[str, Any]]:
        """``name -> CR`` of every execution in the namespace (one LIST)."""
        items = self.kube.list_objects(f"{GROUP}/{VERSION}", "PipelineExecution", namespace=namespace)
        return {str(i["metadata"]["name"]): i for i in items}

    def wait(self, what: str, predicate: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
        return devproc.wait_for(predicate, timeout, what, interval)

    def wait_building(self, namespace: str, names: list[str], at_least: int, timeout: float = 180) -> None:
        """Until ``at_least`` of the runs have a Jenkins build number."""

        def enough() -> bool:
            crs = self.statuses(namespace)
            started = [
                n for n in names if ((crs.get(n, {}).get("status") or {}).get("jenkins") or {}).get("build")
            ]
            return len(started) >= at_least

        self.wait(f"{at_least} builds to start in {namespace}", enough, timeout)

    def finish(
        self, scenario: str, namespace: str, names: list[str], timeout: float = FINISH_TIMEOUT
    ) -> ChaosResult:
        """Wait (until ``timeout``) for every run to end; count the lost ones and the duplicate builds."""
        deadline = time.monotonic() + timeout
        crs: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            try:
                crs = self.statuses(namespace)
            except Exception:
                time.sleep(1)  # the apiserver may still be coming back
                continue
            if all(((crs.get(n) or {}).get("status") or {}).get("phase") in TERMINAL for n in names):
                break
            time.sleep(1)
        phases: Counter[str] = Counter()
        lost = duplicates = 0
        notes: list[str] = []
        for name in names:
            status = (crs.get(name) or {}).get("status") or {}
            phase = status.get("phase")
            phases[str(phase)] += 1
            if phase not in TERMINAL:
                lost += 1
                notes.append(f"{name} did not end (phase {phase}, message {status.get('message')!r})")
            job = (status.get("jenkins") or {}).get("job")
            if job:
                builds = self.builds_of(job)
                if builds > 1:
                    duplicates += builds - 1
                    notes.append(f"{name}: {builds} builds in job {job}")
        return ChaosResult(scenario, len(names), lost, duplicates, phases, notes=notes)

    def builds_of(self, job: str) -> int:
        response = self.jenkins.get(
            f"{self.env['JENKINS_URL']}job/{quote(job, safe='')}/api/json", timeout=30
        )
        if response.status_code == 404:
            return 0
        response.raise_for_status()
        return len(response.json().get("builds") or [])

    def workflow_status(self, workflow_id: str) -> WorkflowExecutionStatus | None:
        async def describe() -> WorkflowExecutionStatus | None:
            return (await self.temporal.get_workflow_handle(workflow_id).describe()).status

        return self.runner.run(describe())

    # -- scenarios ---------------------------------------------------------------------------------

    def component_outage(self, component: str, *, runs: int = 3) -> ChaosResult:
        """``component`` (kube-apiserver, jenkins, s3) stopped while builds run, then started again."""
        namespace, queue = self.project(component.replace("kube-", ""), quota=runs)
        worker = self.worker(queue, namespace)
        worker.start()
        sha = self.pipeline(namespace, steps_file(3, 3))
        names = self.start_runs(namespace, queue, sha, runs)
        self.wait_building(namespace, names, runs)
        say(f"  stopping {component} with {runs} builds running")
        self.stack.stop_component(component)
        time.sleep(OUTAGE_SECONDS)
        self.stack.start_component(component)
        say(f"  {component} is back")
        result = self.finish(f"{component} stopped mid-build", namespace, names)
        worker.stop()
        return result

    def worker_killed_in_burst(self, *, runs: int = 20) -> ChaosResult:
        """A burst of ``runs``; the worker SIGKILLed once builds run; a new worker started at once."""
        namespace, queue = self.project("burst", quota=runs)
        first = self.worker(queue, namespace, "first")
        first.start()
        sha = self.pipeline(namespace, steps_file(4, 2))
        names = self.start_runs(namespace, queue, sha, runs)
        self.wait_building(namespace, names, min(4, runs))
        before = self.statuses(namespace)
        first.kill()
        say(f"  worker SIGKILLed with {runs} runs in flight")
        second = self.worker(queue, namespace, "second")
        started = second.start()
        resumed = self._resume_times(namespace, names, before, started)
        result = self.finish("worker SIGKILLed in a burst", namespace, names)
        result.worst_resume_seconds = max(resumed.values()) if resumed else 0.0
        slowest = max(resumed, key=lambda n: resumed[n]) if resumed else None
        if slowest is not None:
            phase = ((before.get(slowest) or {}).get("status") or {}).get("phase")
            result.notes.append(f"slowest to resume: {slowest} (was {phase} when the worker died)")
        second.stop()
        return result

    def _resume_times(
        self, namespace: str, names: list[str], before: dict[str, dict[str, Any]], started: float
    ) -> dict[str, float]:
        """Seconds from ``started`` until each unfinished run's status changed (written by the new worker)."""
        versions = {n: str((before.get(n) or {}).get("metadata", {}).get("resourceVersion")) for n in names}
        pending = {
            n for n in names if ((before.get(n) or {}).get("status") or {}).get("phase") not in TERMINAL
        }
        resumed: dict[str, float] = {}
        deadline = time.monotonic() + FINISH_TIMEOUT
        while pending and time.monotonic() < deadline:
            crs = self.statuses(namespace)
            now = time.monotonic()
            for name in list(pending):
                cr = crs.get(name) or {}
                if str(cr.get("metadata", {}).get("resourceVersion")) != versions[name]:
                    resumed[name] = now - started
                    pending.discard(name)
            time.sleep(0.25)
        for name in pending:  # never moved before the deadline: at least that long
            resumed[name] = time.monotonic() - started
        return resumed

    def two_workers(self, *, runs: int = 6) -> ChaosResult:
        """Two workers (each with its bridge) on one task queue and one namespace at the same time."""
        namespace, queue = self.project("twins", quota=runs)
        for tag in ("left", "right"):
            self.worker(queue, namespace, tag).start()
        sha = self.pipeline(namespace, steps_file(2, 1))
        names = self.start_runs(namespace, queue, sha, runs)
        result = self.finish("two workers at once", namespace, names)
        for name in names:
            wid = ((self.cr(namespace, name) or {}).get("status") or {}).get("workflow", {}).get("id")
            if not wid:
                result.notes.append(f"{name} has no status.workflow")
        return result

    def cr_deleted_mid_build(self) -> ChaosResult:
        """A CR deleted while its build runs: its workflow is cancelled and the build stopped."""
        namespace, queue = self.project("deleted", quota=2)
        worker = self.worker(queue, namespace)
        worker.start()
        sha = self.pipeline(namespace, steps_file(2, 30))
        (name,) = self.start_runs(namespace, queue, sha, 1)
        self.wait_building(namespace, [name], 1)
        status = (self.cr(namespace, name) or {}).get("status") or {}
        job, build, wid = status["jenkins"]["job"], status["jenkins"]["build"], status["workflow"]["id"]
        self.kube.custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PipelineExecution.plural(), name
        )
        result = ChaosResult("CR deleted mid-build", 1, 0, 0)

        def closed() -> WorkflowExecutionStatus | None:
            st = self.workflow_status(wid)
            return st if st is not None and st != WorkflowExecutionStatus.RUNNING else None

        try:
            result.phases[f"workflow {self.wait('the workflow to close', closed, 120).name}"] += 1
        except TimeoutError:
            result.lost = 1
            result.notes.append(f"workflow {wid} still running after its CR was deleted")
        url = f"{self.env['JENKINS_URL']}job/{quote(job, safe='')}/{build}/api/json"
        info = self.jenkins.get(url, timeout=30)
        if info.status_code == 200:
            body = info.json()
            if body.get("building"):
                result.lost = 1
                result.notes.append(f"{job} #{build} still building after the workflow closed")
            result.phases[f"build {body.get('result')}"] += 1
        result.duplicates = max(0, self.builds_of(job) - 1)
        worker.stop()
        return result


__all__ = ["Chaos", "ChaosResult", "WorkerProcess", "steps_file"]
