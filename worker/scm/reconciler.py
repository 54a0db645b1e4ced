"""The source-code reconciler: one Temporal Schedule per SourceCodeCredential, one webhook per Pipeline.

A loop like the Schedules reconciler (:mod:`worker.triggers.reconciler`), run next to it (on the leader
when there is leader election). Every ``interval`` seconds it lists the credentials, Pipelines and
SourceCodeRepositories of the namespaces it watches, and:

- gives each credential its Schedule ``devops-scm/<ns>/<credential>`` (every
  ``CUBEPAAS_SCM_SYNC_INTERVAL``), which verifies the token and mirrors the repositories
  (:mod:`workflows.scm_sync`); a credential whose Secret or spec changed since its last verification
  (``status.observedSecretVersion``/``observedGeneration``) has its Schedule triggered at once;
  Schedules of deleted credentials are deleted (their repositories go with them: owner references);
- keeps each linked Pipeline's webhook registered (:class:`~worker.scm.hooks.HookKeeper`).

The task-queue annotation pins credentials and Pipelines to the workers of one queue, as elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, TypeVar

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import DevopsError, KubeNotFoundError
from activities.kube import Kube
from crds.messages import SCM_SYNC_WORKFLOW, ScmSyncInput
from crds.meta import CustomResource
from crds.pipeline import Pipeline
from crds.sourcecode import SourceCodeCredential, SourceCodeRepository
from worker.bridge import TASK_QUEUE_ANNOTATION
from worker.scm.hooks import HookKeeper
from worker.settings import WorkerSettings
from worker.triggers.specs import FINGERPRINT_MEMO

logger = logging.getLogger("worker.scm")

CR = TypeVar("CR", bound=CustomResource)

ID_PREFIX: Final = "devops-scm/"
RESYNC_INTERVAL: Final = 5.0
RETRIGGER_AFTER: Final = 60.0
"""A change whose sync has not shown up in the status after this long is triggered again."""


def schedule_id(namespace: str, credential: str) -> str:
    return f"{ID_PREFIX}{namespace}/{credential}"


def credential_of(sid: str) -> tuple[str, str] | None:
    if not sid.startswith(ID_PREFIX):
        return None
    ns, _, name = sid[len(ID_PREFIX) :].partition("/")
    return (ns, name) if ns and name else None


def sync_schedule(credential: SourceCodeCredential, task_queue: str, every: float) -> tuple[Schedule, str]:
    """The credential's Schedule and its fingerprint (kept in the action's memo)."""
    fingerprint = hashlib.sha256(f"{credential.metadata.uid}\0{task_queue}\0{every}".encode()).hexdigest()[
        :16
    ]
    sid = schedule_id(credential.namespace, credential.name)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            SCM_SYNC_WORKFLOW,
            ScmSyncInput(namespace=credential.namespace, credential=credential.name),
            id=f"{sid}-sync",
            task_queue=task_queue,
            execution_timeout=timedelta(minutes=30),
            memo={FINGERPRINT_MEMO: fingerprint},
            static_summary=f"verify {credential.namespace}/{credential.name} and list its repositories",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=every))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    return schedule, fingerprint


@dataclass
class ScmCounts:
    schedules_created: int = 0
    schedules_updated: int = 0
    schedules_deleted: int = 0
    triggered: int = 0
    hooks: dict[str, int] = field(default_factory=dict)
    failed: int = 0

    @property
    def eventful(self) -> bool:
        quiet = {"unchanged", "unlinked", "waiting", "deleting"}
        return bool(
            self.schedules_created
            or self.schedules_updated
            or self.schedules_deleted
            or self.triggered
            or self.failed
            or any(k not in quiet for k in self.hooks)
        )


class SourceCodeReconciler:
    def __init__(
        self, kube: Kube, client: Client, settings: WorkerSettings, interval: float = RESYNC_INTERVAL
    ) -> None:
        self.kube = kube
        self.client = client
        self.settings = settings
        self.interval = interval
        self.hooks = HookKeeper(kube, settings.webhook_url)
        self.ready = False
        self._stop = asyncio.Event()
        self._applied: dict[str, str] = {}
        self._triggered: dict[str, tuple[tuple[int | None, str], float]] = {}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        logger.info(
            "source-code reconciler running (every %.0fs; credentials synced every %.0fs)",
            self.interval,
            self.settings.scm_sync_interval,
        )
        while not self._stop.is_set():
            try:
                counts = await self.reconcile_once()
                self.ready = True
                if counts.eventful:
                    logger.info("source code: %s", counts)
            except (DevopsError, RPCError) as err:
                logger.warning("source-code reconcile failed: %s; retrying", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    async def reconcile_once(self) -> ScmCounts:
        counts = ScmCounts()
        credentials = [c for c in await self._list(SourceCodeCredential) if self._manages(c)]
        await self._schedules(credentials, counts)
        pipelines = [p for p in await self._list(Pipeline) if self._manages(p)]
        repositories = await self._list(SourceCodeRepository)
        by_namespace: dict[str, list[SourceCodeRepository]] = {}
        for repo in repositories:
            by_namespace.setdefault(repo.namespace, []).append(repo)
        for pipeline in pipelines:
            try:
                outcome = await asyncio.to_thread(
                    self.hooks.reconcile, pipeline, by_namespace.get(pipeline.namespace, [])
                )
            except DevopsError as err:
                outcome = "failed"
                counts.failed += 1
                logger.warning("webhook of %s/%s: %s", pipeline.namespace, pipeline.name, err)
            counts.hooks[outcome] = counts.hooks.get(outcome, 0) + 1
        self.hooks.forget({p.metadata.uid or p.name for p in pipelines})
        return counts

    async def _list(self, kind: type[CR]) -> list[CR]:
        namespaces: list[str | None] = [*self.settings.watch_namespaces] or [None]
        out: list[CR] = []
        for ns in namespaces:
            out += await asyncio.to_thread(self.kube.list_resources, kind, ns)
        return out

    def _manages(self, obj: CustomResource) -> bool:
        queue = obj.metadata.annotations.get(TASK_QUEUE_ANNOTATION)
        return not queue or queue == self.settings.task_queue

    def _watches(self, namespace: str) -> bool:
        return not self.settings.watch_namespaces or namespace in self.settings.watch_namespaces

    # -- credentials' Schedules ---------------------------------------------------------------------

    async def _schedules(self, credentials: list[SourceCodeCredential], counts: ScmCounts) -> None:
        existing = {s.id async for s in await self.client.list_schedules() if s.id.startswith(ID_PREFIX)}
        wanted: set[str] = set()
        for credential in credentials:
            if credential.metadata.deletion_timestamp is not None:
                continue
            sid = schedule_id(credential.namespace, credential.name)
            wanted.add(sid)
            schedule, fingerprint = sync_schedule(
                credential, self.settings.task_queue, self.settings.scm_sync_interval
            )
            try:
                created = await self._ensure(sid, schedule, fingerprint, known=sid in existing, counts=counts)
                if not created and await self._changed_since_verified(credential):
                    await self.client.get_schedule_handle(sid).trigger(
                        overlap=ScheduleOverlapPolicy.BUFFER_ONE
                    )
                    counts.triggered += 1
            except RPCError as err:
                counts.failed += 1
                logger.warning("schedule %s: %s", sid, err.message)
        for sid in existing - wanted:
            owner = credential_of(sid)
            if owner is None or not self._watches(owner[0]):
                continue
            if any((c.namespace, c.name) == owner for c in credentials):
                continue  # being deleted: its Schedule goes once the object is gone
            with contextlib.suppress(RPCError):
                await self.client.get_schedule_handle(sid).delete()
                counts.schedules_deleted += 1
                logger.info("deleted schedule %s (its credential is gone)", sid)
            self._applied.pop(sid, None)
            self._triggered.pop(sid, None)

    async def _ensure(
        self, sid: str, schedule: Schedule, fingerprint: str, *, known: bool, counts: ScmCounts
    ) -> bool:
        """Create or update the Schedule; True when it was created (its first sync starts now)."""
        if self._applied.get(sid) == fingerprint:
            return False
        handle = self.client.get_schedule_handle(sid)
        if not known:
            try:
                await self.client.create_schedule(sid, schedule, trigger_immediately=True)
                self._applied[sid] = fingerprint
                counts.schedules_created += 1
                logger.info("created schedule %s", sid)
                return True
            except ScheduleAlreadyRunningError:
                pass
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            await self.client.create_schedule(sid, schedule, trigger_immediately=True)
            self._applied[sid] = fingerprint
            counts.schedules_created += 1
            return True
        memo = getattr(description.schedule.action, "memo", None) or {}
        current = memo.get(FINGERPRINT_MEMO)
        # A described schedule carries its memo as raw payloads; one made here carries a str.
        if isinstance(current, Payload):
            with contextlib.suppress(Exception):
                current = self.client.data_converter.payload_converter.from_payload(current, str)
        if current != fingerprint:

            def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=schedule)

            await handle.update(replace)
            counts.schedules_updated += 1
            logger.info("updated schedule %s", sid)
        self._applied[sid] = fingerprint
        return False

    async def _changed_since_verified(self, credential: SourceCodeCredential) -> bool:
        """The Secret or the spec changed since the last verification, and no trigger for that is pending."""
        ref = credential.spec.token_secret_ref
        try:
            secret = await asyncio.to_thread(
                self.kube.read_object, "v1", "Secret", ref.name, credential.namespace
            )
            version = str((secret.get("metadata") or {}).get("resourceVersion") or "")
        except KubeNotFoundError:
            version = ""
        sid = schedule_id(credential.namespace, credential.name)
        current = (credential.metadata.generation, version)
        status = credential.status
        seen = (status.observed_generation, status.observed_secret_version or "") if status else None
        if status is not None and status.conditions and seen == current:
            self._triggered.pop(sid, None)
            return False
        last = self._triggered.get(sid)
        now = time.monotonic()
        if last is not None and last[0] == current and now - last[1] < RETRIGGER_AFTER:
            return False
        self._triggered[sid] = (current, now)
        return True


__all__ = [
    "ID_PREFIX",
    "RESYNC_INTERVAL",
    "ScmCounts",
    "SourceCodeReconciler",
    "credential_of",
    "schedule_id",
    "sync_schedule",
]
