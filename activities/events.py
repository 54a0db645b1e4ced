"""Kubernetes Events on a PipelineExecution: what happened to the run, for ``kubectl describe``.

:func:`status_events` (pure, unit-tested) compares the status before and after a write and names the
transitions; :class:`EventRecorder` writes them as core/v1 Events, one Event object per run and reason
whose ``count`` grows on repeats (client-go's aggregation, so a run never floods the namespace). The
count is kept in memory: a worker that restarts starts a repeated Event's count again.
Events are best effort, as in Kubernetes itself: a failure is logged and the status write stands.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from activities.errors import DevopsError, KubeConflictError
from activities.kube import Kube
from crds.execution import PipelineExecution, PipelineExecutionStatus
from crds.reasons import EventReason, ExecutionPhase, StageState

logger = logging.getLogger(__name__)

COMPONENT = "cubepaas-devops"
#: The clone stage every run starts with (crds.execution.StageStatus): its success is not an Event.
CLONE_STAGE_INDEX = 0
#: Events whose count this process remembers (the oldest are forgotten first; a run's repeats are close).
MAX_REMEMBERED = 10_000
_TERMINAL_REASON = {
    ExecutionPhase.SUCCESS: EventReason.SUCCEEDED,
    ExecutionPhase.FAILED: EventReason.FAILED,
    ExecutionPhase.ABORTED: EventReason.ABORTED,
    ExecutionPhase.DENIED: EventReason.DENIED,
}


@dataclass(frozen=True)
class RunEvent:
    reason: EventReason
    message: str
    warning: bool = False

    @property
    def type(self) -> str:
        return "Warning" if self.warning else "Normal"


def _phase(status: PipelineExecutionStatus | None) -> ExecutionPhase | None:
    return ExecutionPhase(status.phase) if status is not None and status.phase is not None else None


def status_events(old: PipelineExecutionStatus | None, new: PipelineExecutionStatus) -> list[RunEvent]:
    """The Events for going from ``old`` (the CR's status before the write) to ``new``.

    Each Event is one apiserver write, and a short run's whole life often lands in one status write, so
    the good news of one write is told once: a build started with the run is named in ``Started``, and
    a run that ends in the write names the start, the build and the stages that succeeded with it in
    its ending Event. The clone stage, which every run has, is told only when it fails. What a reader
    must see on its own line stays its own Event: a stage that failed, a gate, a pause.
    """
    before, after = _phase(old), _phase(new)
    ends = after is not None and after.is_terminal and (before is None or not before.is_terminal)
    told: list[str] = []  # what the ending Event tells of this write, when the run ends in it
    events: list[RunEvent] = []
    build = None
    if (
        new.jenkins is not None
        and new.jenkins.build is not None
        and (old is None or old.jenkins is None or old.jenkins.build != new.jenkins.build)
    ):
        build = f"Jenkins build {new.jenkins.job} #{new.jenkins.build}"
    if before is None and after is not None:
        if ends:
            told.append("started")
        else:
            message = f"Run started: {new.message or after}"
            events.append(RunEvent(EventReason.STARTED, f"{message}; {build}" if build else message))
            build = None
    if after == ExecutionPhase.QUEUEING and before != ExecutionPhase.QUEUEING:
        events.append(RunEvent(EventReason.QUEUED, new.message or "Waiting for an executor slot"))
    if build is not None:
        if ends:
            told.append(build)
        else:
            events.append(RunEvent(EventReason.BUILD_STARTED, build))
    old_states = [s.state for s in old.stages] if old is not None else []
    for i, stage in enumerate(new.stages):
        was = old_states[i] if i < len(old_states) else None
        if stage.state == was:
            continue
        if stage.state == StageState.SUCCESS:
            if i == CLONE_STAGE_INDEX:
                continue  # the product's own stage: the next stage running tells it, a failure is told
            if ends:
                told.append(f"stage {i} '{stage.name}' succeeded")
            else:
                events.append(RunEvent(EventReason.STAGE_SUCCEEDED, f"Stage {i} '{stage.name}' succeeded"))
        elif stage.state == StageState.FAILED:
            events.append(
                RunEvent(EventReason.STAGE_FAILED, f"Stage {i} '{stage.name}' failed", warning=True)
            )
    if new.pending_gate is not None and (old is None or old.pending_gate != new.pending_gate):
        name = new.stages[new.pending_gate].name if new.pending_gate < len(new.stages) else "?"
        events.append(
            RunEvent(
                EventReason.WAITING_FOR_APPROVAL, f"Stage {new.pending_gate} '{name}' waits for approval"
            )
        )
    if after == ExecutionPhase.PAUSED and before != ExecutionPhase.PAUSED:
        events.append(RunEvent(EventReason.PAUSED, new.message or "Paused"))
    if (
        before == ExecutionPhase.PAUSED
        and after is not None
        and after != ExecutionPhase.PAUSED
        and not after.is_terminal
    ):
        events.append(RunEvent(EventReason.RESUMED, new.message or "Resumed"))
    if ends and after is not None:
        took = f" after {new.duration}" if new.duration else ""
        message = f"Run ended {after}{took}: {new.message or ''}".rstrip(": ")
        events.append(
            RunEvent(
                _TERMINAL_REASON[after],
                f"{message} ({'; '.join(told)})" if told else message,
                warning=after != ExecutionPhase.SUCCESS,
            )
        )
    return events


def event_name(pe: PipelineExecution, reason: EventReason) -> str:
    """One Event object per run (name and uid) and reason: repeats raise its count."""
    uid = hashlib.sha256((pe.metadata.uid or "").encode()).hexdigest()[:8]
    return f"{pe.name}.{uid}.{reason.value.lower()}"[:253]


class EventRecorder:
    """Writes :class:`RunEvent` s as core/v1 Events on a PipelineExecution (best effort)."""

    def __init__(self, kube: Kube, *, clock: Callable[[], datetime] | None = None) -> None:
        self.kube = kube
        self.clock = clock or (lambda: datetime.now(UTC))
        self.instance = socket.gethostname()
        # The count of each Event this process wrote: a repeat raises it without reading the Event
        # first, and a new one (nearly all are: one per run and reason) is one request, not two.
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def record(self, pe: PipelineExecution, events: Sequence[RunEvent]) -> None:
        grouped: dict[EventReason, tuple[RunEvent, int]] = {}
        for ev in events:
            grouped[ev.reason] = (ev, grouped.get(ev.reason, (ev, 0))[1] + 1)
        for ev, count in grouped.values():
            try:
                self._write(pe, ev, count)
            except DevopsError as err:
                logger.warning(
                    "event %s on %s/%s not recorded: %s", ev.reason, pe.namespace, pe.name, err.message
                )

    def _write(self, pe: PipelineExecution, ev: RunEvent, count: int) -> None:
        name = event_name(pe, ev.reason)
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            known = self._counts.get(name)
        if known is not None:
            self.kube.merge_patch_object(
                "v1",
                "Event",
                name,
                pe.namespace,
                {"count": known + count, "lastTimestamp": now, "message": ev.message[:1024]},
            )
            self._remember(name, known + count)
            return
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": pe.namespace},
            "involvedObject": {
                "apiVersion": pe.api_version,
                "kind": pe.kind,
                "name": pe.name,
                "namespace": pe.namespace,
                "uid": pe.metadata.uid,
                "resourceVersion": pe.metadata.resource_version,
            },
            "reason": ev.reason.value,
            "message": ev.message[:1024],
            "type": ev.type,
            "count": count,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance[:128],
        }
        try:
            self.kube.create_object(event)
        except KubeConflictError:
            # Recorded already (a retried write whose first answer was lost, another worker): applied over.
            self.kube.apply(event)
        self._remember(name, count)

    def _remember(self, name: str, count: int) -> None:
        with self._lock:
            self._counts.pop(name, None)
            self._counts[name] = count
            while len(self._counts) > MAX_REMEMBERED:
                del self._counts[next(iter(self._counts))]


__all__ = ["COMPONENT", "EventRecorder", "RunEvent", "event_name", "status_events"]
