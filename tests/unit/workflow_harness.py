"""Stub activities for the workflow tests: registered under the real activity names, scripted per test.

The stubs play the CR, Jenkins and the object store: the load returns a context built from a pipeline
file, the follow returns the scripted build snapshots one per call (and, once the script is used up,
heartbeats until it is cancelled, like a build that runs on), every call is recorded, and any activity
can be told to fail with a given error. The quota activities are the real ones (they only talk to
Temporal), so the real ExecutorQuotaWorkflow runs alongside.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.build import logs_due
from activities.errors import PermanentError, to_application_error
from activities.jenkins.logs import last_line
from activities.quota import QuotaActivities
from crds import build_status
from crds.build_status import housekeeping_failed, pipeline_status_step
from crds.execution import PipelineExecutionStatus
from crds.messages import (
    Activity,
    BootstrapInput,
    BootstrapResult,
    BuildRef,
    BuildSnapshot,
    CleanupInput,
    ConsoleTail,
    ConsoleTailInput,
    ExecutionContext,
    ExecutionRef,
    ExecutionWorkflowInput,
    FinishInput,
    FinishResult,
    FollowInput,
    FollowResult,
    FollowThroughInput,
    GateInput,
    JenkinsJob,
    JenkinsPrepareInput,
    LoadExecutionInput,
    NamespaceCheckInput,
    NamespaceCheckResult,
    RoleBindingInput,
    RoleBindingResult,
    RunFinishedInput,
    RunFinishedResult,
    StepReport,
    StepSnapshot,
    StopInput,
    StopResult,
    StoredLog,
    StoreStepLogInput,
    StoreStepLogResult,
    TriggerInput,
    UpdatePipelineInput,
    WriteStatusInput,
    WriteStatusResult,
)
from crds.parse import parse_pipeline_file
from crds.setting import PipelineSettingSpec
from workflows.execution import PipelineExecutionWorkflow
from workflows.quota import ExecutorQuotaWorkflow

#: Two stages: ``Build`` (one step) and ``Deploy`` (one step, approval when asked).
PIPELINE_FILE = """
stages:
- name: Build
  steps:
  - runScriptConfig: {image: alpine, shellScript: "make"}
- name: Deploy
  approval: %(approval)s
  steps:
  - runScriptConfig: {image: alpine, shellScript: "deploy"}
