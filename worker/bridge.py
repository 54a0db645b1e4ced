"""The bridge: PipelineExecution CRs -> one Temporal workflow each, and CR controls -> signals.

How it works
------------
- One thread per watched namespace (or one for all namespaces) lists the PipelineExecutions, then
  watches from the list's ``resourceVersion``, resuming each watch from the last version seen (bookmarks
  included) and listing again on 410 Gone. Events go to the asyncio side through a queue.
- Per execution (by uid) the asyncio side runs at most one driver task at a time, so events of one CR
  are handled in order while different CRs proceed in parallel (bounded). A failed step (Temporal or
  the apiserver unreachable) is retried with exponential backoff; nothing ends the loop.
- For an execution whose phase is not terminal, ``PipelineExecutionWorkflow`` is started with the id
  :func:`crds.messages.execution_workflow_id` (namespace, name, uid), ``USE_EXISTING`` on a running
  workflow and ``REJECT_DUPLICATE`` on a closed one: a restarted bridge, or two replicas, never start a
  second workflow (a closed workflow's "already started" answer is a no-op). Then ``status.workflow``
  (id, runId, namespace, uiUrl) is merge-patched through the status subresource when it differs.
- ``spec.cancelled`` true -> signal ``cancel``; ``spec.paused`` true -> ``pause``, back to false ->
  ``resume``. The last forwarded value is remembered per uid, so events that do not change them send
  nothing (the workflow's signals are idempotent, so a resend after a restart is harmless).
- A deleted CR (a DELETED event, or missing from a re-list) cancels its workflow.
- An execution annotated ``devops.cubepaas.io/task-queue: <queue>`` is handled only by the bridge of
  that task queue; one without the annotation by every bridge that watches its namespace.

Metrics are prometheus_client collectors in the default registry (``cubepaas_bridge_*``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections import Counter as CountMap
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import KubeNotFoundError
from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.messages import (
    EXECUTION_WORKFLOW,
    ControlInput,
    ExecutionRef,
    ExecutionWorkflowInput,
    Signal,
    execution_workflow_id,
)
from crds.meta import GROUP, VERSION
from crds.reasons import ExecutionPhase
from worker.settings import WorkerSettings
from worker.temporal import workflow_ui_url

logger = logging.getLogger(__name__)

PLURAL = PipelineExecution.crd.plural
_WATCH: Any = k8s_watch.Watch

SA_PIPELINE = SearchAttributeKey.for_keyword("DevopsPipeline")
SA_NAMESPACE = SearchAttributeKey.for_keyword("DevopsNamespace")
SA_BRANCH = SearchAttributeKey.for_keyword("DevopsBranch")
SA_TRIGGER = SearchAttributeKey.for_keyword("DevopsTrigger")
SA_RUN = SearchAttributeKey.for_int("DevopsRun")
SA_PHASE = SearchAttributeKey.for_keyword("DevopsPhase")

#: Who set ``spec.cancelled`` / ``spec.paused`` (set by the CLI next to the spec change); forwarded as
#: ``ControlInput.user``. ``REQUESTED_BY_ANNOTATION`` is the fallback for both.
CANCELLED_BY_ANNOTATION = "devops.cubepaas.io/cancelled-by"
PAUSED_BY_ANNOTATION = "devops.cubepaas.io/paused-by"
REQUESTED_BY_ANNOTATION = "devops.cubepaas.io/requested-by"
#: Routes an execution to the workers (and bridge) of one task queue: a bridge handles an execution
#: without this annotation, or with its own ``CUBEPAAS_TASK_QUEUE``, and ignores the others. Useful for
#: canary worker pools, and it keeps test executions away from other bridges sharing a cluster.
TASK_QUEUE_ANNOTATION = "devops.cubepaas.io/task-queue"
#: Continue the workflow as new after this many history events (operators and tests; default: when
#: Temporal suggests it).
HISTORY_LIMIT_ANNOTATION = "devops.cubepaas.io/history-limit"

STARTS = Counter(
    "cubepaas_bridge_workflow_starts",
    "Workflow start requests by result: started (new), existing (running, reused), closed (no-op).",
    ["result"],
)
SIGNALS = Counter("cubepaas_bridge_signals_forwarded", "Signals forwarded from CR fields.", ["signal"])
CANCELS = Counter("cubepaas_bridge_workflow_cancels", "Workflows cancelled because their CR was deleted.")
STATUS_WRITES = Counter("cubepaas_bridge_status_writes", "status.workflow writes.")
WATCH_RESTARTS = Counter(
    "cubepaas_bridge_watch_restarts", "Watches listed again (gone: 410 Gone; error: a failure).", ["reason"]
)
ERRORS = Counter("cubepaas_bridge_errors", "Failed bridge operations (retried with backoff).", ["operation"])
WATCHING = Gauge("cubepaas_bridge_watches_running", "Watch streams currently listed and watching.")
TRACKED = Gauge("cubepaas_bridge_tracked_executions", "Executions the bridge currently tracks.")

#: Temporal RPCs of the bridge give up after this (then the step is retried with backoff).
RPC_TIMEOUT = timedelta(seconds=10)
#: Closed workflow states that leave a CR unfinished, and how the CR's message names them.
ORPHANING = {
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
    WorkflowExecutionStatus.FAILED: "failed",
}
#: How often the bridge looks for such CRs.
ORPHAN_INTERVAL = 30.0
MAX_BACKOFF = 30.0


@dataclass
class _Tracked:
    """What the bridge knows about one execution (by uid)."""

    namespace: str
    name: str
    uid: str
    latest: dict[str, Any]
    workflow_id: str
    run_id: str | None = None
    started: bool = False  # start requested successfully (or found closed / terminal)
    closed: bool = False  # the workflow is known to be closed: no signals
    paused: bool | None = None  # last value forwarded (None: none yet in this process)
    cancelled: bool = False  # cancel forwarded
    deleted: bool = False
    dirty: bool = False
    failures: int = 0
    bad_version: str | None = None  # resourceVersion that failed to parse (logged once)
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def _backoff(failures: int) -> float:
    return min(MAX_BACKOFF, 0.5 * 2.0 ** max(0, failures - 1)) * random.uniform(0.8, 1.2)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def summary_of(pe: PipelineExecution) -> str:
    """``<pipeline> #<run> on <branch> (<trigger>)``, at most 200 bytes."""
    spec = pe.spec
    where = spec.branch or spec.ref or "default branch"
    text = f"{spec.pipeline_name} #{spec.run} on {where} ({spec.triggered_by})"
    return text.encode()[:200].decode(errors="ignore")


