"""One PipelineExecution, from its CR to Jenkins and back: the durable orchestration.

Deterministic: all I/O happens in activities, called by name with the models of
:mod:`crds.messages`. The history stays O(stages + steps): the follow activity polls Jenkins itself
(heartbeating, resumable) and returns only when a step changes state, a gate is pending or the build
ends, so each return is one event batch and one status write.

The workflow's whole state is one model, :class:`~crds.messages.ExecutionState`, which is also what it
carries over continue-as-new. Its phases run in order, each a method: load the config -> executor
quota -> provision the pipeline namespace and RoleBindings -> Jenkins job and build -> follow (store
each step's log as it ends, proceed the gate before each stage, holding it while paused or waiting for
approval). Each phase returns or raises; however it ends (the build's result, a cancel, an error in any
activity) the run goes through one finish path, :meth:`_finish`: the terminal status with its reason,
the Pipeline's status, cleanup, the quota slot given back. The workflow itself fails only where
Temporal must (a bug in this code fails the workflow task, which Temporal retries).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from crds import build_status
    from crds.execution import JenkinsBuildRef, PipelineExecutionStatus, WorkflowRef
    from crds.messages import (
        EXECUTION_WORKFLOW,
        Activity,
        BootstrapInput,
        BootstrapResult,
        BuildRef,
        BuildSnapshot,
        CleanupInput,
        ConsoleTail,
        ConsoleTailInput,
        ControlInput,
        ControlsQueryResult,
        ExecutionContext,
        ExecutionState,
        ExecutionWorkflowInput,
        FinishInput,
        FinishResult,
        FollowInput,
        FollowResult,
        FollowThroughInput,
        GateDecisionInput,
        GateInput,
        JenkinsJob,
        JenkinsPrepareInput,
        JenkinsTarget,
        LoadExecutionInput,
        NamespaceCheckInput,
        NamespaceCheckResult,
        Query,
        QueuePosition,
        QuotaAcquireInput,
        QuotaRelease,
        RoleBindingInput,
        RoleBindingResult,
        RunFinishedInput,
        RunFinishedResult,
        RunStep,
        Signal,
        SlotGranted,
        StatusQueryResult,
        StepKey,
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
    from workflows import controls, endings, options, progress
    from workflows.endings import Ending
    from workflows.options import LOCAL, OPTIONS, RETRY, Options, follow_heartbeat

M = TypeVar("M", bound=BaseModel)

SA_PIPELINE = SearchAttributeKey.for_keyword("DevopsPipeline")
SA_NAMESPACE = SearchAttributeKey.for_keyword("DevopsNamespace")
SA_PHASE = SearchAttributeKey.for_keyword("DevopsPhase")
SA_BRANCH = SearchAttributeKey.for_keyword("DevopsBranch")
SA_TRIGGER = SearchAttributeKey.for_keyword("DevopsTrigger")
SA_RUN = SearchAttributeKey.for_int("DevopsRun")

STOP_GRACE_SECONDS = 10.0
#: The change that made a run cheap (local activities, the follow activity proceeding gates, storing logs
#: and writing the status itself, a namespace verified a moment ago not provisioned again). Runs started
#: before it replay the earlier commands: :attr:`PipelineExecutionWorkflow._coarse` is False for them.
COARSE_RUN = "coarse-run"
#: The follow activity's first look writes the Building status (with what it sees of the build by then)
#: instead of a write of its own right before: one status write and one local activity fewer per run.
FOLLOW_WRITES_BUILDING = "follow-writes-building"
#: The prepare activity triggers the build too, once it has written the job: one local activity
#: fewer per run, and no look for an earlier build of a job it has just created.
PREPARE_TRIGGERS = "prepare-triggers"
#: The Pipeline's status, the terminal status and the history limit are one local activity (finish),
#: after the cleanup: two local activities fewer per run.
FINISH_IN_ONE = "finish-in-one"
#: COARSE_RUN and the three changes above in one patch, and no upsert of a search attribute that already
#: has its value (the bridge starts the workflow with them): core records a marker and a
#: ``TemporalChangeVersion`` upsert for each patch a run takes, so a run started after this records one
#: of each instead of four, and its first upsert carries only its phase. Runs started before it replay
#: the four patches as they recorded them.
LEAN_RUN = "lean-run"
#: LEAN_RUN, and the Provisioning status is written only when the namespace's bootstrap and RoleBinding
#: reconcile take longer than PROVISIONING_SHOWN_AFTER (a namespace that is right, or that another run
#: verifies at the same time, is verified in moments: nothing to show). Takes the place of LEAN_RUN's
#: marker, so a new run still records one patch.
QUIET_PROVISION = "quiet-provision"
#: How long a run provisions before its status says so.
PROVISIONING_SHOWN_AFTER = timedelta(seconds=5)
#: The wait for a data plane that does not answer: first, then doubling up to the last.
DATA_PLANE_RETRY_FIRST = 2.0
DATA_PLANE_RETRY_MAX = 60.0


@workflow.defn(name=EXECUTION_WORKFLOW)
class PipelineExecutionWorkflow:
    def __init__(self) -> None:
        self._s = ExecutionState()
        self._input: ExecutionWorkflowInput | None = None
        # Set by signals that changed something worth writing; it only wakes the waits, so it is not
        # part of the state a continued run takes along.
        self._woken = False
        # Decided once, first thing, per run (a continued run decides again: it has its own history).
        self._coarse = False
        # Search attributes waiting for the next status write (coarse runs upsert them together).
        self._attributes: list[SearchAttributeUpdate[Any]] = []
        self._lean = False
        self._quiet = False

    # --- entry point and the one finish path ---------------------------------------------------

    @workflow.run
    async def run(self, inp: ExecutionWorkflowInput) -> PipelineExecutionStatus:
        self._input = inp
        self._quiet = workflow.patched(QUIET_PROVISION)
        self._lean = self._quiet or workflow.patched(LEAN_RUN)
        self._coarse = self._lean or workflow.patched(COARSE_RUN)
        if inp.carried is not None:
            self._s = inp.carried
            # A run continues as new only while following the build.
            self._s.step = RunStep.FOLLOW
            workflow.logger.info("continuing (generation %d)", self._s.generation)
        # The CR's link to this workflow goes with its first status write (the bridge that started it
        # writes none): the first run's id, as the bridge knows it, through every continue-as-new.
        info = workflow.info()
        self._s.status.workflow = WorkflowRef.of(
            inp.ui_base_url, info.namespace, info.workflow_id, info.first_execution_run_id
        )
        try:
            ending = await self._phases()
        except (asyncio.CancelledError, ActivityError) as err:
            if not is_cancelled_exception(err):
                ending = endings.for_error(self._s.step, err)
            else:
                # Temporal's own cancellation (`temporal workflow cancel`, a deleted CR) reaches a wait
                # as asyncio.CancelledError and a running activity as an ActivityError caused by the
                # activity's cancellation. Either way: the same as the signal, and the workflow then
                # ends cancelled, as Temporal asked.
                controls.cancel(self._s, ControlInput(reason="cancelled through Temporal"))
                await self._settle(None)
                raise
        await self._settle(ending)
        return self._s.status

    async def _settle(self, ending: Ending | None) -> None:
        """Stop the build if the run was cancelled (``ending`` None), then the finish path, all of it
        even when Temporal cancels the workflow meanwhile: a cancel that interrupted the stop or the
        cleanup would leave a build running or a job behind. The work runs as its own task, which
        Temporal's cancellation of the workflow's main task does not reach."""

        async def settle() -> None:
            await self._finish(ending if ending is not None else await self._stop_build())

        task = asyncio.create_task(settle())
        interrupted = False
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.done():
                    raise
                interrupted = True
                workflow.logger.info("cancel requested while the run ends; ending it first")
        task.result()
        if interrupted and ending is None:
            # A cancelled run that Temporal also cancelled ends cancelled in Temporal too; a run whose
            # build had ended keeps its result.
            raise asyncio.CancelledError("cancelled through Temporal while the run was cancelled")

    async def _phases(self) -> Ending | None:
        """Run the phases in order (a continued run is past them); the ending of the build, or None
        when the run was cancelled (:meth:`_settle` stops the build)."""
        s = self._s
        if s.step != RunStep.FOLLOW:
            for step, phase in (
                (RunStep.LOAD, self._load),
                (RunStep.QUEUE, self._queue),
                (RunStep.PROVISION, self._provision),
                (RunStep.BUILD, self._start_build),
            ):
                s.step = step
                await phase()
                if s.cancel is not None:
                    return None
            s.step = RunStep.FOLLOW
        return await (self._follow_through() if self._coarse else self._follow())

    async def _finish(self, ending: Ending) -> None:
        """Settle everything (Pipeline status, cleanup, quota slot), then write the terminal status last:
        whoever sees the CR finished can rely on all of it being done. Nothing here raises: every step
        is housekeeping whose failure is reported in the status message."""
        s = self._s
        s.step = RunStep.FINISH
        now = workflow.now()
        if ending.failed is not None:
            s.status.set_condition(ending.failed, ConditionStatus.FALSE, ending.reason, ending.message, now)
        progress.close_steps(
            s.status, aborted=ending.phase in (ExecutionPhase.ABORTED, ExecutionPhase.DENIED)
        )
        succeeded = ConditionStatus.TRUE if ending.phase == ExecutionPhase.SUCCESS else ConditionStatus.FALSE
        s.status.set_condition(ConditionType.SUCCEEDED, succeeded, ending.reason, ending.message, now)
        if s.build is not None:
            s.status.set_condition(ConditionType.BUILT, succeeded, ending.reason, ending.message, now)
        s.status.finish(ending.phase, now, ending.message)
        ctx = s.context
        update: UpdatePipelineInput | None = None
        in_one = False
        if ctx is not None:
            update = UpdatePipelineInput(
                namespace=ctx.execution.namespace,
                pipeline=ctx.pipeline,
                execution=ctx.execution.name,
                run=ctx.run,
                state=ending.phase.value,
                started=s.status.started,
            )
            in_one = s.cr_exists and self._since(FINISH_IN_ONE)
            if not in_one:
                await self._best_effort(
                    Activity.UPDATE_PIPELINE, update, build_status.pipeline_status_step(ctx.pipeline)
                )
            if s.job is not None:
                await self._best_effort(
                    Activity.CLEANUP,
                    CleanupInput(target=self._target(), credential_ids=s.job.credential_ids),
                    f"clean up {s.job.job}",
                    in_data_plane=True,
                )
        await self._release()
        self._set_phase(ending.phase, s.status.message or ending.message)
        self._flush_attributes()  # also when no write follows (the CR is gone)
        if ctx is not None and ctx.config.notification is not None and ctx.config.notification.recipients:
            s.status.set_condition(
                ConditionType.NOTIFIED, ConditionStatus.UNKNOWN, Reason.NOTIFYING, "sent after the run", now
            )
        if in_one and update is not None and await self._finish_in_one(update):
            await workflow.wait_condition(workflow.all_handlers_finished)
            return
        if in_one and update is not None and ctx is not None:
            # The finish failed: its steps one by one, as before it existed.
            await self._best_effort(
                Activity.UPDATE_PIPELINE, update, build_status.pipeline_status_step(ctx.pipeline)
            )
        try:
            await self._write()
        except ActivityError as err:
            workflow.logger.warning("the terminal status was not written: %s", endings.error_text(err))
        await self._run_finished()
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _finish_in_one(self, update: UpdatePipelineInput) -> bool:
        """The Pipeline's status, the terminal status and (unless notifications are due: their activity
        does it) the history limit, in one local activity; False when it failed."""
        assert self._input is not None
        s, ctx = self._s, self._ctx()
        notification = ctx.config.notification
        notifying = notification is not None and bool(notification.recipients)
        self._flush_attributes()
        workflow.set_current_details(progress.markdown(s.status))
        try:
            res: FinishResult = await self._local(
                Activity.FINISH,
                FinishInput(
                    pipeline=update,
                    write=WriteStatusInput(execution=self._input.execution, status=s.status),
                    history=None if notifying else RunFinishedInput(context=ctx),
                ),
                FinishResult,
                OPTIONS[Activity.FINISH],
                summary=f"Pipeline status, status: {s.status.phase}"
                + ("" if notifying else ", execution history"),
            )
        except ActivityError as err:
            workflow.logger.warning("finish: %s; its steps one by one", endings.error_text(err))
            return False
        if res.pipeline_failed is not None:
            s.status.message = build_status.housekeeping_failed(
                s.status.message, build_status.pipeline_status_step(ctx.pipeline), res.pipeline_failed
            )
        s.last_written = s.status.model_dump_json()
        s.cr_exists = res.write.exists
        if res.history_failed is not None:
            workflow.logger.warning("execution history: %s", res.history_failed)
        if notifying:
            await self._run_finished()
        return True

    async def _run_finished(self) -> None:
        """After the terminal status: the notifications (exactly once) and the history limit. The phase
        and the quota slot are settled already; nothing here changes them."""
        s = self._s
        if s.context is None or not s.cr_exists:
            return
        opts = options.run_finished(timedelta(seconds=s.context.setting.notification.retry_timeout.seconds))
        notification = s.context.config.notification
        try:
            if self._coarse and (notification is None or not notification.recipients):
                # Only the history limit to apply: one list and a few deletes, a local activity.
                await self._local(
                    Activity.RUN_FINISHED,
                    RunFinishedInput(context=s.context),
                    RunFinishedResult,
                    opts,
                    summary="execution history",
                )
                return
            await workflow.execute_activity(
                Activity.RUN_FINISHED,
                RunFinishedInput(context=s.context),
                result_type=RunFinishedResult,
                start_to_close_timeout=opts.start_to_close,
                schedule_to_close_timeout=opts.schedule_to_close,
                heartbeat_timeout=opts.heartbeat,
                retry_policy=RETRY,
                summary="notifications and execution history",
            )
        except ActivityError as err:
            workflow.logger.warning("notifications and execution history: %s", endings.error_text(err))

    async def _stop_build(self) -> Ending:
        """Cancel: stop the build (if one runs), keep every log; the ending is Aborted."""
        s = self._s
        assert s.cancel is not None
        reason = s.cancel.reason or "cancelled"
        s.status.message = f"Cancelling: {reason}"
        if s.build is not None and s.job is not None:
            s.stop_requested = True
            try:
                await self._act(
                    Activity.JENKINS_STOP,
                    StopInput(target=self._target(), build=s.build, grace_seconds=STOP_GRACE_SECONDS),
                    StopResult,
                    summary=f"stop {s.build.job} #{s.build.number}",
                )
                snap = await self._act(
                    Activity.JENKINS_FOLLOW,
                    FollowInput(target=self._target(), build=s.build, known=None),
                    BuildSnapshot,
                    summary="final build state",
                )
                build_status.apply_snapshot(s.status, snap, s.context.config if s.context else None)
                await self._store_logs(snap, all_started=True)
            except ActivityError as err:
                workflow.logger.warning("stopping the build failed: %s", endings.error_text(err))
        return endings.cancelled(reason)

    # --- the phases ----------------------------------------------------------------------------

    async def _load(self) -> None:
        assert self._input is not None
        s, ref = self._s, self._input.execution
        s.status.started = workflow.now()
        self._set_phase(ExecutionPhase.WAITING, "Loading the pipeline configuration")
        ctx: ExecutionContext = await self._act(
            Activity.LOAD_EXECUTION,
            LoadExecutionInput(execution=ref),
            ExecutionContext,
            summary=f"load {ref.namespace}/{ref.name}",
        )
        s.context = ctx
        progress.init_stages(s.status, ctx.config, ctx.branch, ctx.event)
        now = workflow.now()
        stages = f"{len(ctx.config.stages)} stages" + (
            "; envFrom secrets withheld (pull request from a fork)" if ctx.secrets_withheld else ""
        )
        s.status.set_condition(
            ConditionType.INITIALIZED, ConditionStatus.TRUE, Reason.CONFIG_LOADED, stages, now
        )
        s.status.set_condition(
            ConditionType.SUCCEEDED, ConditionStatus.UNKNOWN, Reason.CONFIG_LOADED, "Running", now
        )
        attributes: list[SearchAttributeUpdate[Any]] = [
            SA_PIPELINE.value_set(ctx.pipeline),
            SA_NAMESPACE.value_set(ctx.execution.namespace),
            SA_BRANCH.value_set(ctx.branch),
            SA_TRIGGER.value_set(ctx.triggered_by),
            SA_RUN.value_set(ctx.run),
        ]
        if self._coarse:
            # Nothing to show yet that the next phase does not replace within moments: the CR's first
            # status write is that phase's (Queueing, Provisioning or Building).
            self._attributes += attributes
            return
        workflow.upsert_search_attributes(attributes)
        await self._write()

    async def _queue(self) -> None:
        """Wait for a slot of the project's executor quota (none to wait for without a quota)."""
        s, ctx = self._s, self._ctx()
        capacity = ctx.setting.effective_quota()
        if capacity <= 0:
            return
        self._set_phase(ExecutionPhase.QUEUEING, "Waiting for an executor slot")
        await self._write()
        await self._act(
            Activity.QUOTA_ACQUIRE,
            QuotaAcquireInput(
                project_namespace=ctx.execution.namespace,
                workflow_id=workflow.info().workflow_id,
                run=ctx.run,
                capacity=capacity,
                created=ctx.started,
            ),
            None,
            summary=f"queue run {ctx.run} (quota {capacity})",
        )
        s.quota_held = True
        while not (s.slot_granted or s.cancel):
            await workflow.wait_condition(lambda: s.slot_granted or s.cancel is not None or self._woken)
            self._woken = False
            if not s.slot_granted and s.ahead is not None:
                s.status.message = f"Waiting for an executor slot ({s.ahead} ahead)"
            await self._write()

    async def _provision(self) -> None:
        """The pipeline namespace (Jenkins, registry, object store) and the RoleBindings."""
        s, ctx = self._s, self._ctx()
        bootstrap = BootstrapInput.for_setting(ctx.execution.namespace, ctx.pipeline_namespace, ctx.setting)
        rolebindings = RoleBindingInput(
            project_namespace=ctx.execution.namespace,
            pipeline_namespace=ctx.pipeline_namespace,
            cluster_role=ctx.setting.role_binding_cluster_role(),
            project_label=ctx.setting.project_label,
            data_plane=ctx.setting.data_plane.kubeconfig_secret_ref,
        )
        if self._coarse:
            check: NamespaceCheckResult = await self._act(
                Activity.NAMESPACE_VERIFIED,
                NamespaceCheckInput(bootstrap=bootstrap, rolebindings=rolebindings),
                NamespaceCheckResult,
                summary=f"{ctx.pipeline_namespace} verified a moment ago?",
            )
            if check.verified:
                s.status.set_condition(
                    ConditionType.PROVISIONED,
                    ConditionStatus.TRUE,
                    Reason.NAMESPACE_READY,
                    f"{ctx.pipeline_namespace}: verified {check.age_seconds:.0f}s ago",
                    workflow.now(),
                )
                return
        self._set_phase(ExecutionPhase.PROVISIONING, "Provisioning the pipeline namespace")
        if not self._quiet:
            await self._write()
            await self._provision_steps(bootstrap, rolebindings)
            return
        steps = asyncio.ensure_future(self._provision_steps(bootstrap, rolebindings))
        try:
            await workflow.wait_condition(steps.done, timeout=PROVISIONING_SHOWN_AFTER)
        except TimeoutError:
            try:
                await self._write()
            except BaseException:
                steps.cancel()
                raise
        await steps

    async def _provision_steps(self, bootstrap: BootstrapInput, rolebindings: RoleBindingInput) -> None:
        s, ctx = self._s, self._ctx()
        boot: BootstrapResult | None = await self._in_data_plane(
            Activity.BOOTSTRAP_NAMESPACE,
            bootstrap,
            BootstrapResult,
            summary=f"bootstrap namespace {ctx.pipeline_namespace}",
        )
        if boot is None:
            return
        rb: RoleBindingResult | None = await self._in_data_plane(
            Activity.RECONCILE_ROLEBINDINGS,
            rolebindings,
            RoleBindingResult,
            summary=f"RoleBindings for {ctx.pipeline_namespace}/jenkins",
        )
        if rb is None:
            return
        s.status.set_condition(
            ConditionType.PROVISIONED,
            ConditionStatus.TRUE,
            Reason.NAMESPACE_READY,
            f"{boot.pipeline_namespace}: verified with another run of this worker"
            if boot.shared and rb.shared
            else f"{boot.pipeline_namespace}: {boot.writes} writes; "
            f"RoleBindings +{rb.created} ~{rb.updated} -{rb.deleted}",
            workflow.now(),
        )

    async def _start_build(self) -> None:
        """The Jenkins job (credentials, Jenkinsfile) and its build."""
        s, ctx = self._s, self._ctx()
        execution_id = progress.execution_id(ctx)
        in_one = self._since(PREPARE_TRIGGERS)
        s.job = await self._in_data_plane(
            Activity.JENKINS_PREPARE,
            JenkinsPrepareInput(context=ctx, trigger_execution_id=execution_id if in_one else None),
            JenkinsJob,
            summary="Jenkins credentials, job and build" if in_one else "Jenkins credentials and job",
        )
        if s.job is None:
            return
        build: BuildRef | None = s.job.build
        s.job.build = None  # the state keeps the build once, in s.build
        if build is None:
            if s.cancel is not None:  # no build for a run cancelled meanwhile (the job is cleaned up)
                return
            build = await self._act(
                Activity.JENKINS_TRIGGER,
                TriggerInput(target=self._target(), execution_id=execution_id),
                BuildRef,
                summary=f"trigger {s.job.job}",
            )
        s.build = build
        s.status.jenkins = JenkinsBuildRef(job=build.job, build=build.number)
        s.status.set_condition(
            ConditionType.BUILT,
            ConditionStatus.UNKNOWN,
            Reason.BUILD_STARTED,
            f"{build.job} #{build.number}",
            workflow.now(),
        )
        self._set_phase(ExecutionPhase.BUILDING, "Building")
        if self._since(FOLLOW_WRITES_BUILDING):
            # The follow activity starts next and writes this status as its first look finds the build,
            # moments later; the search attributes change now (the Temporal UI shows the run Building).
            self._flush_attributes()
            workflow.set_current_details(progress.markdown(s.status))
            return
        await self._write()

    async def _follow(self) -> Ending | None:
        """Follow the build to its end, storing logs and holding gates on the way; None when cancelled."""
        s, ctx = self._s, self._ctx()
        while True:
            if s.cancel is not None:
                return None
            if self._continue_as_new_due():
                await self._continue_as_new()
            snap = await self._next_snapshot(ctx.setting.poll_interval_seconds())
            if snap is None:  # cancelled while following
                return None
            s.known = snap
            build_status.apply_snapshot(s.status, snap, ctx.config)
            if not snap.building:
                await self._store_logs(snap, all_started=True)
                rejected, stopped = bool(s.rejected), s.stop_requested
                line = ""
                if endings.aborted_by_jenkins(snap, rejected=rejected, stop_requested=stopped):
                    line = await self._console_last_line()
                return endings.for_build(
                    s.status, snap, rejected=rejected, stop_requested=stopped, console_line=line
                )
            await self._store_logs(snap)
            if snap.pending_gates:
                # Rejected: the gate was aborted; following the build leads to its ABORTED end.
                await self._gate(snap.pending_gates[0])
            await self._write()

    async def _follow_through(self) -> Ending | None:
        """Follow the build with the activity that proceeds free gates, stores logs and writes the status
        itself: it returns only at the build's end or at a gate this workflow holds. None when cancelled."""
        s, ctx = self._s, self._ctx()
        while True:
            if s.cancel is not None:
                return None
            if self._continue_as_new_due():
                await self._continue_as_new()
            res = await self._next_result(ctx.setting.poll_interval_seconds())
            if res is None:  # cancelled, or a control changed what the activity may do: follow again
                continue
            s.known = snap = res.snapshot
            s.status.stages, s.status.message = res.status.stages, res.status.message
            s.stored_logs += [StepKey(log.stage, log.step) for log in res.stored]
            s.last_written, s.cr_exists = res.last_written, res.cr_exists
            if not snap.building:
                await self._store_logs(snap, all_started=True)  # nothing is left, unless a retry raced
                rejected, stopped = bool(s.rejected), s.stop_requested
                line = ""
                if endings.aborted_by_jenkins(snap, rejected=rejected, stop_requested=stopped):
                    line = await self._console_last_line()
                return endings.for_build(
                    s.status, snap, rejected=rejected, stop_requested=stopped, console_line=line
                )
            if snap.pending_gates:
                await self._gate(snap.pending_gates[0])
            await self._write()

    def _free_gates(self) -> list[int]:
        """The gates the follow activity may proceed by itself: none while paused, else every stage's
        that needs no approval (a pause that arrives meanwhile restarts the activity without them)."""
        s, ctx = self._s, self._ctx()
        if s.paused:
            return []
        return [
            i for i in range(len(s.status.stages)) if not progress.needs_approval(ctx.config, s.status, i)
        ]

    async def _next_result(self, poll: float) -> FollowResult | None:
        """The follow activity's result; None when a cancel or a control change interrupted it (the
        next call starts from the workflow's state, which has the change, and writes it at once)."""
        s = self._s
        assert s.build is not None and self._input is not None
        handle = workflow.start_activity(
            Activity.JENKINS_FOLLOW_THROUGH,
            FollowThroughInput(
                target=self._target(),
                build=s.build,
                execution=self._input.execution,
                status=s.status,
                last_written=s.last_written,
                cr_exists=s.cr_exists,
                stored_logs=s.stored_logs,
                proceed_gates=self._free_gates(),
                poll_interval_seconds=poll,
            ),
            result_type=FollowResult,
            start_to_close_timeout=OPTIONS[Activity.JENKINS_FOLLOW_THROUGH].start_to_close,
            heartbeat_timeout=follow_heartbeat(poll),
            retry_policy=RETRY,
            summary=f"follow {s.build.job} #{s.build.number}",
        )
        try:
            await workflow.wait_condition(lambda: handle.done() or s.cancel is not None or self._woken)
        except asyncio.CancelledError:
            # Temporal's cancel in the same workflow task as the build's end (the finish that follows
            # is local activities, so a cancel that comes meanwhile fails that task and lands here on
            # the retry): the build ended, and the run ends as it did, like one cancelled while finishing.
            if (
                handle.done()
                and not handle.cancelled()
                and handle.exception() is None
                and not handle.result().snapshot.building
            ):
                workflow.logger.info("cancelled through Temporal after the build ended; finishing the run")
                ended: FollowResult = handle.result()
                return ended
            raise
        if handle.done():
            done: FollowResult = handle.result()
            return done
        self._woken = False
        handle.cancel()
        try:
            # The activity's own cancellation arrives as an ActivityError; an asyncio.CancelledError
            # here is Temporal cancelling this workflow, and must go on up.
            res: FollowResult = await handle
        except ActivityError:
            return None
        return res  # it ended before the cancel reached it

    async def _next_snapshot(self, poll: float) -> BuildSnapshot | None:
        """Wait for the follow activity, writing control changes meanwhile; None when cancelled."""
        s = self._s
        assert s.build is not None
        handle = workflow.start_activity(
            Activity.JENKINS_FOLLOW,
            FollowInput(target=self._target(), build=s.build, known=s.known, poll_interval_seconds=poll),
            result_type=BuildSnapshot,
            start_to_close_timeout=OPTIONS[Activity.JENKINS_FOLLOW].start_to_close,
            heartbeat_timeout=follow_heartbeat(poll),
            retry_policy=RETRY,
            summary=f"follow {s.build.job} #{s.build.number}",
        )
        while not handle.done():
            await workflow.wait_condition(lambda: handle.done() or s.cancel is not None or self._woken)
            if s.cancel is not None and not handle.done():
                handle.cancel()
                # The activity's own cancellation arrives as an ActivityError; an asyncio.CancelledError
                # here is Temporal cancelling this workflow, and must go on up.
                with contextlib.suppress(ActivityError):
                    await handle
                return None
            if self._woken:
                self._woken = False
                await self._write()
        snap: BuildSnapshot = handle.result()
        return snap

    async def _gate(self, stage: int) -> None:
        """Hold the gate of ``stage`` while paused or waiting for approval, then proceed (or abort) it."""
        s, ctx, build = self._s, self._ctx(), self._s.build
        assert build is not None
        s.held_gate = stage
        try:
            await self._hold_while_paused(stage)
            if s.cancel is not None:
                return
            if progress.needs_approval(ctx.config, s.status, stage):
                s.awaiting_approval = s.status.pending_gate = stage
                s.status.message = f"Waiting for approval of stage '{self._stage_name(stage)}'"
                await self._write()
                await workflow.wait_condition(
                    lambda: stage in s.approved or stage in s.rejected or s.cancel is not None
                )
                s.awaiting_approval = s.status.pending_gate = None
                if s.cancel is not None:
                    return
                if stage in s.rejected:
                    await self._act(
                        Activity.JENKINS_GATE,
                        GateInput(target=self._target(), build=build, stage=stage, proceed=False),
                        None,
                        summary=f"reject stage {stage}",
                    )
                    return
                # Paused while waiting for the approval: the pause still holds the approved stage.
                await self._hold_while_paused(stage)
                if s.cancel is not None:
                    return
            await self._act(
                Activity.JENKINS_GATE,
                GateInput(target=self._target(), build=build, stage=stage, proceed=True),
                None,
                summary=f"start stage {stage} ({self._stage_name(stage)})",
            )
            self._set_phase(ExecutionPhase.BUILDING, f"Running stage '{self._stage_name(stage)}'")
        finally:
            s.held_gate = None

    async def _hold_while_paused(self, stage: int) -> None:
        s = self._s
        while s.paused and s.cancel is None:
            self._set_phase(ExecutionPhase.PAUSED, f"Paused before stage '{self._stage_name(stage)}'")
            await self._write()
            await workflow.wait_condition(lambda: not s.paused or s.cancel is not None)

    async def _store_logs(self, snap: BuildSnapshot, *, all_started: bool = False) -> None:
        """Store the complete log of every step that ended (or, at the end, that ever started)."""
        s = self._s
        assert s.build is not None
        for step in snap.steps:
            key = StepKey(step.stage, step.step)
            if key in s.stored_logs:
                continue
            ended = StageState(step.state).is_terminal and step.state != StageState.SKIPPED
            if not (ended or (all_started and step.node_id)):
                continue
            res: StoreStepLogResult = await self._act(
                Activity.STORE_STEP_LOG,
                StoreStepLogInput(
                    target=self._target(),
                    build=s.build,
                    stage=step.stage,
                    step=step.step,
                    node_id=step.node_id,
                ),
                StoreStepLogResult,
                summary=f"store log of stage {step.stage} step {step.step}",
            )
            s.stored_logs.append(key)
            build_status.set_log_object(s.status, step.stage, step.step, res.object_name, res.report)

    async def _console_last_line(self) -> str:
        """The console's last line, to say why Jenkins aborted the build ("" when it cannot be read)."""
        assert self._s.build is not None
        try:
            tail: ConsoleTail = await self._act(
                Activity.JENKINS_CONSOLE_TAIL,
                ConsoleTailInput(target=self._target(), build=self._s.build),
                ConsoleTail,
                summary="the console's last line",
            )
        except ActivityError as err:
            workflow.logger.warning("reading the console failed: %s", endings.error_text(err))
            return ""
        return tail.last_line

    # --- continue-as-new ---------------------------------------------------------------------------

    def _continue_as_new_due(self) -> bool:
        assert self._input is not None
        info = workflow.info()
        limit = self._input.history_limit
        return info.is_continue_as_new_suggested() or (
            limit > 0 and info.get_current_history_length() >= limit
        )

    async def _continue_as_new(self) -> None:
        """Hand the run over to a fresh history (many steps), with its whole state."""
        assert self._input is not None
        await workflow.wait_condition(workflow.all_handlers_finished)
        carried = self._s.model_copy(update={"generation": self._s.generation + 1})
        workflow.continue_as_new(self._input.model_copy(update={"carried": carried}))

    # --- housekeeping --------------------------------------------------------------------------------

    async def _best_effort(
        self, name: Activity, arg: BaseModel, summary: str, *, in_data_plane: bool = False
    ) -> None:
        """Housekeeping at the end: a failure is reported in the status message, and the run still ends
        (``in_data_plane``: after its data plane answers again, so no agent pod is left behind)."""
        try:
            if in_data_plane:
                await self._in_data_plane(name, arg, None, summary=summary, cancellable=False)
            else:
                await self._act(name, arg, None, summary=summary)
        except ActivityError as err:
            cause = endings.error_text(err)
            workflow.logger.warning("%s failed: %s", summary, cause)
            self._s.status.message = build_status.housekeeping_failed(self._s.status.message, summary, cause)

    async def _release(self) -> None:
        s = self._s
        if not s.quota_held or s.context is None:
            return
        s.quota_held = False
        try:
            await workflow.get_external_workflow_handle(
                quota_workflow_id(s.context.execution.namespace)
            ).signal(Signal.QUOTA_RELEASE, QuotaRelease(workflow_id=workflow.info().workflow_id))
        except FailureError as err:  # the quota workflow ended: nothing to give back
            workflow.logger.info("quota release not delivered: %s", err)

    async def _write(self) -> None:
        """Write the status into the CR when it changed (the activity retries 409s with a fresh read)."""
        assert self._input is not None
        s = self._s
        body = s.status.model_dump_json()
        if body == s.last_written or not s.cr_exists:
            return
        self._flush_attributes()
        workflow.set_current_details(progress.markdown(s.status))
        res: WriteStatusResult = await self._act(
            Activity.WRITE_STATUS,
            WriteStatusInput(execution=self._input.execution, status=s.status),
            WriteStatusResult,
            summary=f"status: {s.status.phase}",
        )
        s.last_written = body
        s.cr_exists = res.exists

    async def _in_data_plane(
        self,
        name: Activity,
        arg: BaseModel,
        result_type: type[M] | None,
        *,
        summary: str,
        cancellable: bool = True,
    ) -> Any:
        """An activity that works in the project's data plane, called again while that cluster does not
        answer: meanwhile the CR says what the run waits for (the backoff doubles from 2 s to 60 s).
        None when the run is cancelled during the wait (``cancellable``: not while the run finishes)."""
        s = self._s
        delay = DATA_PLANE_RETRY_FIRST
        while True:
            try:
                return await self._act(name, arg, result_type, summary=summary)
            except ActivityError as err:
                if not endings.waits_for_data_plane(err):
                    raise
                message = build_status.waiting_for_data_plane(endings.error_text(err))
            before = s.status.message
            s.status.message = message
            await self._write()
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(
                    lambda: cancellable and s.cancel is not None, timeout=timedelta(seconds=delay)
                )
            s.status.message = before
            if cancellable and s.cancel is not None:
                return None
            delay = min(delay * 2, DATA_PLANE_RETRY_MAX)

    async def _act(self, name: Activity, arg: BaseModel, result_type: type[M] | None, *, summary: str) -> Any:
        opts = OPTIONS[name]
        if self._coarse and name in LOCAL:
            return await self._local(name, arg, result_type, opts, summary=summary)
        return await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=opts.start_to_close,
            schedule_to_close_timeout=opts.schedule_to_close,
            heartbeat_timeout=opts.heartbeat,
            retry_policy=RETRY,
            summary=summary,
        )

    async def _local(
        self, name: Activity, arg: BaseModel, result_type: type[M] | None, opts: Options, *, summary: str
    ) -> Any:
        """A local activity, failing as an activity does: its error arrives bare (an ApplicationError, a
        timeout, a cancel), and every handler here expects an ActivityError caused by it."""
        try:
            return await workflow.execute_local_activity(
                name,
                arg,
                result_type=result_type,
                start_to_close_timeout=opts.start_to_close,
                schedule_to_close_timeout=opts.schedule_to_close,
                retry_policy=RETRY,
                summary=summary,
            )
        except ActivityError:
            raise
        except FailureError as err:
            raise ActivityError(
                f"local activity {name} failed",
                scheduled_event_id=0,
                started_event_id=0,
                identity="",
                activity_type=name.value,
                activity_id="",
                retry_state=None,
            ) from err

    # --- helpers ---------------------------------------------------------------------------------

    def _ctx(self) -> ExecutionContext:
        assert self._s.context is not None
        return self._s.context

    def _target(self) -> JenkinsTarget:
        assert self._s.job is not None
        return JenkinsTarget(context=self._ctx(), job=self._s.job.job)

    def _stage_name(self, stage: int | None) -> str:
        stages = self._s.status.stages
        if stage is None or stage >= len(stages):
            return f"#{stage}"
        return stages[stage].name

    def _set_phase(self, phase: ExecutionPhase, message: str) -> None:
        s = self._s
        s.status.phase = phase
        s.status.message = message
        if not self._coarse:
            self._flush_attributes()

    def _since(self, patch: str) -> bool:
        """Whether this run takes a change made after COARSE_RUN (all of them, for a lean run)."""
        return self._coarse and (self._lean or workflow.patched(patch))

    def _flush_attributes(self) -> None:
        """Upsert the phase (when it changed) and any attributes waiting, in one command: coarse runs call
        this before each status write, so the Temporal UI's list and the CR change together."""
        s = self._s
        attributes = self._attributes
        phase = s.status.phase
        if phase is not None and s.phase_attribute != phase:
            s.phase_attribute = str(phase)
            attributes = [*attributes, SA_PHASE.value_set(str(phase))]
        if self._lean:
            current = workflow.info().typed_search_attributes
            attributes = [a for a in attributes if current.get(a.key) != a.value]
        if attributes:
            workflow.upsert_search_attributes(attributes)
        self._attributes = []

    # --- signals, updates, queries ---------------------------------------------------------------

    @workflow.signal(name=Signal.PAUSE)
    def pause(self, inp: ControlInput | None = None) -> None:
        self._woken |= controls.pause(self._s)

    @workflow.signal(name=Signal.RESUME)
    def resume(self, inp: ControlInput | None = None) -> None:
        self._woken |= controls.resume(self._s)

    @workflow.signal(name=Signal.CANCEL)
    def cancel(self, inp: ControlInput | None = None) -> None:
        self._woken |= controls.cancel(self._s, inp)

    @workflow.signal(name=Signal.APPROVE)
    def approve(self, inp: GateDecisionInput | None = None) -> None:
        stage = controls.signal_stage(self._s, inp)
        if stage is not None:
            controls.decide(self._s, stage, approve=True, inp=inp)

    @workflow.signal(name=Signal.REJECT)
    def reject(self, inp: GateDecisionInput | None = None) -> None:
        stage = controls.signal_stage(self._s, inp)
        if stage is not None:
            controls.decide(self._s, stage, approve=False, inp=inp)

    @workflow.update(name=Update.APPROVE)
    def approve_stage(self, inp: GateDecisionInput | None = None) -> int:
        stage = self._decision_stage(inp)
        controls.decide(self._s, stage, approve=True, inp=inp)
        return stage

    @approve_stage.validator
    def _validate_approve(self, inp: GateDecisionInput | None = None) -> None:
        self._decision_stage(inp)

    @workflow.update(name=Update.REJECT)
    def reject_stage(self, inp: GateDecisionInput | None = None) -> int:
        stage = self._decision_stage(inp)
        controls.decide(self._s, stage, approve=False, inp=inp)
        return stage

    @reject_stage.validator
    def _validate_reject(self, inp: GateDecisionInput | None = None) -> None:
        self._decision_stage(inp)

    def _decision_stage(self, inp: GateDecisionInput | None) -> int:
        try:
            return controls.waiting_stage(self._s, inp, self._stage_name(self._s.awaiting_approval))
        except controls.NotWaitingForApproval as err:
            raise ApplicationError(str(err), type="NotWaitingForApproval") from err

    @workflow.signal(name=Signal.SLOT_GRANTED)
    def slot_granted(self, inp: SlotGranted | None = None) -> None:
        self._s.slot_granted = True
        self._woken = True

    @workflow.signal(name=Signal.QUEUE_POSITION)
    def queue_position(self, inp: QueuePosition) -> None:
        self._s.ahead = inp.ahead
        self._woken = True

    @workflow.query(name=Query.CONTROLS)
    def controls(self) -> ControlsQueryResult:
        return ControlsQueryResult(paused=self._s.paused, cancel_requested=self._s.cancel is not None)

    @workflow.query(name=Query.STATUS)
    def status(self) -> StatusQueryResult:
        s = self._s
        return StatusQueryResult(
            phase=str(s.status.phase or ""),
            paused=s.paused,
            cancel_requested=s.cancel is not None,
            pending_gate=s.held_gate,
            waiting_for_approval=s.awaiting_approval is not None,
            status=s.status,
        )


__all__ = ["PipelineExecutionWorkflow"]
