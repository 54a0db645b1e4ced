"""Who is told about a finished run: the pipeline file's ``notification`` against the run's outcome.

Pure functions (unit-tested): ``Changed`` compares the run's phase with the previous *finished* run of the
same pipeline (by run number); a pipeline's first finished run has nothing to differ from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from crds.execution import RunSummary
from crds.pipeline_file import Notification, Recipient
from crds.reasons import ExecutionPhase, NotificationCondition

DEFAULT_CONDITIONS: Final = (NotificationCondition.FAILED, NotificationCondition.CHANGED)
"""What a notification without ``condition`` reacts to: what CI users usually want to hear about."""

_OUTCOME: Final = {
    ExecutionPhase.SUCCESS: NotificationCondition.SUCCESS,
    ExecutionPhase.FAILED: NotificationCondition.FAILED,
    ExecutionPhase.ABORTED: NotificationCondition.ABORTED,
    ExecutionPhase.DENIED: NotificationCondition.ABORTED,
}


def conditions_met(
    phase: ExecutionPhase, previous: ExecutionPhase | None
) -> frozenset[NotificationCondition]:
    """The conditions a run that ended ``phase`` satisfies, after a previous finished run ``previous``."""
    met = {_OUTCOME[phase]} if phase in _OUTCOME else set()
    if previous is not None and previous != phase:
        met.add(NotificationCondition.CHANGED)
    return frozenset(met)


def recipients_to_notify(
    notification: Notification | None, phase: ExecutionPhase, previous: ExecutionPhase | None
) -> list[Recipient]:
    """The recipients whose condition (their own, else the notification's, else the default) is met.

    A recipient listed twice (same notifier and address) is told once.
    """
    if notification is None:
        return []
    met = conditions_met(phase, previous)
    chosen: list[Recipient] = []
    seen: set[tuple[str, str]] = set()
    for r in notification.recipients:
        wanted = r.condition or notification.condition or DEFAULT_CONDITIONS
        key = (r.notifier, r.recipient)
        if key not in seen and met.intersection(wanted):
            seen.add(key)
            chosen.append(r)
    return chosen


def previous_finished_phase(executions: Iterable[RunSummary], run: int) -> ExecutionPhase | None:
    """The phase of the newest finished run numbered below ``run`` (None when there is none)."""
    best: RunSummary | None = None
    for r in executions:
        if r.run < run and r.is_finished and (best is None or r.run > best.run):
            best = r
    return best.phase if best is not None else None


__all__ = ["DEFAULT_CONDITIONS", "conditions_met", "previous_finished_phase", "recipients_to_notify"]