"""


def step(stage: int, index: int, state: str) -> StepSnapshot:
    ended = None if state in ("Waiting", "Building") else 2000
    return StepSnapshot(
        stage=stage, step=index, state=state, started_ms=1000, ended_ms=ended, node_id=f"n{stage}{index}"
    )


def snapshot(
    *steps: StepSnapshot, gates: list[int] | None = None, result: str | None = None
) -> BuildSnapshot:
    """A build snapshot; with ``result`` the build has ended."""
    return BuildSnapshot(
        number=1,
        building=result is None,
        result=result,
        steps=list(steps),
        pending_gates=gates or [],
        started_ms=1000,
        ended_ms=3000 if result else None,
    )


def successful_build() -> list[BuildSnapshot]:
    """Clone, gate 1, Build, gate 2, Deploy, SUCCESS: the snapshots the follow activity returns."""
    return [
        snapshot(step(0, 0, "Success"), gates=[1]),
        snapshot(step(0, 0, "Success"), step(1, 0, "Success"), gates=[2]),
        snapshot(step(0, 0, "Success"), step(1, 0, "Success"), step(2, 0, "Success"), result="SUCCESS"),
    ]


def permanent(message: str, reason: Any = None) -> ApplicationError:
    """What an activity raises for a permanent fault (as activities.errors translates it)."""
    return to_application_error(PermanentError(message, reason=reason))


@dataclass
class World:
    """The scripted outside world of one test."""

    approval: bool = False
    quota: int = 0
    pipeline: str = "app"
    run: int = 1
    created: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    #: Creation times of runs by execution name (default: ``created``).
    created_at: dict[str, datetime] = field(default_factory=dict)
    #: What the follow activity returns, per execution name (default: ``default_build()``); once a
    #: run's list is used up, its follow heartbeats until cancelled (a build that runs on).
    builds: dict[str, list[BuildSnapshot]] = field(default_factory=dict)
    default_build: Callable[[], list[BuildSnapshot]] = successful_build
    #: Activities that wait for ``release`` before they return (to act while one runs).
    block: set[Activity] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    reached: set[Activity] = field(default_factory=set)
    #: The build's state after a stop (what the final follow of a cancel returns).
    after_stop: BuildSnapshot = field(
        default_factory=lambda: snapshot(step(0, 0, "Success"), result="ABORTED")
    )
    #: activity name -> error raised by that activity (every call, or the nth with ``fail_on_call``).
    fail: dict[Activity, BaseException] = field(default_factory=dict)
    fail_on_call: dict[Activity, int] = field(default_factory=dict)
    console: str = "Started\nResuming build after Jenkins restart\nFinished: ABORTED\n"
    calls: list[tuple[Activity, Any]] = field(default_factory=list)
    #: Every status written, with the execution's name.
    statuses: list[tuple[str, PipelineExecutionStatus]] = field(default_factory=list)
    #: Executions whose follow heartbeats with nothing left to return.
    idle: set[str] = field(default_factory=set)
    stopped: set[str] = field(default_factory=set)
    #: What the namespace check answers: this worker bootstrapped the namespace a moment ago.
    verified: bool = False
    #: Whether the prepare starts the build when asked (it cannot when triggering fails: then the
    #: trigger activity is left to do it).
    prepare_triggers: bool = True
    #: The executions whose build was started, in order, by the prepare or by the trigger activity.
    started: list[str] = field(default_factory=list)

    def written(self, name: str = "app-1") -> list[PipelineExecutionStatus]:
        """The statuses written into the CR of execution ``name``, in order."""
        return [status for n, status in self.statuses if n == name]

    def called(self, name: Activity) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]

    async def _record(self, name: Activity, arg: Any) -> None:
        self.calls.append((name, arg))
        if name in self.block:
            self.reached.add(name)
            await self.release.wait()
        if name in self.fail:
            nth = self.fail_on_call.get(name)
            if nth is None or len(self.called(name)) == nth:
                raise self.fail[name]

    def context(self, ref: ExecutionRef) -> ExecutionContext:
        # A run named ``<pipeline>-<run>`` is that pipeline's run (several pipelines share a project).
        pipeline, _, run = ref.name.rpartition("-")
        return ExecutionContext(
            execution=ref,
            pipeline=pipeline if run.isdigit() else self.pipeline,
            run=int(run) if run.isdigit() else self.run,
            branch="main",
            commit="0" * 40,
            event="push",
            repository_url="https://git.example/app.git",
            config=parse_pipeline_file(PIPELINE_FILE % {"approval": str(self.approval).lower()}),
            setting=PipelineSettingSpec(executor_quota=self.quota, poll_interval="1s"),
            pipeline_namespace=f"{ref.namespace}-pipeline",
            started=self.created_at.get(ref.name, self.created),
        )

    # --- the stubs, under the real activity names -------------------------------------------------

    @activity.defn(name=Activity.LOAD_EXECUTION)
    async def load(self, inp: LoadExecutionInput) -> ExecutionContext:
        await self._record(Activity.LOAD_EXECUTION, inp)
        return self.context(inp.execution)

    @activity.defn(name=Activity.WRITE_STATUS)
    async def write_status(self, inp: WriteStatusInput) -> WriteStatusResult:
        await self._record(Activity.WRITE_STATUS, inp)
        self.statuses.append((inp.execution.name, inp.status))
        return WriteStatusResult(written=True)

    @activity.defn(name=Activity.UPDATE_PIPELINE)
    async def update_pipeline(self, inp: UpdatePipelineInput) -> None:
        await self._record(Activity.UPDATE_PIPELINE, inp)

    @activity.defn(name=Activity.BOOTSTRAP_NAMESPACE)
    async def bootstrap(self, inp: BootstrapInput) -> BootstrapResult:
        await self._record(Activity.BOOTSTRAP_NAMESPACE, inp)
        return BootstrapResult(pipeline_namespace=inp.pipeline_namespace)

    @activity.defn(name=Activity.RECONCILE_ROLEBINDINGS)
    async def rolebindings(self, inp: RoleBindingInput) -> RoleBindingResult:
        await self._record(Activity.RECONCILE_ROLEBINDINGS, inp)
        return RoleBindingResult()

    @activity.defn(name=Activity.JENKINS_PREPARE)
    async def prepare(self, inp: JenkinsPrepareInput) -> JenkinsJob:
        await self._record(Activity.JENKINS_PREPARE, inp)
        job = JenkinsJob(job=f"{inp.context.pipeline}-{inp.context.run}", credential_ids=["git"])
        if inp.trigger_execution_id and self.prepare_triggers and Activity.JENKINS_TRIGGER not in self.fail:
            self.started.append(inp.context.execution.name)
            job.build = BuildRef(job=job.job, queue_id=7, number=1)
        return job

    @activity.defn(name=Activity.JENKINS_TRIGGER)
    async def trigger(self, inp: TriggerInput) -> BuildRef:
        await self._record(Activity.JENKINS_TRIGGER, inp)
        self.started.append(inp.target.context.execution.name)
        return BuildRef(job=inp.target.job, queue_id=7, number=1)

    @activity.defn(name=Activity.JENKINS_FOLLOW)
    async def follow(self, inp: FollowInput) -> BuildSnapshot:
        await self._record(Activity.JENKINS_FOLLOW, inp)
        name = inp.target.context.execution.name
        if name in self.stopped:
            return self.after_stop
        script = self.builds.setdefault(name, self.default_build())
        if script:
            return script.pop(0)
        # Nothing scripted: the build runs on until the workflow cancels this call.
        self.idle.add(name)
        try:
            while True:
                activity.heartbeat()
                await asyncio.sleep(0.05)
        finally:
            self.idle.discard(name)

    @activity.defn(name=Activity.JENKINS_FOLLOW_THROUGH)
    async def follow_through(self, inp: FollowThroughInput) -> FollowResult:
        """The scripted snapshots, handled as the real activity does: a gate of ``proceed_gates`` is
        proceeded (recorded as a JENKINS_GATE call), each ended step's log stored (a STORE_STEP_LOG call:
        both can be blocked or made to fail), each change written; returns at the end or at another gate."""
        await self._record(Activity.JENKINS_FOLLOW_THROUGH, inp)
        ctx, name = inp.target.context, inp.target.context.execution.name
        status = inp.status.model_copy(deep=True)
        stored = set(inp.stored_logs)
        result = FollowResult(
            snapshot=BuildSnapshot(), status=status, last_written=inp.last_written, cr_exists=inp.cr_exists
        )
        script = self.builds.setdefault(name, self.default_build())
        while script:
            snap = result.snapshot = script.pop(0)
            gate = snap.pending_gates[0] if snap.pending_gates else None
            if snap.building and gate is not None and gate in inp.proceed_gates:
                await self._record(
                    Activity.JENKINS_GATE, GateInput(target=inp.target, build=inp.build, stage=gate)
                )
                continue
            build_status.apply_snapshot(status, snap, ctx.config)
            for key, node_id in logs_due(snap, stored):
                await self._record(
                    Activity.STORE_STEP_LOG,
                    StoreStepLogInput(
                        target=inp.target, build=inp.build, stage=key.stage, step=key.step, node_id=node_id
                    ),
                )
                object_name = f"logs/{key.stage}/{key.step}.log"
                report = self.log_report(key.stage, key.step)
                build_status.set_log_object(status, key.stage, key.step, object_name, report)
                stored.add(key)
                result.stored.append(
                    StoredLog(stage=key.stage, step=key.step, object_name=object_name, report=report)
                )
            if not snap.building or gate is not None:
                return result
            body = status.model_dump_json()
            if body != result.last_written:
                self.statuses.append((name, status.model_copy(deep=True)))
                result.last_written = body
        # Nothing scripted: the build runs on until the workflow cancels this call.
        self.idle.add(name)
        try:
            while True:
                activity.heartbeat()
                await asyncio.sleep(0.05)
        finally:
            self.idle.discard(name)

    @activity.defn(name=Activity.NAMESPACE_VERIFIED)
    async def namespace_verified(self, inp: NamespaceCheckInput) -> NamespaceCheckResult:
        await self._record(Activity.NAMESPACE_VERIFIED, inp)
        return NamespaceCheckResult(verified=self.verified, age_seconds=12.0 if self.verified else 0.0)

    @activity.defn(name=Activity.JENKINS_GATE)
    async def gate(self, inp: GateInput) -> None:
        await self._record(Activity.JENKINS_GATE, inp)

    @activity.defn(name=Activity.JENKINS_STOP)
    async def stop(self, inp: StopInput) -> StopResult:
        await self._record(Activity.JENKINS_STOP, inp)
        self.stopped.add(inp.target.context.execution.name)
        return StopResult(result="ABORTED")

    @activity.defn(name=Activity.JENKINS_CONSOLE_TAIL)
    async def console_tail(self, inp: ConsoleTailInput) -> ConsoleTail:
        await self._record(Activity.JENKINS_CONSOLE_TAIL, inp)
        return ConsoleTail(last_line=last_line(self.console))

    @activity.defn(name=Activity.STORE_STEP_LOG)
    async def store_step_log(self, inp: StoreStepLogInput) -> StoreStepLogResult:
        await self._record(Activity.STORE_STEP_LOG, inp)
        return StoreStepLogResult(
            object_name=f"logs/{inp.stage}/{inp.step}.log",
            size=3,
            report=self.log_report(inp.stage, inp.step),
        )

    def log_report(self, stage: int, step: int) -> StepReport | None:
        """What a step's stored log reports (none; a test's world may say otherwise)."""
        return None

    @activity.defn(name=Activity.CLEANUP)
    async def cleanup(self, inp: CleanupInput) -> None:
        await self._record(Activity.CLEANUP, inp)

    @activity.defn(name=Activity.RUN_FINISHED)
    async def run_finished(self, inp: RunFinishedInput) -> RunFinishedResult:
        await self._record(Activity.RUN_FINISHED, inp)
        return RunFinishedResult()

    @activity.defn(name=Activity.FINISH)
    async def finish(self, inp: FinishInput) -> FinishResult:
        """The three stubs it stands for, in the real activity's order and with its failures."""
        await self._record(Activity.FINISH, inp)
        failed: str | None = None
        try:
            await self.update_pipeline(inp.pipeline)
        except ApplicationError as err:
            if not err.non_retryable:
                raise
            failed = err.message
            step = pipeline_status_step(inp.pipeline.pipeline)
            inp.write.status.message = housekeeping_failed(inp.write.status.message, step, failed)
        written = await self.write_status(inp.write)
        result = FinishResult(write=written, pipeline_failed=failed)
        if inp.history is not None and written.exists:
            try:
                await self.run_finished(inp.history)
            except ApplicationError as err:
                result.history_failed = err.message
        return result

    def stubs(self) -> list[Callable[..., Any]]:
        return [
            self.load,
            self.write_status,
            self.update_pipeline,
            self.bootstrap,
            self.rolebindings,
            self.prepare,
            self.trigger,
            self.follow,
            self.follow_through,
            self.namespace_verified,
            self.gate,
            self.stop,
            self.console_tail,
            self.store_step_log,
            self.cleanup,
            self.run_finished,
            self.finish,
        ]


