"""After a run's terminal status is written: its notifications, exactly once, and the history limit.

The one activity the workflow calls after the end (its phase and quota slot are settled before):

1. **Decide once.** Which recipients are told (:mod:`activities.notify.decide`, ``Changed`` against the
   previous finished run) is written into ``status.notifications`` before anything is sent, so a retry
   (or the history limit deleting the previous run) cannot change the decision.
2. **Trim the history** of the pipeline (:mod:`activities.history`).
3. **Deliver**, recipient by recipient: ``Sending`` is recorded before the message leaves and the
   outcome after (:mod:`activities.notify.delivery` states the guarantee). A notifier that fails
   transiently is retried with backoff until ``notification.retryTimeout`` after the run ended, then
   recorded ``Failed``. The ``Notified`` condition and an Event sum it up.

Nothing here changes the run's phase; the activity heartbeats, so a killed worker's attempt resumes on
another worker from the records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from temporalio import activity

from activities.errors import (
    DevopsError,
    KubeConflictError,
    KubeTransientError,
    NotifierTransientError,
    to_application_error,
)
from activities.events import EventRecorder, RunEvent
from activities.history import prune_history
from activities.kube import Kube
from activities.notify import decide, delivery
from activities.notify.channels import Channels, Content
from activities.notify.message import cloud_event, message_text, run_variables, subject
from crds.execution import (
    NotificationRecord,
    PipelineExecution,
    PipelineExecutionStatus,
    RunSummary,
    pipeline_selector,
)
from crds.messages import Activity, ExecutionContext, RunFinishedInput, RunFinishedResult
from crds.meta import API_VERSION
from crds.pipeline import Pipeline
from crds.reasons import ConditionStatus, ConditionType, EventReason, ExecutionPhase, NotificationState

logger = logging.getLogger(__name__)

CAS_ATTEMPTS = 8
SAVE_ATTEMPTS = 5
HEARTBEAT_SECONDS = 3.0


async def _heartbeating(work: Awaitable[None]) -> None:
    """Await ``work`` while heartbeating (a slow notifier must not look like a dead worker)."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_SECONDS)
        if done:
            return task.result()
        activity.heartbeat({"sending": True})


