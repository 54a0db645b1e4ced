"""The bridge's event loop: one driver task per execution, fed by the watch threads.

Per execution (by uid) at most one driver task runs at a time, so events of one CR are handled in order
while different CRs proceed in parallel (bounded). A failed step (Temporal or the apiserver unreachable)
is retried with exponential backoff; nothing ends the loop. A deleted CR (a DELETED event, or missing from
a re-list) cancels its workflow.

A finished CR (a terminal ``status.phase``) costs nothing once seen: one the bridge does not track is
skipped where its event arrives (no entry, no task, no Temporal call, no write), and a tracked one is
forgotten when it finishes. What the bridge holds is bounded by the unfinished runs, however many
finished ones the cluster keeps; the listing is read in pages (:mod:`worker.bridge.watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

from kubernetes import client as k8s
from pydantic import ValidationError
from temporalio.client import Client

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.messages import execution_workflow_id
from crds.reasons import ExecutionPhase
from worker.bridge.controls import Controls
from worker.bridge.metrics import ERRORS, TRACKED
from worker.bridge.orphans import ORPHAN_INTERVAL, OrphanSweeper
from worker.bridge.start import Starter
from worker.bridge.tracked import RPC_TIMEOUT, Tracked, backoff, meta
from worker.bridge.watch import LIST_PAGE_SIZE, Page, Watcher
from worker.settings import WorkerSettings

logger = logging.getLogger(__name__)

#: Routes an execution to the workers (and bridge) of one task queue: a bridge handles an execution
#: without this annotation, or with its own ``CUBEPAAS_TASK_QUEUE``, and ignores the others. Useful for
#: canary worker pools, and it keeps test executions away from other bridges sharing a cluster.
TASK_QUEUE_ANNOTATION = "devops.cubepaas.io/task-queue"
_TERMINAL_PHASES = frozenset(p.value for p in ExecutionPhase if p.is_terminal)


def is_finished(obj: dict[str, Any]) -> bool:
    """True when the raw CR ``obj`` has a terminal ``status.phase`` (read without parsing the model)."""
    status = obj.get("status")
    return isinstance(status, dict) and status.get("phase") in _TERMINAL_PHASES


class Bridge:
    """Starts one workflow per PipelineExecution and forwards CR controls as signals.

    ``kube`` is a :class:`activities.kube.Kube` or a kubernetes ``ApiClient``. Run with
    ``await bridge.run()`` (until :meth:`stop`); :attr:`ready` tells whether every watch is running.
    """

    def __init__(
        self,
        kube: Kube | k8s.ApiClient,
        client: Client,
        settings: WorkerSettings,
        *,
        watch_timeout_seconds: int = 30,
        max_concurrency: int = 16,
        orphan_interval: float = ORPHAN_INTERVAL,
        list_page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        self.kube = kube if isinstance(kube, Kube) else Kube(kube)
        self.client = client
        self.settings = settings
        self.max_concurrency = max_concurrency
        self.orphan_interval = orphan_interval
        self.targets: list[str | None] = list(settings.watch_namespaces) or [None]
        #: What this instance did, by kind (started, existing, closed, signal:pause, cancel, status, ...).
        self.stats: Counter[str] = Counter()
        self.watcher = Watcher(
            self.kube.api_client,
            self.targets,
            self._emit,
            self.stats,
            watch_timeout_seconds=watch_timeout_seconds,
            page_size=list_page_size,
        )
        self.starter = Starter(self.kube, client, settings, self.stats)
        self.controls = Controls(client, self.stats)
        self.sweeper = OrphanSweeper(self.kube, client)
        self._tracked: dict[str, Tracked] = {}
        #: The uids handled so far by the listing under way, per target (only while one is read).
        self._listing: dict[str | None, set[str]] = {}
        self._stopping: asyncio.Event | None = None
        self._queue: asyncio.Queue[tuple[str, str | None, Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        self._running = False

    # -- public ------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True while the loop runs and every watch has listed and is watching."""
        return self._running and self.watcher.ready

    @property
    def running(self) -> bool:
        return self._running

    @property
    def tracking(self) -> int:
        """Executions the bridge holds an entry for: unfinished ones, and deleted ones being cancelled."""
        return len(self._tracked)

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread-safe, idempotent)."""
        self.watcher.stop()
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)

    async def run(self) -> None:
        """List, watch and reconcile until :meth:`stop`; never raises for apiserver/Temporal faults."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._queue = asyncio.Queue()
        self._sem = asyncio.Semaphore(self.max_concurrency)
        self._running = True
        logger.info(
            "bridge: watching PipelineExecutions in %s", ", ".join(t or "<all>" for t in self.targets)
        )
        self.watcher.start()
        get: asyncio.Task[tuple[str, str | None, Any]] | None = None
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        sweeper = asyncio.ensure_future(self._sweep_orphans_forever())
        try:
            while not self._stopping.is_set():
                get = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({get, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    break
                kind, target, payload = get.result()
                get = None
                self._dispatch(kind, target, payload)
        finally:
            self._running = False
            self.stop()
            for fut in (get, stop_wait, sweeper):
                if fut is not None and not fut.done():
                    fut.cancel()
            await self._drain_tasks()
            await asyncio.to_thread(self.watcher.join, 5.0)
            TRACKED.dec(len(self._tracked))
            self._tracked.clear()
            logger.info("bridge: stopped")

    def desired_workflow_ref(self, tracked: Tracked) -> dict[str, Any]:
        """``status.workflow`` as the bridge writes it for ``tracked``."""
        return self.starter.desired_workflow_ref(tracked).to_dict()

    async def sweep_orphans(self) -> int:
        """End the CRs whose workflow ended without ending them; returns how many it ended."""
        return await self.sweeper.sweep(self._tracked.values())

    # -- events (watch threads -> event loop) --------------------------------------------------------

    def _emit(self, kind: str, target: str | None, payload: Any) -> None:
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(queue.put_nowait, (kind, target, payload))

    def _dispatch(self, kind: str, target: str | None, payload: Any) -> None:
        if kind in ("PAGE", "LISTED"):
            page: Page = payload
            if page.first:
                self._listing[target] = set()
            seen = self._listing.setdefault(target, set())
            for obj in page.items:
                if isinstance(obj, dict):
                    uid = self._observe(obj, deleted=False)
                    if uid:
                        seen.add(uid)
            if kind == "PAGE":
                return
            del self._listing[target]
            # Deleted while no watch ran (a 410 gap or a failed watch): cancel those too.
            for uid, tracked in list(self._tracked.items()):
                in_scope = target is None or tracked.namespace == target
                if in_scope and uid not in seen and not tracked.deleted:
                    logger.info(
                        "bridge: %s/%s is gone (not in a new listing)", tracked.namespace, tracked.name
                    )
                    self._observe(tracked.latest, deleted=True)
        else:
            self._observe(payload, deleted=kind == "DELETED")

    def _observe(self, obj: dict[str, Any], *, deleted: bool) -> str | None:
        m = meta(obj)
        uid, ns, name = m.get("uid"), m.get("namespace"), m.get("name")
        if not (uid and ns and name):
            return None
        queue = (m.get("annotations") or {}).get(TASK_QUEUE_ANNOTATION)
        if queue and queue != self.settings.task_queue and uid not in self._tracked:
            return None  # another task queue's bridge handles it
        tracked = self._tracked.get(uid)
        if tracked is None and is_finished(obj):
            return None  # a finished run never seen here (or forgotten): nothing to start, signal or cancel
        if tracked is None:
            # Also for a DELETED event of an unfinished CR never seen here: its workflow may exist.
            tracked = Tracked(
                namespace=ns, name=name, uid=uid, latest=obj, workflow_id=execution_workflow_id(ns, name, uid)
            )
            self._tracked[uid] = tracked
            TRACKED.inc()
        tracked.latest = obj
        tracked.deleted = tracked.deleted or deleted
        tracked.dirty = True
        if tracked.task is None or tracked.task.done():
            tracked.task = asyncio.create_task(self._drive(tracked), name=f"bridge {ns}/{name}")
        return str(uid)

    # -- one execution -----------------------------------------------------------------------------

    async def _drive(self, tracked: Tracked) -> None:
        """Handle the latest state of one execution until nothing is left to do (retrying failures)."""
        assert self._sem is not None and self._stopping is not None
        while tracked.dirty and not self._stopping.is_set():
            tracked.dirty = False
            operation = "cancel" if tracked.deleted else "reconcile"
            try:
                async with self._sem:
                    if tracked.deleted:
                        await self.controls.cancel(tracked)
                    else:
                        await self._reconcile(tracked)
                tracked.failures = 0
            except Exception as err:
                tracked.failures += 1
                delay = backoff(tracked.failures)
                logger.warning(
                    "bridge: %s of %s/%s failed (%s: %s); retrying in %.1fs",
                    operation,
                    tracked.namespace,
                    tracked.name,
                    type(err).__name__,
                    err,
                    delay,
                )
                self.stats["error"] += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                tracked.dirty = True
        if tracked.deleted and not tracked.dirty and self._tracked.get(tracked.uid) is tracked:
            del self._tracked[tracked.uid]
            TRACKED.dec()

    async def _reconcile(self, tracked: Tracked) -> None:
        obj = tracked.latest
        version = str(meta(obj).get("resourceVersion") or "")
        try:
            pe = PipelineExecution.model_validate(obj)
        except ValidationError as err:
            if tracked.bad_version != version:
                tracked.bad_version = version
                ERRORS.labels("parse").inc()
                logger.error(
                    "bridge: %s/%s does not match its model, skipped: %s",
                    tracked.namespace,
                    tracked.name,
                    err,
                )
            return
        if pe.is_finished:
            if tracked.started and not tracked.links_itself:
                await self.starter.write_status(tracked, pe)  # the link to a workflow it attached to
            self._forget(tracked)
            return
        # A workflow this bridge started writes its own status.workflow (crds.execution.WorkflowRef.of)
        # with each of its status writes, the first moments from now: a write here would only make that
        # one conflict. One it attached to (maybe of a version that did not) is linked here when needed.
        if not tracked.started:
            tracked.links_itself = await self.starter.start(tracked, pe)
        if not tracked.links_itself:
            await self.starter.write_status(tracked, pe)
        if not tracked.closed:
            await self.controls.forward(tracked, pe)

    def _forget(self, tracked: Tracked) -> None:
        tracked.closed = True
        if self._tracked.get(tracked.uid) is tracked:
            del self._tracked[tracked.uid]
            TRACKED.dec()

    async def _sweep_orphans_forever(self) -> None:
        while True:
            await asyncio.sleep(self.orphan_interval)
            try:
                await self.sweep_orphans()
            except Exception as err:  # never let the sweep end the bridge
                ERRORS.labels("orphans").inc()
                logger.warning("bridge: orphan sweep failed: %s", err)

    async def _drain_tasks(self) -> None:
        tasks = [t.task for t in self._tracked.values() if t.task is not None and not t.task.done()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=RPC_TIMEOUT.total_seconds() + 5)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)


__all__ = ["TASK_QUEUE_ANNOTATION", "Bridge", "is_finished"]
