"""``python -m devstack.record_histories``: record workflow histories for the replay test (tests/replay/).

Runs one pipeline per scenario on the local stack with a worker of the current code and writes each
finished workflow's history to ``tests/replay/<scenario>.json`` (with the workflow id and the commit it
was recorded from). ``tests/replay/test_replay.py`` replays them with the code under test, so a change
that would break runs started by the recorded version fails CI. Record again only when the recorded
version's runs no longer need to survive an upgrade (see README, "Safe upgrades").

Scenarios: ``success``, ``failure``, ``paused-resumed``, ``cancelled``, ``approval``,
``continued-as-new`` (every run of the chain, ``-1``, ``-2``, ...) and ``quota`` (the project's
executor-quota workflow, still open, as it is in a live cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from temporalio.client import Client, WorkflowHistory

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.messages import GateDecisionInput, Update
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec
from crds.reasons import ExecutionPhase, StageState
from devstack import proc
from devstack.gitrepo import make_git_repo
from devstack.project import apply_project
from devstack.stack import Stack

ROOT: Final = Path(__file__).resolve().parents[1]
OUTPUT: Final = ROOT / "tests" / "replay"
TASK_QUEUE_ANNOTATION: Final = "devops.cubepaas.io/task-queue"
HISTORY_LIMIT_ANNOTATION: Final = "devops.cubepaas.io/history-limit"
TIMEOUT: Final = 240.0

TWO_STAGES: Final = """
stages:
- name: Build
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo building"}
- name: Test
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo testing"}
  - runScriptConfig: {image: alpine, shellScript: "echo linting"}
"""
FAILING: Final = """
stages:
- name: Test
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo failing; exit 3"}
"""
SLOW: Final = """
stages:
- name: First
  steps:
  - runScriptConfig: {image: alpine, shellScript: "sleep 4; echo first"}
- name: Second
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo second"}
"""
LONG: Final = """
stages:
- name: Long
  steps:
  - runScriptConfig: {image: alpine, shellScript: "sleep 120"}
