"""One PipelineExecution, from its CR to Jenkins and back: the durable orchestration.

Deterministic: all I/O happens in activities, called by name with the models of
:mod:`crds.messages`. The history stays O(stages + steps): the follow activity polls Jenkins itself
(heartbeating, resumable) and returns only when a step changes state, a gate is pending or the build
ends, so each return is one event batch and one status write.

Order: load the config -> executor quota -> bootstrap the pipeline namespace -> RoleBindings ->
Jenkins job and build -> follow (store each step's log as it ends, proceed the gate before each stage,
holding it while paused or waiting for approval) -> finish (terminal phase, Pipeline status, cleanup,
release the quota slot). Cancellation (the ``cancel`` signal or Temporal's own) stops the build,
keeps every log, cleans up and ends the run Aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributePair
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from crds.execution import JenkinsBuildRef, PipelineExecutionStatus
    from crds.messages import (
        EXECUTION_WORKFLOW,
        Activity,
        BootstrapInput,
        BootstrapResult,
        BuildRef,
        BuildSnapshot,
        CarriedState,
        CleanupInput,
        ControlInput,
        ExecutionContext,
        ExecutionWorkflowInput,
        FollowInput,
        GateDecisionInput,
        GateInput,
        JenkinsJob,
        JenkinsPrepareInput,
        JenkinsTarget,
        LoadExecutionInput,
        Query,
        QueuePosition,
        QuotaAcquireInput,
        QuotaRelease,
        RoleBindingInput,
        RoleBindingResult,
        RunFinishedInput,
        RunFinishedResult,
        Signal,
        SlotGranted,
        StatusQueryResult,
        StopInput,
        StopResult,
        StoreStepLogInput,
        StoreStepLogResult,
        TriggerInput,
        Update,
        UpdatePipelineInput,
        WriteStatusInput,
        WriteStatusResult,
        quota_workflow_id,
    )
    from crds.reasons import ConditionStatus, ConditionType, ExecutionPhase, Reason, StageState
    from workflows import progress

M = TypeVar("M", bound=BaseModel)

SA_PIPELINE = SearchAttributeKey.for_keyword("DevopsPipeline")
SA_NAMESPACE = SearchAttributeKey.for_keyword("DevopsNamespace")
SA_PHASE = SearchAttributeKey.for_keyword("DevopsPhase")
SA_BRANCH = SearchAttributeKey.for_keyword("DevopsBranch")
SA_TRIGGER = SearchAttributeKey.for_keyword("DevopsTrigger")
SA_RUN = SearchAttributeKey.for_int("DevopsRun")

#: Transient faults are retried with backoff, without limit on attempts; each activity has a
#: schedule-to-close deadline instead. Permanent ones arrive as non-retryable ApplicationErrors.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)
SHORT = timedelta(minutes=2)
STOP_GRACE_SECONDS = 10.0


def _gate_stage(gate_id: str) -> int | None:
    """``Gate3`` -> 3 (the Jenkinsfile generator names the gate before stage i ``Gate<i>``)."""
    digits = gate_id.removeprefix("Gate").removeprefix("gate")
    return int(digits) if digits.isdigit() else None


@workflow.defn(name=EXECUTION_WORKFLOW)
class PipelineExecutionWorkflow:
    def __init__(self) -> None:
        self._status = PipelineExecutionStatus()
        self._ctx: ExecutionContext | None = None
        self._input: ExecutionWorkflowInput | None = None
        self._paused = False
        self._cancel: ControlInput | None = None
        self._approved: set[int] = set()
        self._rejected: dict[int, str] = {}
        self._awaiting_approval: int | None = None
        self._held_gate: int | None = None
        self._slot = False
        self._ahead: int | None = None
        self._control_changed = False
        self._last_written: str | None = None
        self._cr_exists = True
        self._stored_logs: set[tuple[int, int]] = set()
        self._build: BuildRef | None = None
        self._job: JenkinsJob | None = None
        self._quota_held = False
        self._phase_sa: str | None = None
        self._generation = 1

    # --- entry point ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ExecutionWorkflowInput) -> PipelineExecutionStatus:
        self._input = inp
        try:
            if inp.carried is not None:
                await self._resume(inp.carried)
            else:
                await self._run()
        except asyncio.CancelledError:
            # Temporal's own cancellation (`temporal workflow cancel`, a deleted CR): same as the signal.
            # A run that already ended (cancelled while notifying) keeps its phase.
            if not self._status.is_finished:
                if self._cancel is None:
                    self._cancel = ControlInput(reason="cancelled through Temporal")
                await self._abort()
            raise
        return self._status

    async def _run(self) -> None:
        assert self._input is not None
        ref = self._input.execution
        self._status.started = workflow.now()
        self._set_phase(ExecutionPhase.WAITING, "Loading the pipeline configuration")
        try:
            ctx = await self._act(
                Activity.LOAD_EXECUTION,
                LoadExecutionInput(execution=ref),
                ExecutionContext,
                summary=f"load {ref.namespace}/{ref.name}",
            )
        except ActivityError as err:
            await self._fail(err, ConditionType.INITIALIZED, Reason.CONFIG_INVALID)
            return
        self._ctx = ctx
        progress.init_stages(self._status, ctx.config, ctx.branch, ctx.event)
        self._status.set_condition(
            ConditionType.INITIALIZED,
            ConditionStatus.TRUE,
            Reason.CONFIG_LOADED,
            f"{len(ctx.config.stages)} stages",
            workflow.now(),
        )
        self._status.set_condition(
            ConditionType.SUCCEEDED, ConditionStatus.UNKNOWN, Reason.CONFIG_LOADED, "Running", workflow.now()
        )
        workflow.upsert_search_attributes(
            [
                SA_PIPELINE.value_set(ctx.pipeline),
                SA_NAMESPACE.value_set(ctx.execution.namespace),
                SA_BRANCH.value_set(ctx.branch),
                SA_TRIGGER.value_set(ctx.triggered_by),
                SA_RUN.value_set(ctx.run),
            ]
        )
        await self._write()
        if self._cancel:
            await self._abort()
            return

        # 2. executor quota
        capacity = ctx.setting.effective_quota()
        if capacity > 0:
            self._set_phase(ExecutionPhase.QUEUEING, "Waiting for an executor slot")
            await self._write()
            await self._act(
                Activity.QUOTA_ACQUIRE,
                QuotaAcquireInput(
                    project_namespace=ctx.execution.namespace,
                    workflow_id=workflow.info().workflow_id,
                    run=ctx.run,
                    capacity=capacity,
                ),
                None,
                summary=f"queue run {ctx.run} (quota {capacity})",
            )
            self._quota_held = True
            while not (self._slot or self._cancel):
                await workflow.wait_condition(
                    lambda: self._slot or self._cancel is not None or self._control_changed
                )
                self._control_changed = False
                if not self._slot and self._ahead is not None:
                    self._status.message = f"Waiting for an executor slot ({self._ahead} ahead)"
                await self._write()
            if self._cancel:
                await self._abort()
                return

        # 3 + 4. pipeline namespace and RoleBindings
        self._set_phase(ExecutionPhase.PROVISIONING, "Provisioning the pipeline namespace")
        await self._write()
        try:
            boot = await self._act(
                Activity.BOOTSTRAP_NAMESPACE,
                BootstrapInput(
                    project_namespace=ctx.execution.namespace,
                    pipeline_namespace=ctx.pipeline_namespace,
                    jenkins_mode=ctx.setting.jenkins_mode(),
                    persistent_volumes=ctx.setting.persistent_volumes(),
                ),
                BootstrapResult,
                summary=f"bootstrap namespace {ctx.pipeline_namespace}",
                start_to_close=timedelta(minutes=15),
            )
            rb = await self._act(
                Activity.RECONCILE_ROLEBINDINGS,
                RoleBindingInput(
                    project_namespace=ctx.execution.namespace,
                    pipeline_namespace=ctx.pipeline_namespace,
                    cluster_role=ctx.setting.role_binding_cluster_role(),
                ),
                RoleBindingResult,
                summary=f"RoleBindings for {ctx.pipeline_namespace}/jenkins",
            )
        except ActivityError as err:
            await self._fail(err, ConditionType.PROVISIONED, Reason.JENKINS_NOT_READY)
            return
        self._status.set_condition(
            ConditionType.PROVISIONED,
            ConditionStatus.TRUE,
            Reason.NAMESPACE_READY,
            f"{boot.pipeline_namespace}: {boot.writes} writes; "
            f"RoleBindings +{rb.created} ~{rb.updated} -{rb.deleted}",
            workflow.now(),
        )
        if self._cancel:
            await self._abort()
            return

        # 5. Jenkins job and build
        try:
            self._job = await self._act(
                Activity.JENKINS_PREPARE,
                JenkinsPrepareInput(context=ctx),
                JenkinsJob,
                summary="Jenkins credentials and job",
            )
            target = self._target()
            self._build = await self._act(
                Activity.JENKINS_TRIGGER,
                TriggerInput(target=target, execution_id=progress.execution_id(ctx)),
                BuildRef,
                summary=f"trigger {self._job.job}",
            )
        except ActivityError as err:
            await self._fail(err, ConditionType.BUILT, Reason.BUILD_FAILED)
            return
        self._status.jenkins = JenkinsBuildRef(job=self._build.job, build=self._build.number)
        self._status.set_condition(
            ConditionType.BUILT,
            ConditionStatus.UNKNOWN,
            Reason.BUILD_STARTED,
            f"{self._build.job} #{self._build.number}",
            workflow.now(),
        )
        self._set_phase(ExecutionPhase.BUILDING, "Building")
        await self._write()

        # 6-8. follow the build
        try:
            snap = await self._follow()
        except _Ended:
            return
        if snap is None:  # cancelled while following
            await self._abort()
            return
        await self._finish(snap)

    async def _resume(self, carried: CarriedState) -> None:
        """The previous run continued as new while following the build: take its state and go on."""
        self._ctx, self._status, self._job, self._build = (
            carried.context,
            carried.status,
            carried.job,
            carried.build,
        )
        self._stored_logs = set(carried.stored_logs)
        self._quota_held, self._paused, self._cancel = carried.quota_held, carried.paused, carried.cancel
        self._approved, self._rejected = set(carried.approved), dict(carried.rejected)
        self._last_written, self._generation = carried.last_written, carried.generation
        self._phase_sa = str(self._status.phase) if self._status.phase else None
        workflow.logger.info("continuing %s (generation %d)", self._build.job, self._generation)
        if self._cancel is not None:
            await self._abort()
            return
        try:
            snap = await self._follow(carried.known)
        except _Ended:
            return
        if snap is None:
            await self._abort()
            return
        await self._finish(snap)

    def _continue_as_new_due(self) -> bool:
        assert self._input is not None
        info = workflow.info()
        limit = self._input.history_limit
        return info.is_continue_as_new_suggested() or (
            limit > 0 and info.get_current_history_length() >= limit
        )

    async def _continue_as_new(self, known: BuildSnapshot | None) -> None:
        """Hand the run over to a fresh history (many steps), keeping every piece of state."""
        assert self._input is not None and self._ctx is not None and self._job is not None
        assert self._build is not None
        await workflow.wait_condition(workflow.all_handlers_finished)
        carried = CarriedState(
            context=self._ctx,
            status=self._status,
            job=self._job,
            build=self._build,
            known=known,
            stored_logs=sorted(self._stored_logs),
            quota_held=self._quota_held,
            paused=self._paused,
            cancel=self._cancel,
            approved=sorted(self._approved),
            rejected=self._rejected,
            last_written=self._last_written,
            generation=self._generation + 1,
        )
        workflow.continue_as_new(self._input.model_copy(update={"carried": carried}))

    # --- following the build -------------------------------------------------------------------

    async def _follow(self, known: BuildSnapshot | None = None) -> BuildSnapshot | None:
        assert self._ctx is not None and self._build is not None
        poll = self._ctx.setting.poll_interval_seconds()
        while True:
            if self._continue_as_new_due():
                await self._continue_as_new(known)
            handle = workflow.start_activity(
                Activity.JENKINS_FOLLOW,
                FollowInput(
                    target=self._target(), build=self._build, known=known, poll_interval_seconds=poll
                ),
                result_type=BuildSnapshot,
                start_to_close_timeout=timedelta(hours=24),
                heartbeat_timeout=timedelta(seconds=max(10.0, poll * 5)),
                retry_policy=RETRY,
                summary=f"follow {self._build.job} #{self._build.number}",
            )
            if not await self._wait_for(handle):
                return None
            try:
                snap: BuildSnapshot = handle.result()
            except ActivityError as err:
                await self._fail(err, ConditionType.BUILT, Reason.BUILD_FAILED)
                raise _Ended() from err
            known = snap
            progress.apply_snapshot(self._status, snap, self._ctx.config)
            await self._store_logs(snap)
            if not snap.building:
                return snap
            if snap.pending_gates:
                proceeded = await self._gate(snap.pending_gates[0])
                if not proceeded and self._cancel is not None:
                    return None
                # Rejected: the gate was aborted; following the build leads to its ABORTED end.
            await self._write()

    async def _wait_for(self, handle: workflow.ActivityHandle[BuildSnapshot]) -> bool:
        """Wait for the follow activity, writing control changes meanwhile; False when cancelled."""
        while not handle.done():
            await workflow.wait_condition(
                lambda: handle.done() or self._cancel is not None or self._control_changed
            )
            if self._cancel is not None and not handle.done():
                handle.cancel()
                with contextlib.suppress(ActivityError, asyncio.CancelledError, CancelledError):
                    await handle
                return False
            if self._control_changed:
                self._control_changed = False
                await self._write()
        return True

    async def _gate(self, gate_id: str) -> bool:
        """Hold the gate while paused or waiting for approval; True when it was proceeded."""
        assert self._ctx is not None and self._build is not None
        stage = _gate_stage(gate_id)
        self._held_gate = stage
        try:
            await self._hold_while_paused(stage)
            if self._cancel is not None:
                return False
            if stage is not None and progress.needs_approval(self._ctx.config, self._status, stage):
                self._awaiting_approval = stage
                self._status.pending_gate = stage
                self._status.message = f"Waiting for approval of stage '{self._stage_name(stage)}'"
                await self._write()
                await workflow.wait_condition(
                    lambda: stage in self._approved or stage in self._rejected or self._cancel is not None
                )
                self._awaiting_approval = None
                self._status.pending_gate = None
                if self._cancel is not None:
                    return False
                if stage in self._rejected:
                    await self._act(
                        Activity.JENKINS_GATE,
                        GateInput(target=self._target(), build=self._build, gate_id=gate_id, proceed=False),
                        None,
                        summary=f"reject stage {stage}",
                    )
                    return False
                # Paused while waiting for the approval: the pause still holds the approved stage.
                await self._hold_while_paused(stage)
                if self._cancel is not None:
                    return False
            await self._act(
                Activity.JENKINS_GATE,
                GateInput(target=self._target(), build=self._build, gate_id=gate_id, proceed=True),
                None,
                summary=f"start stage {stage} ({self._stage_name(stage)})",
            )
            self._set_phase(ExecutionPhase.BUILDING, f"Running stage '{self._stage_name(stage)}'")
            return True
        finally:
            self._held_gate = None

    async def _hold_while_paused(self, stage: int | None) -> None:
        while self._paused and self._cancel is None:
            self._set_phase(ExecutionPhase.PAUSED, f"Paused before stage '{self._stage_name(stage)}'")
            await self._write()
            await workflow.wait_condition(lambda: not self._paused or self._cancel is not None)

    async def _store_logs(self, snap: BuildSnapshot, *, all_started: bool = False) -> None:
        """Store the complete log of every step that ended (or, at the end, that ever started)."""
        assert self._build is not None
        for s in snap.steps:
            key = (s.stage, s.step)
            if key in self._stored_logs:
                continue
            ended = StageState(s.state).is_terminal and s.state != StageState.SKIPPED
            if not (ended or (all_started and s.node_id)):
                continue
            res = await self._act(
                Activity.STORE_STEP_LOG,
                StoreStepLogInput(
                    target=self._target(), build=self._build, stage=s.stage, step=s.step, node_id=s.node_id
                ),
                StoreStepLogResult,
                summary=f"store log of stage {s.stage} step {s.step}",
            )
            self._stored_logs.add(key)
            progress.set_log_object(self._status, s.stage, s.step, res.object_name)

    # --- endings ---------------------------------------------------------------------------------

    async def _finish(self, snap: BuildSnapshot) -> None:
        assert self._ctx is not None
        await self._store_logs(snap, all_started=True)
        phase, reason, message = progress.outcome(self._status, snap, rejected=bool(self._rejected))
        progress.close_steps(self._status, aborted=phase in (ExecutionPhase.ABORTED, ExecutionPhase.DENIED))
        await self._end(phase, reason, message)

    async def _abort(self) -> None:
        """Cancel: stop the build, keep every log, clean up, release the slot; phase Aborted."""
        assert self._cancel is not None
        reason = self._cancel.reason or "cancelled"
        self._status.message = f"Cancelling: {reason}"
        if self._build is not None:
            try:
                await self._act(
                    Activity.JENKINS_STOP,
                    StopInput(target=self._target(), build=self._build, grace_seconds=STOP_GRACE_SECONDS),
                    StopResult,
                    summary=f"stop {self._build.job} #{self._build.number}",
                )
                snap = await self._act(
                    Activity.JENKINS_FOLLOW,
                    FollowInput(target=self._target(), build=self._build, known=None),
                    BuildSnapshot,
                    summary="final build state",
                    heartbeat=True,
                )
                progress.apply_snapshot(self._status, snap, self._ctx.config if self._ctx else None)
                await self._store_logs(snap, all_started=True)
            except ActivityError as err:
                workflow.logger.warning("stopping the build failed: %s", err)
        progress.close_steps(self._status, aborted=True)
        await self._end(ExecutionPhase.ABORTED, Reason.CANCELLED, f"Aborted: {reason}")

    async def _fail(self, err: ActivityError, cond: ConditionType, reason: str) -> None:
        cause = err.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(err)
        if isinstance(cause, ApplicationError) and cause.type:
            reason = cause.details[0] if cause.details and isinstance(cause.details[0], str) else reason
        self._status.set_condition(cond, ConditionStatus.FALSE, reason, message, workflow.now())
        progress.close_steps(self._status, aborted=False)
        await self._end(ExecutionPhase.FAILED, reason, message)

    async def _end(self, phase: ExecutionPhase, reason: str, message: str) -> None:
        """Settle everything (Pipeline status, cleanup, quota slot), then write the terminal status last:
        whoever sees the CR finished can rely on all of it being done."""
        now = workflow.now()
        succeeded = ConditionStatus.TRUE if phase == ExecutionPhase.SUCCESS else ConditionStatus.FALSE
        self._status.set_condition(ConditionType.SUCCEEDED, succeeded, reason, message, now)
        if self._build is not None:
            self._status.set_condition(ConditionType.BUILT, succeeded, reason, message, now)
        self._status.finish(phase, now, message)
        ctx = self._ctx
        if ctx is not None:
            await self._best_effort(
                Activity.UPDATE_PIPELINE,
                UpdatePipelineInput(
                    namespace=ctx.execution.namespace,
                    pipeline=ctx.pipeline,
                    execution=ctx.execution.name,
                    run=ctx.run,
                    state=phase.value,
                    started=self._status.started,
                ),
                f"Pipeline {ctx.pipeline} status",
            )
            if self._job is not None:
                await self._best_effort(
                    Activity.CLEANUP,
                    CleanupInput(target=self._target(), credential_ids=self._job.credential_ids),
                    f"clean up {self._job.job}",
                )
        await self._release()
        self._set_phase(phase, self._status.message or message)
        if ctx is not None and ctx.config.notification is not None and ctx.config.notification.recipients:
            self._status.set_condition(
                ConditionType.NOTIFIED, ConditionStatus.UNKNOWN, Reason.NOTIFYING, "sent after the run", now
            )
        await self._write()
        await self._run_finished()
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _run_finished(self) -> None:
        """After the terminal status: the notifications (exactly once) and the history limit. The
        phase and the quota slot are settled already; nothing here changes them."""
        ctx = self._ctx
        if ctx is None or not self._cr_exists:
            return
        retry_for = timedelta(seconds=ctx.setting.notification.retry_timeout.seconds)
        try:
            await workflow.execute_activity(
                Activity.RUN_FINISHED,
                RunFinishedInput(context=ctx),
                result_type=RunFinishedResult,
                start_to_close_timeout=retry_for + timedelta(minutes=5),
                schedule_to_close_timeout=retry_for + timedelta(minutes=30),
                heartbeat_timeout=timedelta(seconds=20),
                retry_policy=RETRY,
                summary="notifications and execution history",
            )
        except ActivityError as err:
            workflow.logger.warning("notifications and execution history: %s", err)

    async def _best_effort(self, name: Activity, arg: BaseModel, summary: str) -> None:
        """Housekeeping at the end: a failure is reported in the status message, and the run still ends."""
        try:
            await self._act(name, arg, None, summary=summary)
        except ActivityError as err:
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err)
            workflow.logger.warning("%s failed: %s", summary, cause)
            self._status.message = f"{self._status.message or ''} ({summary} failed: {cause})".strip()

    async def _release(self) -> None:
        if not self._quota_held or self._ctx is None:
            return
        self._quota_held = False
        try:
            await workflow.get_external_workflow_handle(
                quota_workflow_id(self._ctx.execution.namespace)
            ).signal(Signal.QUOTA_RELEASE, QuotaRelease(workflow_id=workflow.info().workflow_id))
        except FailureError as err:  # the quota workflow ended: nothing to give back
            workflow.logger.info("quota release not delivered: %s", err)

    # --- helpers ---------------------------------------------------------------------------------

    def _target(self) -> JenkinsTarget:
        assert self._ctx is not None and self._job is not None
        return JenkinsTarget(context=self._ctx, job=self._job.job)

    def _stage_name(self, stage: int | None) -> str:
        if stage is None or stage >= len(self._status.stages):
            return f"#{stage}"
        return self._status.stages[stage].name

    def _set_phase(self, phase: ExecutionPhase, message: str) -> None:
        self._status.phase = phase
        self._status.message = message
        if self._phase_sa != phase.value:
            self._phase_sa = phase.value
            workflow.upsert_search_attributes([SA_PHASE.value_set(phase.value)])

    async def _write(self) -> None:
        """Write the status into the CR when it changed (the activity retries 409s with a fresh read)."""
        assert self._input is not None
        body = self._status.model_dump_json()
        if body == self._last_written or not self._cr_exists:
            return
        workflow.set_current_details(progress.markdown(self._status))
        res = await self._act(
            Activity.WRITE_STATUS,
            WriteStatusInput(execution=self._input.execution, status=self._status),
            WriteStatusResult,
            summary=f"status: {self._status.phase}",
        )
        self._last_written = body
        self._cr_exists = res.exists

    async def _act(
        self,
        name: Activity,
        arg: BaseModel,
        result_type: type[M] | None,
        *,
        summary: str,
        start_to_close: timedelta = SHORT,
        heartbeat: bool = False,
    ) -> Any:
        return await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=start_to_close,
            schedule_to_close_timeout=max(start_to_close * 10, timedelta(minutes=30)),
            heartbeat_timeout=timedelta(seconds=60) if heartbeat else None,
            retry_policy=RETRY,
            summary=summary,
        )

    # --- signals, updates, queries ---------------------------------------------------------------

    @workflow.signal(name=Signal.PAUSE)
    def pause(self, inp: ControlInput | None = None) -> None:
        if self._status.phase is not None and ExecutionPhase(self._status.phase).is_terminal:
            return
        if not self._paused:
            self._paused = True
            self._status.paused = True
            self._control_changed = True

    @workflow.signal(name=Signal.RESUME)
    def resume(self, inp: ControlInput | None = None) -> None:
        if self._paused:
            self._paused = False
            self._status.paused = False
            self._control_changed = True

    @workflow.signal(name=Signal.CANCEL)
    def cancel(self, inp: ControlInput | None = None) -> None:
        if self._cancel is None:
            self._cancel = inp or ControlInput(reason="cancelled")
            self._control_changed = True

    @workflow.signal(name=Signal.APPROVE)
    def approve(self, inp: GateDecisionInput | None = None) -> None:
        stage = inp.stage if inp and inp.stage is not None else self._awaiting_approval
        if stage is not None:
            self._approved.add(stage)

    @workflow.signal(name=Signal.REJECT)
    def reject(self, inp: GateDecisionInput | None = None) -> None:
        stage = inp.stage if inp and inp.stage is not None else self._awaiting_approval
        if stage is not None:
            self._rejected[stage] = (inp.reason if inp else "") or "rejected"

    @workflow.update(name=Update.APPROVE)
    def approve_stage(self, inp: GateDecisionInput | None = None) -> int:
        stage = self._decision_stage(inp)
        self._approved.add(stage)
        return stage

    @approve_stage.validator
    def _validate_approve(self, inp: GateDecisionInput | None = None) -> None:
        self._decision_stage(inp)

    @workflow.update(name=Update.REJECT)
    def reject_stage(self, inp: GateDecisionInput | None = None) -> int:
        stage = self._decision_stage(inp)
        self._rejected[stage] = (inp.reason if inp else "") or "rejected"
        return stage

    @reject_stage.validator
    def _validate_reject(self, inp: GateDecisionInput | None = None) -> None:
        self._decision_stage(inp)

    def _decision_stage(self, inp: GateDecisionInput | None) -> int:
        waiting = self._awaiting_approval
        if waiting is None:
            raise ApplicationError("no stage is waiting for approval", type="NotWaitingForApproval")
        if inp is not None and inp.stage is not None and inp.stage != waiting:
            raise ApplicationError(
                f"stage {inp.stage} is not waiting for approval; stage {waiting} "
                f"('{self._stage_name(waiting)}') is",
                type="NotWaitingForApproval",
            )
        return waiting

    @workflow.signal(name=Signal.SLOT_GRANTED)
    def slot_granted(self, inp: SlotGranted | None = None) -> None:
        self._slot = True
        self._control_changed = True

    @workflow.signal(name=Signal.QUEUE_POSITION)
    def queue_position(self, inp: QueuePosition) -> None:
        self._ahead = inp.ahead
        self._control_changed = True

    @workflow.query(name=Query.STATUS)
    def status(self) -> StatusQueryResult:
        return StatusQueryResult(
            phase=str(self._status.phase or ""),
            paused=self._paused,
            cancel_requested=self._cancel is not None,
            pending_gate=self._held_gate,
            waiting_for_approval=self._awaiting_approval is not None,
            status=self._status,
        )


class _Ended(Exception):
    """Internal: the run already ended (status written) and the follow loop must stop."""


__all__ = ["PipelineExecutionWorkflow", "SearchAttributePair"]