@asynccontextmanager
async def running(env: WorkflowEnvironment, world: World) -> AsyncIterator[str]:
    """A worker with the stubs of ``world`` and both workflows; yields its task queue."""
    queue = f"tq-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[PipelineExecutionWorkflow, ExecutorQuotaWorkflow],
        activities=[*world.stubs(), *_quota_activities(env, queue)],
    ):
        yield queue


def _quota_activities(env: WorkflowEnvironment, queue: str) -> list[Callable[..., Any]]:
    q = QuotaActivities(env.client, queue)
    return [q.acquire, q.gone_holders]


async def start(
    env: WorkflowEnvironment, queue: str, *, name: str = "app-1", namespace: str | None = None, **kw: Any
) -> WorkflowHandle[Any, PipelineExecutionStatus]:
    ns = namespace or f"proj-{uuid.uuid4().hex[:8]}"
    ref = ExecutionRef(namespace=ns, name=name, uid=uuid.uuid4().hex)
    return await env.client.start_workflow(
        PipelineExecutionWorkflow.run,
        ExecutionWorkflowInput(execution=ref, **kw),
        id=f"pe-{ns}-{name}-{ref.uid}",
        task_queue=queue,
        result_type=PipelineExecutionStatus,
    )


async def eventually(check: Callable[[], Any], what: str, seconds: float = 60.0) -> None:
    """Poll (real time, 25 ms apart) until ``check()`` is truthy; fail naming ``what``.

    The cap is generous because a loaded 2-core machine slows the test server, not because anything
    should take that long. A query that times out (the run is between two workflow tasks, e.g. while
    it continues as new) counts as "not yet".
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if await _value(check):
                return
        except RPCError as err:
            # The server gave up waiting for a worker to answer the query (DEADLINE_EXCEEDED), or the
            # client's own call timed out ("Timeout expired", reported as CANCELLED).
            if err.status not in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
                raise
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


async def _value(check: Callable[[], Any]) -> Any:
    value = check()
    if asyncio.iscoroutine(value):
        value = await value
    return value


__all__ = [
    "World",
    "eventually",
    "permanent",
    "running",
    "snapshot",
    "start",
    "step",
    "successful_build",
]
