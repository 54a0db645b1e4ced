"""The per-recipient delivery record of a run (``status.notifications[]``): pure state transitions.

Guarantee: a record is ``Sending`` in the CR *before* its message leaves and ``Sent``/``Retrying``/
``Failed`` after; a notifier's answer is never acted on twice. A record found ``Sending`` when the
activity starts (the worker stopped while the message was in flight) becomes ``Unknown`` and is not
sent again: at most once in that window (a few seconds per message), exactly once everywhere else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from crds.execution import NotificationRecord
from crds.notifiers import Notifier
from crds.pipeline_file import Recipient
from crds.reasons import ConditionStatus, NotificationState, Reason

FIRST_RETRY_SECONDS: Final = 1.0
MAX_RETRY_SECONDS: Final = 30.0
INTERRUPTED: Final = "the worker stopped while this was being sent; not sent again to avoid a duplicate"


def record_id(execution_uid: str, notifier: str, recipient: str) -> str:
    """Stable per run and recipient (CloudEvent ``id``, e-mail ``Message-ID``)."""
    digest = hashlib.sha256(f"{execution_uid}\0{notifier}\0{recipient}".encode()).hexdigest()[:24]
    return f"{execution_uid or 'run'}-{digest}"


def plan(
    execution_uid: str, recipients: Sequence[Recipient], notifiers: Sequence[Notifier]
) -> list[NotificationRecord]:
    """One Pending record per recipient; a recipient naming no known notifier is Failed at once."""
    by_name = {n.name: n for n in notifiers}
    records = []
    for r in recipients:
        notifier = by_name.get(r.notifier)
        rec = NotificationRecord(
            notifier=r.notifier,
            recipient=r.recipient,
            kind=notifier.kind.value if notifier else "unknown",
            id=record_id(execution_uid, r.notifier, r.recipient),
        )
        if notifier is None:
            rec.state = NotificationState.FAILED
            rec.message = f"no notifier {r.notifier!r} in the PipelineSetting's spec.notifiers"
        records.append(rec)
    return records


def resume(records: Sequence[NotificationRecord]) -> list[NotificationRecord]:
    """Records as a restarted activity must treat them: an interrupted send becomes Unknown."""
    out = []
    for rec in records:
        rec = rec.model_copy()
        if rec.state == NotificationState.SENDING:
            rec.state = NotificationState.UNKNOWN
            rec.message = INTERRUPTED
        out.append(rec)
    return out


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: 1, 2, 4, ... up to 30."""
    return min(FIRST_RETRY_SECONDS * float(2 ** max(attempts - 1, 0)), MAX_RETRY_SECONDS)


def due(rec: NotificationRecord, now: datetime) -> bool:
    """Whether an unsettled record should be attempted now."""
    if rec.state == NotificationState.PENDING or rec.last_attempt is None:
        return True
    return now >= rec.last_attempt + timedelta(seconds=retry_delay(rec.attempts))


def next_due(records: Sequence[NotificationRecord]) -> datetime | None:
    """When the earliest Retrying record is due again (None when none waits)."""
    times = [
        r.last_attempt + timedelta(seconds=retry_delay(r.attempts))
        for r in records
        if r.state == NotificationState.RETRYING and r.last_attempt is not None
    ]
    return min(times) if times else None


def give_up(rec: NotificationRecord, now: datetime, deadline: datetime) -> bool:
    """A Retrying record whose next attempt would start after the deadline is Failed instead."""
    return rec.state == NotificationState.RETRYING and now >= deadline


def summary(records: Sequence[NotificationRecord]) -> tuple[ConditionStatus, str, str]:
    """The ``Notified`` condition for these records: (status, reason, message)."""
    if not records:
        return ConditionStatus.TRUE, Reason.NO_NOTIFICATIONS, "no recipient's condition was met"
    if not all(NotificationState(r.state).is_settled for r in records):
        pending = sum(not NotificationState(r.state).is_settled for r in records)
        return ConditionStatus.UNKNOWN, Reason.NOTIFYING, f"sending to {pending} of {len(records)} recipients"
    bad = [r for r in records if r.state != NotificationState.SENT]
    if not bad:
        return ConditionStatus.TRUE, Reason.NOTIFICATIONS_SENT, f"sent to {len(records)} recipients"
    names = ", ".join(f"{r.notifier}:{r.recipient} ({r.state})" for r in bad)
    return ConditionStatus.FALSE, Reason.NOTIFICATIONS_FAILED, f"not delivered: {names}"


__all__ = [
    "INTERRUPTED",
    "due",
    "give_up",
    "next_due",
    "plan",
    "record_id",
    "resume",
    "retry_delay",
    "summary",
]