"""
APPROVAL: Final = """
stages:
- name: Build
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo build"}
- name: Deploy
  approval: true
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo deploy"}
"""
MANY_STEPS: Final = """
stages:
- name: One
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo 1"}
- name: Two
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo 2"}
- name: Three
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo 3"}
- name: Four
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo 4"}
"""


def say(text: str) -> None:
    print(f"record: {text}", flush=True)


@dataclass
class Recorder:
    kube: Kube
    client: Client
    namespace: str
    queue: str
    repos: Path

    def pipeline(self, name: str, pipeline_file: str) -> str:
        url, sha = make_git_repo(self.repos / name, pipeline_file, None, "main", author="recorder")
        self.kube.create(
            Pipeline(
                metadata=ObjectMeta(name=name, namespace=self.namespace),
                spec=PipelineSpec(repository_url=url, default_branch="main"),
            )
        )
        return sha

    def run(self, name: str, pipeline_file: str, annotations: dict[str, str] | None = None) -> str:
        from worker.runs import create_run

        sha = self.pipeline(name, pipeline_file)
        pe = create_run(
            self.kube,
            self.namespace,
            name,
            commit=sha,
            annotations={TASK_QUEUE_ANNOTATION: self.queue, **(annotations or {})},
        )
        return pe.name

    def wait(self, name: str, what: str, done: Callable[[PipelineExecution], bool]) -> PipelineExecution:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            pe = self.kube.get(PipelineExecution, self.namespace, name)
            if done(pe):
                return pe
            time.sleep(0.3)
        raise SystemExit(f"record: {name}: no {what} after {TIMEOUT:.0f}s")

    def finished(self, name: str, phase: ExecutionPhase) -> PipelineExecution:
        pe = self.wait(
            name,
            "end",
            lambda p: p.status is not None and bool(p.status.phase and p.status.phase.is_terminal),
        )
        assert pe.status is not None
        if pe.status.phase != phase:
            raise SystemExit(f"record: {name} ended {pe.status.phase}, not {phase}: {pe.status.message}")
        return pe

    def control(self, name: str, **spec: bool) -> None:
        self.kube.patch(PipelineExecution, self.namespace, name, {"spec": spec})

    async def histories(self, pe: PipelineExecution) -> list[tuple[str, WorkflowHistory]]:
        assert pe.status is not None and pe.status.workflow is not None
        workflow_id = pe.status.workflow.id
        runs = [wf async for wf in self.client.list_workflows(f"WorkflowId = '{workflow_id}'")]
        runs.sort(key=lambda wf: wf.start_time)
        return [
            (wf.run_id, await self.client.get_workflow_handle(workflow_id, run_id=wf.run_id).fetch_history())
            for wf in runs
        ]


def building(stage: int) -> Callable[[PipelineExecution], bool]:
    def check(pe: PipelineExecution) -> bool:
        st = pe.status
        return st is not None and len(st.stages) > stage and st.stages[stage].state == StageState.BUILDING

    return check


async def record_all(recorder: Recorder) -> dict[str, list[tuple[str, WorkflowHistory]]]:
    r = recorder
    names = {
        "success": r.run("success", TWO_STAGES),
        "failure": r.run("failure", FAILING),
        "paused-resumed": r.run("paused", SLOW),
        "cancelled": r.run("cancelled", LONG),
        "approval": r.run("approval", APPROVAL),
        "continued-as-new": r.run("chain", MANY_STEPS, {HISTORY_LIMIT_ANNOTATION: "10"}),
    }
    r.wait(names["paused-resumed"], "first stage", building(1))
    r.control(names["paused-resumed"], paused=True)
    r.wait(
        names["paused-resumed"],
        "pause",
        lambda p: p.status is not None and p.status.phase == ExecutionPhase.PAUSED,
    )
    r.control(names["paused-resumed"], paused=False)
    r.wait(names["cancelled"], "build", building(1))
    r.control(names["cancelled"], cancelled=True)
    gate = r.wait(
        names["approval"],
        "approval gate",
        lambda p: p.status is not None and p.status.pending_gate is not None,
    )
    assert gate.status is not None and gate.status.workflow is not None
    await r.client.get_workflow_handle(gate.status.workflow.id).execute_update(
        Update.APPROVE, GateDecisionInput(reason="recorded", user="recorder"), result_type=int
    )
    phases = {
        "success": ExecutionPhase.SUCCESS,
        "failure": ExecutionPhase.FAILED,
        "paused-resumed": ExecutionPhase.SUCCESS,
        "cancelled": ExecutionPhase.ABORTED,
        "approval": ExecutionPhase.SUCCESS,
        "continued-as-new": ExecutionPhase.SUCCESS,
    }
    recorded: dict[str, list[tuple[str, WorkflowHistory]]] = {}
    for scenario, name in names.items():
        recorded[scenario] = await r.histories(r.finished(name, phases[scenario]))
        say(f"{scenario}: {name}, {len(recorded[scenario])} run(s)")
    if len(recorded["continued-as-new"]) < 2:
        raise SystemExit("record: the continued-as-new scenario did not continue as new")
    quota_id = f"quota/{r.namespace}"
    quota = [wf async for wf in r.client.list_workflows(f"WorkflowId = '{quota_id}'")]
    recorded["quota"] = [
        (wf.run_id, await r.client.get_workflow_handle(quota_id, run_id=wf.run_id).fetch_history())
        for wf in quota
    ]
    return recorded


def write(recorded: dict[str, list[tuple[str, WorkflowHistory]]], out: Path) -> list[Path]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for scenario, runs in recorded.items():
        for i, (_, history) in enumerate(runs, start=1):
            name = scenario if len(runs) == 1 else f"{scenario}-{i}"
            path = out / f"{name}.json"
            record = {
                "scenario": scenario,
                "recordedFrom": commit,
                "workflowId": history.workflow_id,
                "history": json.loads(history.to_json()),
            }
            path.write_text(json.dumps(record, sort_keys=True) + "\n")
            written.append(path)
    return written


def start_worker(env: dict[str, str], queue: str, namespace: str, log: Path) -> subprocess.Popen[bytes]:
    port = proc.free_port()
    child = dict(
        os.environ,
        **env,
        CUBEPAAS_TASK_QUEUE=queue,
        CUBEPAAS_WATCH_NAMESPACES=namespace,
        CUBEPAAS_HEALTH_HOST="127.0.0.1",
        CUBEPAAS_HEALTH_PORT=str(port),
        CUBEPAAS_METRICS_PORT="0",
        CUBEPAAS_SHUTDOWN_GRACE="5",
    )
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker"], cwd=ROOT, env=child, stdout=out, stderr=subprocess.STDOUT
        )

    def ready() -> bool:
        if worker.poll() is not None:
            raise SystemExit(f"record: the worker exited ({worker.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    proc.wait_for(ready, 90, "the worker to be ready")
    return worker


async def main_async(out: Path) -> int:
    from crds.install import install_crds
    from worker.settings import WorkerSettings
    from worker.temporal import connect

    stack = Stack()
    env = stack.up()
    settings = WorkerSettings.load(stack.env_path)
    kube = settings.kube()
    install_crds(kube.api_client)
    namespace = f"replay-{uuid.uuid4().hex[:6]}"
    queue = f"record-{uuid.uuid4().hex[:8]}"
    apply_project(kube, namespace, env, executor_quota=10, poll_interval="1s")
    log = stack.dir / "record-histories-worker.log"
    worker = start_worker(env, queue, namespace, log)
    try:
        client = await connect(settings)
        with tempfile.TemporaryDirectory(prefix="replay-repos-") as repos:
            recorded = await record_all(Recorder(kube, client, namespace, queue, Path(repos)))
        for path in write(recorded, out):
            say(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        # The project's quota workflow would idle forever once its namespace is gone.
        await client.get_workflow_handle(f"quota/{namespace}").terminate("histories recorded")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        kube.delete_object("v1", "Namespace", namespace, missing_ok=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.record_histories", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=OUTPUT, help="folder of the history files (tests/replay)")
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args.out))


if __name__ == "__main__":
    sys.exit(main())


__all__: list[str] = ["main", "record_all", "write"]