def details_of(pe: PipelineExecution) -> str:
    """Markdown shown in the Temporal UI: what the run is and how to get back to its CR."""
    spec, ns, name = pe.spec, pe.namespace, pe.name
    lines = [
        f"**PipelineExecution** `{ns}/{name}` (uid `{pe.metadata.uid}`)",
        "",
        f"- Pipeline: `{spec.pipeline_name}`, run **#{spec.run}**",
        f"- Branch: `{spec.branch or '-'}`" + (f", ref `{spec.ref}`" if spec.ref else ""),
        f"- Commit: `{spec.commit or 'head of branch'}`, event `{spec.event}`",
        f"- Triggered by: {spec.triggered_by}"
        + (f" ({spec.trigger_user_name})" if spec.trigger_user_name else ""),
        "",
        "The CR (its status mirrors this workflow):",
        "",
        f"    kubectl -n {ns} get pipelineexecution {name} -o yaml",
        f"    /apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{name}",
        "",
        f"Control it from the CR: `kubectl -n {ns} patch pipelineexecution {name} --type merge "
        '-p \'{"spec":{"paused":true}}\'` (or `cancelled`), or with signals `pause`, `resume`, `cancel`.',
    ]
    return "\n".join(lines)


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
    ) -> None:
        self.kube = kube if isinstance(kube, Kube) else Kube(kube)
        self.client = client
        self.settings = settings
        self.watch_timeout_seconds = watch_timeout_seconds
        self.max_concurrency = max_concurrency
        self.orphan_interval = orphan_interval
        self.targets: list[str | None] = list(settings.watch_namespaces) or [None]
        #: What this instance did, by kind (started, existing, closed, signal:pause, cancel, status, ...).
        self.stats: CountMap[str] = CountMap()
        self._tracked: dict[str, _Tracked] = {}
        self._watching: dict[str | None, bool] = dict.fromkeys(self.targets, False)
        self._watches: dict[str | None, Any] = {}
        self._stop_thread = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._queue: asyncio.Queue[tuple[str, str | None, Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        self._running = False

    # -- public ------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True while the loop runs and every watch has listed and is watching."""
        return self._running and all(self._watching.values())

    @property
    def running(self) -> bool:
        return self._running

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread-safe, idempotent)."""
        self._stop_thread.set()
        for w in list(self._watches.values()):
            _interrupt_watch(w)
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
        self._stop_thread.clear()
        threads = [
            threading.Thread(
                target=self._watch_loop, args=(ns,), name=f"bridge-watch-{ns or 'all'}", daemon=True
            )
            for ns in self.targets
        ]
        self._running = True
        logger.info(
            "bridge: watching PipelineExecutions in %s", ", ".join(t or "<all>" for t in self.targets)
        )
        for thread in threads:
            thread.start()
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
            await asyncio.to_thread(_join_all, threads, 5.0)
            for target in self.targets:
                self._set_watching(target, False)
            TRACKED.dec(len(self._tracked))
            self._tracked.clear()
            logger.info("bridge: stopped")

    # -- watch threads -------------------------------------------------------------------------------

    def _emit(self, kind: str, target: str | None, payload: Any) -> None:
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(queue.put_nowait, (kind, target, payload))

    def _set_watching(self, target: str | None, value: bool) -> None:
        if self._watching.get(target) != value:
            self._watching[target] = value
            WATCHING.inc() if value else WATCHING.dec()

    def _list_call(self, api: Any, target: str | None) -> tuple[Any, tuple[Any, ...]]:
        if target is None:
            return api.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        return api.list_namespaced_custom_object, (GROUP, VERSION, target, PLURAL)

    def _watch_loop(self, target: str | None) -> None:
        """List, then watch from the list's version; resume from the last version; re-list on 410."""
        api = k8s.CustomObjectsApi(self.kube.api_client)
        func, args = self._list_call(api, target)
        where = target or "all namespaces"
        version: str | None = None
        failures = 0
        while not self._stop_thread.is_set():
            try:
                if version is None:
                    listing = func(*args, _request_timeout=(5, 60))
                    version = str(_meta(listing).get("resourceVersion") or "") or None
                    self._emit("LISTED", target, listing.get("items") or [])
                    self._set_watching(target, True)
                    logger.debug("bridge: listed %s at version %s", where, version)
                w: Any = _WATCH()
                self._watches[target] = w
                try:
                    for event in w.stream(
                        func,
                        *args,
                        resource_version=version,
                        timeout_seconds=self.watch_timeout_seconds,
                        allow_watch_bookmarks=True,
                        _request_timeout=(5, self.watch_timeout_seconds + 15),
                    ):
                        if self._stop_thread.is_set():
                            w.stop()
                            break
                        kind = event.get("type")
                        obj = event.get("object")
                        if not isinstance(obj, dict):
                            continue
                        seen = _meta(obj).get("resourceVersion")
                        if kind in ("ADDED", "MODIFIED", "DELETED"):
                            self._emit(kind, target, obj)
                        if seen:
                            version = str(seen)
                finally:
                    self._watches.pop(target, None)
                failures = 0
                self._set_watching(target, True)
            except ApiException as err:
                if self._stop_thread.is_set():
                    break
                if err.status == 410:
                    logger.info("bridge: watch of %s expired (410 Gone); listing again", where)
                    WATCH_RESTARTS.labels("gone").inc()
                    self.stats["watch_gone"] += 1
                    version = None
                    continue
                failures = self._watch_failed(target, failures, f"HTTP {err.status} {err.reason}")
            except Exception as err:
                if self._stop_thread.is_set():
                    break
                failures = self._watch_failed(target, failures, f"{type(err).__name__}: {err}")
        self._set_watching(target, False)

    def _watch_failed(self, target: str | None, failures: int, what: str) -> int:
        failures += 1
        delay = _backoff(failures)
        logger.warning(
            "bridge: watch of %s failed (%s); retrying in %.1fs", target or "all namespaces", what, delay
        )
        WATCH_RESTARTS.labels("error").inc()
        ERRORS.labels("watch").inc()
        self.stats["watch_error"] += 1
        if failures > 1:
            self._set_watching(target, False)
        self._stop_thread.wait(delay)
        return failures

    # -- dispatch (event loop) ---------------------------------------------------------------------

    def _dispatch(self, kind: str, target: str | None, payload: Any) -> None:
        if kind == "LISTED":
            seen: set[str] = set()
            for obj in payload:
                if isinstance(obj, dict):
                    uid = self._observe(obj, deleted=False)
                    if uid:
                        seen.add(uid)
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
        meta = _meta(obj)
        uid, ns, name = meta.get("uid"), meta.get("namespace"), meta.get("name")
        if not (uid and ns and name):
            return None
        queue = (meta.get("annotations") or {}).get(TASK_QUEUE_ANNOTATION)
        if queue and queue != self.settings.task_queue and uid not in self._tracked:
            return None  # another task queue's bridge handles it
        tracked = self._tracked.get(uid)
        if tracked is None:
            # Also for a DELETED event of a CR never seen here: its workflow may exist all the same.
            tracked = _Tracked(
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

    async def _drive(self, tracked: _Tracked) -> None:
        """Handle the latest state of one execution until nothing is left to do (retrying failures)."""
        assert self._sem is not None and self._stopping is not None
        while tracked.dirty and not self._stopping.is_set():
            tracked.dirty = False
            operation = "cancel" if tracked.deleted else "reconcile"
            try:
                async with self._sem:
                    if tracked.deleted:
                        await self._cancel(tracked)
                    else:
                        await self._reconcile(tracked)
                tracked.failures = 0
            except Exception as err:
                tracked.failures += 1
                delay = _backoff(tracked.failures)
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

    async def _drain_tasks(self) -> None:
        tasks = [t.task for t in self._tracked.values() if t.task is not None and not t.task.done()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=RPC_TIMEOUT.total_seconds() + 5)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    # -- one execution -----------------------------------------------------------------------------

    async def _reconcile(self, tracked: _Tracked) -> None:
        obj = tracked.latest
        version = str(_meta(obj).get("resourceVersion") or "")
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
        if not tracked.started:
            phase = pe.status.phase if pe.status else None
            if phase is not None and phase.is_terminal:
                tracked.started = tracked.closed = True
                return
            await self._start(tracked, pe)
        await self._write_status(tracked, pe)
        if not tracked.closed:
            await self._forward_controls(tracked, pe)

    async def _start(self, tracked: _Tracked, pe: PipelineExecution) -> None:
        spec = pe.spec
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(SA_PIPELINE, spec.pipeline_name),
                SearchAttributePair(SA_NAMESPACE, tracked.namespace),
                SearchAttributePair(SA_BRANCH, spec.branch or ""),
                SearchAttributePair(SA_TRIGGER, str(spec.triggered_by)),
                SearchAttributePair(SA_RUN, spec.run),
                SearchAttributePair(SA_PHASE, ExecutionPhase.WAITING.value),
            ]
        )
        limit = (pe.metadata.annotations or {}).get(HISTORY_LIMIT_ANNOTATION, "")
        arg = ExecutionWorkflowInput(
            execution=ExecutionRef(namespace=tracked.namespace, name=tracked.name, uid=tracked.uid),
            ui_base_url=self.settings.temporal_ui_url,
            history_limit=int(limit) if limit.isdigit() else 0,
        )
        try:
            handle: WorkflowHandle[Any, Any] = await self.client.start_workflow(
                EXECUTION_WORKFLOW,
                arg,
                id=tracked.workflow_id,
                task_queue=self.settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=attributes,
                static_summary=summary_of(pe),
                static_details=details_of(pe),
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError as err:
            # A closed workflow has this id (REJECT_DUPLICATE): the run already happened; nothing to do.
            tracked.started = tracked.closed = True
            tracked.run_id = err.run_id or tracked.run_id
            STARTS.labels("closed").inc()
            self.stats["closed"] += 1
            logger.info("bridge: workflow %s already closed; nothing to start", tracked.workflow_id)
            return
        except Exception:
            ERRORS.labels("start").inc()
            raise
        tracked.started = True
        tracked.run_id = handle.result_run_id or handle.run_id
        response = getattr(handle, "_start_workflow_response", None)
        result = "existing" if response is not None and not getattr(response, "started", True) else "started"
        STARTS.labels(result).inc()
        self.stats[result] += 1
        logger.info("bridge: %s workflow %s (run %s)", result, tracked.workflow_id, tracked.run_id)

    def desired_workflow_ref(self, tracked: _Tracked) -> dict[str, Any]:
        ns = self.settings.temporal_namespace
        url = workflow_ui_url(self.settings.temporal_ui_url, ns, tracked.workflow_id, tracked.run_id)
        return {"id": tracked.workflow_id, "runId": tracked.run_id, "namespace": ns, "uiUrl": url or None}

    async def _sweep_orphans_forever(self) -> None:
        while True:
            await asyncio.sleep(self.orphan_interval)
            try:
                await self.sweep_orphans()
            except Exception as err:  # never let the sweep end the bridge
                ERRORS.labels("orphans").inc()
                logger.warning("bridge: orphan sweep failed: %s", err)

    async def sweep_orphans(self) -> int:
        """End the CRs whose workflow ended without ending them (terminated, timed out, failed).

        A terminated workflow runs no cleanup, so its CR would otherwise show ``Building`` forever (what
        Rancher's runs did whenever something went wrong). Returns how many CRs it ended.
        """
        ended = 0
        for tracked in list(self._tracked.values()):
            if not tracked.started or tracked.deleted:
                continue
            status = (tracked.latest.get("status") or {}) if isinstance(tracked.latest, dict) else {}
            phase = status.get("phase")
            if phase and ExecutionPhase(phase).is_terminal:
                continue
            try:
                desc = await self.client.get_workflow_handle(tracked.workflow_id).describe(
                    rpc_timeout=RPC_TIMEOUT
                )
            except RPCError:
                continue
            if desc.status not in ORPHANING:
                continue
            how = ORPHANING[desc.status]
            phase_after = ExecutionPhase.ABORTED if how == "terminated" else ExecutionPhase.FAILED
            message = (
                f"The run's workflow was {how} without finishing the run (last phase: {phase or 'none'})"
            )
            now = datetime.now(UTC).isoformat()
            patch = {
                "phase": phase_after.value,
                "message": message,
                "ended": now,
                "conditions": [c for c in status.get("conditions") or [] if c.get("type") != "Succeeded"]
                + [
                    {
                        "type": "Succeeded",
                        "status": "False",
                        "reason": f"Workflow{how.title().replace(' ', '')}",
                        "message": message,
                        "lastTransitionTime": now,
                    }
                ],
            }
            try:
                await asyncio.to_thread(
                    self.kube.patch_status, PipelineExecution, tracked.namespace, tracked.name, patch
                )
            except KubeNotFoundError:
                continue
            tracked.closed = True
            ended += 1
            logger.warning("bridge: %s/%s: %s", tracked.namespace, tracked.name, message)
        return ended

    async def _write_status(self, tracked: _Tracked, pe: PipelineExecution) -> None:
        desired = self.desired_workflow_ref(tracked)
        current = pe.status.workflow.to_dict() if pe.status and pe.status.workflow else {}
        if all(current.get(k) == v for k, v in desired.items()):
            return
        try:
            await asyncio.to_thread(
                self.kube.patch_status,
                PipelineExecution,
                tracked.namespace,
                tracked.name,
                {"workflow": desired},
            )
        except KubeNotFoundError:
            return  # deleted meanwhile: the DELETED event follows
        except Exception:
            ERRORS.labels("status").inc()
            raise
        STATUS_WRITES.inc()
        self.stats["status"] += 1
        logger.debug("bridge: wrote status.workflow of %s/%s", tracked.namespace, tracked.name)

    async def _forward_controls(self, tracked: _Tracked, pe: PipelineExecution) -> None:
        spec, annotations = pe.spec, pe.metadata.annotations
        fallback_user = annotations.get(REQUESTED_BY_ANNOTATION, "")
        if spec.cancelled:
            if not tracked.cancelled:
                user = annotations.get(CANCELLED_BY_ANNOTATION, fallback_user)
                await self._signal(
                    tracked, Signal.CANCEL, ControlInput(reason="spec.cancelled set", user=user)
                )
                tracked.cancelled = True
            return
        user = annotations.get(PAUSED_BY_ANNOTATION, fallback_user)
        # Edge-triggered: only a change of spec.paused is forwarded. A run paused from the CLI, the Temporal
        # UI or the Temporal CLI while spec.paused stays false must not be resumed by the bridge.
        if spec.paused and tracked.paused is not True:
            await self._signal(tracked, Signal.PAUSE, ControlInput(reason="spec.paused set", user=user))
        elif not spec.paused and tracked.paused is True:
            await self._signal(tracked, Signal.RESUME, ControlInput(reason="spec.paused cleared", user=user))
        tracked.paused = spec.paused

    async def _signal(self, tracked: _Tracked, signal: Signal, arg: ControlInput) -> None:
        handle = self.client.get_workflow_handle(tracked.workflow_id)
        try:
            await handle.signal(signal.value, arg, rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                tracked.closed = True
                logger.info("bridge: %s not sent, workflow %s is closed", signal.value, tracked.workflow_id)
                return
            ERRORS.labels("signal").inc()
            raise
        SIGNALS.labels(signal.value).inc()
        self.stats[f"signal:{signal.value}"] += 1
        logger.info("bridge: forwarded %s to %s", signal.value, tracked.workflow_id)

    async def _cancel(self, tracked: _Tracked) -> None:
        if tracked.closed:
            return
        handle = self.client.get_workflow_handle(tracked.workflow_id)
        try:
            await handle.cancel(rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                tracked.closed = True
                logger.debug("bridge: no running workflow %s to cancel", tracked.workflow_id)
                return
            ERRORS.labels("cancel").inc()
            raise
        tracked.closed = True
        CANCELS.inc()
        self.stats["cancel"] += 1
        logger.info(
            "bridge: %s/%s deleted; cancelled %s", tracked.namespace, tracked.name, tracked.workflow_id
        )


def _interrupt_watch(w: Any) -> None:
    """Stop a watch stream now: flag it and shut its socket down (unblocks the reading thread)."""
    with contextlib.suppress(Exception):
        w.stop()
        response = getattr(w, "_resp", None)
        shutdown = getattr(response, "shutdown", None)
        if callable(shutdown):
            shutdown()


def _join_all(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            logger.warning("bridge: %s did not stop in time (daemon thread, left behind)", thread.name)


__all__ = [
    "CANCELLED_BY_ANNOTATION",
    "PAUSED_BY_ANNOTATION",
    "REQUESTED_BY_ANNOTATION",
    "TASK_QUEUE_ANNOTATION",
    "Bridge",
    "details_of",
    "summary_of",
]
