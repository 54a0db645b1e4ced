"""One Temporal Schedule per cron / pollScm trigger, as the Pipelines say (create, update, pause, delete).

A self-contained loop (``run()`` / ``stop()``), started next to the bridge, so it can be gated to one
leader later. Every ``interval`` seconds it lists the Pipelines and the Schedules it owns (ids
``devops-cron/<ns>/<pipeline>``, ``devops-poll/<ns>/<pipeline>``):

- a trigger without its Schedule -> created (a note naming the Pipeline shows in the Temporal UI);
- a Schedule whose fingerprint (kept in its action's memo) differs from the trigger -> updated; pausing
  is part of it (``cron.paused``);
- a Schedule whose Pipeline or trigger is gone -> deleted.

A Pipeline annotated ``devops.cubepaas.io/task-queue: <queue>`` is reconciled only by the workers of
that task queue (as the bridge does with executions); one without it by every worker that watches its
namespace, so all workers of a cluster should share one task queue. Schedules of namespaces this worker
does not watch, and of Pipelines pinned to another queue, are left alone.

An unchanged Pipeline costs reads only (the fingerprints seen are cached; after a restart each Schedule
is described once). A trigger Temporal refuses (an invalid cron expression) is reported in the Pipeline's
``status.triggersMessage``, written only when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from temporalio.client import Client, ScheduleAlreadyRunningError, ScheduleUpdate, ScheduleUpdateInput
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import DevopsError, KubeNotFoundError
from activities.kube import Kube
from crds.pipeline import Pipeline
from worker.bridge import TASK_QUEUE_ANNOTATION
from worker.settings import WorkerSettings
from worker.triggers.specs import FINGERPRINT_MEMO, DesiredSchedule, desired_schedules, owned, pipeline_of

logger = logging.getLogger("worker.triggers")

RESYNC_INTERVAL = 5.0


@dataclass
class ReconcileCounts:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0

    @property
    def writes(self) -> int:
        return self.created + self.updated + self.deleted


class ScheduleReconciler:
    def __init__(
        self, kube: Kube, client: Client, settings: WorkerSettings, interval: float = RESYNC_INTERVAL
    ) -> None:
        self.kube = kube
        self.client = client
        self.settings = settings
        self.interval = interval
        self.ready = False
        self._stop = asyncio.Event()
        self._applied: dict[str, str] = {}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        logger.info("schedule reconciler running (every %.0fs)", self.interval)
        while not self._stop.is_set():
            try:
                counts = await self.reconcile_once()
                self.ready = True
                if counts.writes or counts.failed:
                    logger.info("schedules: %s", counts)
            except (DevopsError, RPCError) as err:
                logger.warning("schedule reconcile failed: %s; retrying", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    async def _pipelines(self) -> list[Pipeline]:
        namespaces: list[str | None] = [*self.settings.watch_namespaces] or [None]
        out: list[Pipeline] = []
        for ns in namespaces:
            out += await asyncio.to_thread(self.kube.list_resources, Pipeline, ns)
        return out

    async def reconcile_once(self) -> ReconcileCounts:
        counts = ReconcileCounts()
        pipelines = await self._pipelines()
        mine = {(p.namespace, p.name) for p in pipelines if self._manages(p)}
        others = {(p.namespace, p.name) for p in pipelines} - mine
        desired: dict[str, tuple[DesiredSchedule, Pipeline]] = {}
        for pipeline in pipelines:
            if (
                pipeline.namespace,
                pipeline.name,
            ) not in mine or pipeline.metadata.deletion_timestamp is not None:
                continue
            for d in desired_schedules(pipeline, self.settings.task_queue):
                desired[d.id] = (d, pipeline)
        existing = {s.id async for s in await self.client.list_schedules() if owned(s.id)}
        for sid, (d, pipeline) in desired.items():
            try:
                outcome = await self._ensure(d, known=sid in existing)
                message = None
            except RPCError as err:
                if err.status not in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.FAILED_PRECONDITION):
                    raise
                outcome, message = "failed", f"{sid}: Temporal refused the schedule: {err.message}"
                counts.failed += 1
            if outcome != "failed":
                setattr(counts, outcome, getattr(counts, outcome) + 1)
            await self._report(pipeline, message)
        for sid in existing | set(self._applied):
            owner = pipeline_of(sid)
            if sid in desired or owner is None or owner in others or not self._watches(owner[0]):
                continue
            with contextlib.suppress(RPCError):
                await self.client.get_schedule_handle(sid).delete()
                counts.deleted += 1
                logger.info("deleted schedule %s (its pipeline or trigger is gone)", sid)
            self._applied.pop(sid, None)
        return counts

    def _manages(self, pipeline: Pipeline) -> bool:
        queue = pipeline.metadata.annotations.get(TASK_QUEUE_ANNOTATION)
        return not queue or queue == self.settings.task_queue

    def _watches(self, namespace: str) -> bool:
        return not self.settings.watch_namespaces or namespace in self.settings.watch_namespaces

    async def _ensure(self, d: DesiredSchedule, *, known: bool) -> str:
        if self._applied.get(d.id) == d.fingerprint:
            return "unchanged"
        handle = self.client.get_schedule_handle(d.id)
        if not known:
            try:
                await self.client.create_schedule(d.id, d.schedule)
                self._applied[d.id] = d.fingerprint
                logger.info("created schedule %s", d.id)
                return "created"
            except ScheduleAlreadyRunningError:
                pass
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            await self.client.create_schedule(d.id, d.schedule)
            self._applied[d.id] = d.fingerprint
            return "created"
        if self._fingerprint_of(description.schedule) == d.fingerprint:
            self._applied[d.id] = d.fingerprint
            return "unchanged"

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=d.schedule)

        await handle.update(replace)
        self._applied[d.id] = d.fingerprint
        logger.info("updated schedule %s", d.id)
        return "updated"

    def _fingerprint_of(self, schedule: object) -> str:
        action = getattr(schedule, "action", None)
        memo = getattr(action, "memo", None) or {}
        raw = memo.get(FINGERPRINT_MEMO)
        if raw is None:
            return ""
        if isinstance(raw, str):
            return raw
        try:
            value = self.client.data_converter.payload_converter.from_payload(raw, str)
        except Exception:
            return ""
        return value if isinstance(value, str) else ""

    async def _report(self, pipeline: Pipeline, message: str | None) -> None:
        current = pipeline.status.triggers_message if pipeline.status else None
        if current == message:
            return
        with contextlib.suppress(KubeNotFoundError):
            await asyncio.to_thread(
                self.kube.patch_status,
                Pipeline,
                pipeline.namespace,
                pipeline.name,
                {"triggersMessage": message},
            )


__all__ = ["RESYNC_INTERVAL", "ReconcileCounts", "ScheduleReconciler"]