class RunFinishedActivities:
    """Holds the Kubernetes client, the notification channels, the Event recorder and a clock."""

    def __init__(
        self,
        kube: Kube,
        *,
        channels: Channels | None = None,
        events: EventRecorder | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.kube = kube
        self.channels = channels or Channels(kube)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.events = events or EventRecorder(kube, clock=self.clock)

    @activity.defn(name=Activity.RUN_FINISHED)
    async def run_finished(self, inp: RunFinishedInput) -> RunFinishedResult:
        try:
            return await self.run(inp)
        except DevopsError as err:
            raise to_application_error(err) from err

    async def run(self, inp: RunFinishedInput, pipeline: Pipeline | None = None) -> RunFinishedResult:
        """The notifications and the history limit of one finished run; raises DevopsError. ``pipeline``:
        the run's Pipeline as the caller read it a moment ago (its spec holds the limit), else read here."""
        ctx = inp.context
        ref = ctx.execution
        notifying = ctx.config.notification is not None and bool(ctx.config.notification.recipients)
        pe: PipelineExecution | None = None
        if notifying:
            pe = await asyncio.to_thread(self._read, ctx)
            if pe is None or pe.status is None or not pe.is_finished:
                logger.info("%s/%s is gone or not finished: nothing to notify", ref.namespace, ref.name)
                return RunFinishedResult()
        # The pipeline's runs only (a namespace may hold thousands of other runs), as summaries.
        executions = await asyncio.to_thread(self._runs, ctx)
        records = await asyncio.to_thread(self._decide, ctx, pe, executions) if pe is not None else None
        result = RunFinishedResult()
        if pipeline is None:
            pipeline = await asyncio.to_thread(self.kube.find, Pipeline, ref.namespace, ctx.pipeline)
        if pipeline is not None:
            limit, ns = pipeline.spec.execution_history_limit, ref.namespace
            result.deleted_executions = await asyncio.to_thread(
                lambda: prune_history(self.kube, ns, ctx.pipeline, limit, executions, keep=ref.name)
            )
        if records is not None and pe is not None:
            records = await self._deliver(ctx, pe, records)
            result.sent = sum(r.state == NotificationState.SENT for r in records)
            result.failed = sum(r.state == NotificationState.FAILED for r in records)
            result.unknown = sum(r.state == NotificationState.UNKNOWN for r in records)
        return result

    # -- reading and recording -------------------------------------------------------------------

    def _runs(self, ctx: ExecutionContext) -> list[RunSummary]:
        items = self.kube.list_objects(
            API_VERSION,
            "PipelineExecution",
            namespace=ctx.execution.namespace,
            label_selector=pipeline_selector(ctx.pipeline),
        )
        return [r for r in map(RunSummary.of, items) if r is not None]

    def _read(self, ctx: ExecutionContext) -> PipelineExecution | None:
        ref = ctx.execution
        pe = self.kube.find(PipelineExecution, ref.namespace, ref.name)
        if pe is None or (ref.uid and pe.metadata.uid != ref.uid):
            return None
        return pe

    def _decide(
        self, ctx: ExecutionContext, pe: PipelineExecution, executions: list[RunSummary]
    ) -> list[NotificationRecord] | None:
        """The records to deliver: those already decided (resumed), or a new decision, recorded first."""
        st = pe.status
        assert st is not None and st.phase is not None
        phase = ExecutionPhase(st.phase)
        notification = ctx.config.notification
        if notification is None or not notification.recipients:
            return None
        cond = st.condition(ConditionType.NOTIFIED)
        if st.notifications or (cond is not None and cond.status != ConditionStatus.UNKNOWN):
            resumed = delivery.resume(st.notifications)
            if resumed != st.notifications:
                self._save(ctx, resumed)
            return resumed
        previous = decide.previous_finished_phase(
            (r for r in executions if r.pipeline == ctx.pipeline), ctx.run
        )
        chosen = decide.recipients_to_notify(notification, phase, previous)
        records = delivery.plan(pe.metadata.uid or ctx.execution.uid, chosen, ctx.setting.notifiers)
        logger.info(
            "%s/%s ended %s (previous %s): notifying %d recipients",
            pe.namespace, pe.name, st.phase, previous, len(records),
        )  # fmt: skip
        self._save(ctx, records)
        return records

    def _save(self, ctx: ExecutionContext, records: list[NotificationRecord]) -> None:
        """Write the records and the Notified condition they add up to (CAS; transient faults retried)."""
        ref = ctx.execution
        status, reason, message = delivery.summary(records)
        for attempt in range(SAVE_ATTEMPTS * CAS_ATTEMPTS):
            try:
                pe = self._read(ctx)
                if pe is None:
                    return
                st = (pe.status or PipelineExecutionStatus()).model_copy(deep=True)
                st.set_condition(ConditionType.NOTIFIED, status, reason, message, self.clock())
                patch = {
                    "notifications": [r.to_dict() for r in records],
                    "conditions": [c.to_dict() for c in st.conditions],
                }
                live = pe.status.to_dict() if pe.status else {}
                if all(live.get(k) == v for k, v in patch.items()):
                    return
                self.kube.patch_status(
                    PipelineExecution,
                    ref.namespace,
                    ref.name,
                    patch,
                    resource_version=pe.metadata.resource_version,
                )
                return
            except KubeConflictError:
                continue
            except KubeTransientError as err:
                if attempt >= SAVE_ATTEMPTS:
                    raise
                logger.warning(
                    "recording notifications of %s/%s: %s (retrying)", ref.namespace, ref.name, err
                )
                activity.heartbeat({"saving": attempt})
                time.sleep(1.0)
        raise KubeConflictError(f"notifications of {ref.namespace}/{ref.name}: still conflicting")

    # -- delivery --------------------------------------------------------------------------------

    async def _deliver(
        self, ctx: ExecutionContext, pe: PipelineExecution, records: list[NotificationRecord]
    ) -> list[NotificationRecord]:
        st = pe.status
        assert st is not None and st.phase is not None
        notification = ctx.config.notification
        template = notification.message if notification else None
        variables = run_variables(ctx, pe)
        text = message_text(template, variables)
        title = subject(variables)
        ok = st.phase == ExecutionPhase.SUCCESS
        retry_for = timedelta(seconds=ctx.setting.notification.retry_timeout.seconds)
        deadline = (st.ended or self.clock()) + retry_for
        records = [r.model_copy() for r in records]
        if all(NotificationState(r.state).is_settled for r in records):
            return records  # settled by an earlier attempt (its Event was recorded then)
        while True:
            pending = [r for r in records if not NotificationState(r.state).is_settled]
            if not pending:
                break
            for rec in pending:
                now = self.clock()
                if delivery.give_up(rec, now, deadline):
                    rec.state = NotificationState.FAILED
                    rec.message = (
                        f"gave up after {rec.attempts} attempts in {ctx.setting.notification.retry_timeout}: "
                        f"{rec.message or ''}"
                    )[:1024]
                    await asyncio.to_thread(self._save, ctx, records)
                    continue
                if not delivery.due(rec, now):
                    continue
                notifier = ctx.setting.notifier(rec.notifier)
                assert notifier is not None  # plan() failed recipients without a notifier
                rec.state, rec.attempts, rec.last_attempt = NotificationState.SENDING, rec.attempts + 1, now
                await asyncio.to_thread(self._save, ctx, records)  # the intent, before the message leaves
                content = Content(
                    subject=title,
                    text=text,
                    ok=ok,
                    cloud_event=cloud_event(
                        pe, variables, event_id=rec.id, recipient=rec.recipient, text=text, now=now
                    ),
                )
                try:
                    await _heartbeating(
                        asyncio.to_thread(
                            self.channels.send,
                            notifier,
                            ctx.execution.namespace,
                            rec.recipient,
                            content,
                            rec.id,
                        )
                    )
                    rec.state, rec.sent, rec.message = NotificationState.SENT, self.clock(), None
                except NotifierTransientError as err:
                    rec.state, rec.message = NotificationState.RETRYING, err.message[:1024]
                except DevopsError as err:
                    rec.state, rec.message = NotificationState.FAILED, err.message[:1024]
                logger.info(
                    "notification %s:%s of %s/%s: %s (attempt %d)",
                    rec.notifier, rec.recipient, pe.namespace, pe.name, rec.state, rec.attempts,
                )  # fmt: skip
                await asyncio.to_thread(self._save, ctx, records)
            wake = delivery.next_due(records)
            if wake is not None:
                await self._sleep_until(min(wake, deadline), records)
        await asyncio.to_thread(self._record_event, pe, records)
        return records

    async def _sleep_until(self, when: datetime, records: list[NotificationRecord]) -> None:
        while True:
            left = (when - self.clock()).total_seconds()
            if left <= 0:
                return
            activity.heartbeat({"retrying": sum(r.state == NotificationState.RETRYING for r in records)})
            await asyncio.sleep(min(left, HEARTBEAT_SECONDS))

    def _record_event(self, pe: PipelineExecution, records: list[NotificationRecord]) -> None:
        status, _reason, message = delivery.summary(records)
        if status == ConditionStatus.TRUE:
            self.events.record(pe, [RunEvent(EventReason.NOTIFIED, message.capitalize())])
        else:
            self.events.record(pe, [RunEvent(EventReason.NOTIFICATION_FAILED, message, warning=True)])


__all__ = ["RunFinishedActivities"]
