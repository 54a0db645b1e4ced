"""A Pipeline's triggers -> the Temporal Schedules it should have (pure: no client, unit-tested)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import RetryPolicy

from crds.messages import (
    SCHEDULED_RUN_WORKFLOW,
    SCM_POLL_WORKFLOW,
    ScheduledRunInput,
    ScmPollInput,
    cron_schedule_id,
    poll_schedule_id,
)
from crds.pipeline import Pipeline
from crds.reasons import OverlapPolicy

#: Ids of the Schedules this engine owns start with one of these (others are left alone).
ID_PREFIXES: Final = ("devops-cron/", "devops-poll/")
FINGERPRINT_MEMO: Final = "devopsFingerprint"

OVERLAP: Final = {
    OverlapPolicy.SKIP: ScheduleOverlapPolicy.SKIP,
    OverlapPolicy.BUFFER_ONE: ScheduleOverlapPolicy.BUFFER_ONE,
    OverlapPolicy.BUFFER_ALL: ScheduleOverlapPolicy.BUFFER_ALL,
    OverlapPolicy.CANCEL_OTHER: ScheduleOverlapPolicy.CANCEL_OTHER,
    OverlapPolicy.ALLOW_ALL: ScheduleOverlapPolicy.ALLOW_ALL,
}


@dataclass(frozen=True)
class DesiredSchedule:
    """One Schedule as the Pipeline asks for it; ``fingerprint`` changes exactly when it must be updated."""

    id: str
    schedule: Schedule
    fingerprint: str


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _start(
    workflow: str, arg: object, workflow_id: str, task_queue: str, summary: str, fingerprint: str
) -> ScheduleActionStartWorkflow:
    """A Schedule's action: one attempt of ``workflow`` (a failed firing waits for the next one)."""
    return ScheduleActionStartWorkflow(
        workflow,
        arg,
        id=workflow_id,
        task_queue=task_queue,
        retry_policy=RetryPolicy(maximum_attempts=1),
        static_summary=summary,
        memo={FINGERPRINT_MEMO: fingerprint},
    )


def desired_schedules(pipeline: Pipeline, task_queue: str) -> list[DesiredSchedule]:
    """The Schedules of ``pipeline``: one for ``triggers.cron``, one for ``triggers.pollScm``."""
    ns, name = pipeline.namespace, pipeline.name
    triggers = pipeline.spec.triggers
    out: list[DesiredSchedule] = []
    if triggers.cron is not None:
        cron = triggers.cron
        sid = cron_schedule_id(ns, name)
        branch = cron.branch or ""
        note = f"cron trigger of Pipeline {ns}/{name}" + (f" (branch {branch})" if branch else "")
        fp = _fingerprint("cron", cron.to_dict(), task_queue, pipeline.metadata.uid)
        out.append(
            DesiredSchedule(
                sid,
                Schedule(
                    action=_start(
                        SCHEDULED_RUN_WORKFLOW,
                        ScheduledRunInput(namespace=ns, pipeline=name, branch=branch),
                        f"{sid}/run",
                        task_queue,
                        f"scheduled run of {ns}/{name}",
                        fp,
                    ),
                    spec=ScheduleSpec(
                        cron_expressions=[cron.schedule], time_zone_name=cron.timezone or "UTC"
                    ),
                    policy=SchedulePolicy(
                        overlap=OVERLAP[cron.overlap],
                        catchup_window=timedelta(seconds=max(10, cron.catchup_window.seconds)),
                    ),
                    state=ScheduleState(note=note, paused=cron.paused),
                ),
                fp,
            )
        )
    if triggers.poll_scm is not None:
        poll = triggers.poll_scm
        sid = poll_schedule_id(ns, name)
        branch = poll.branch or ""
        fp = _fingerprint("poll", poll.to_dict(), task_queue, pipeline.metadata.uid)
        out.append(
            DesiredSchedule(
                sid,
                Schedule(
                    action=_start(
                        SCM_POLL_WORKFLOW,
                        ScmPollInput(namespace=ns, pipeline=name, branch=branch),
                        f"{sid}/poll",
                        task_queue,
                        f"SCM poll of {ns}/{name}",
                        fp,
                    ),
                    spec=ScheduleSpec(
                        intervals=[ScheduleIntervalSpec(every=timedelta(seconds=poll.interval.seconds))]
                    ),
                    policy=SchedulePolicy(
                        overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(minutes=1)
                    ),
                    state=ScheduleState(note=f"SCM polling of Pipeline {ns}/{name} every {poll.interval}"),
                ),
                fp,
            )
        )
    return out


def owned(schedule_id: str) -> bool:
    return schedule_id.startswith(ID_PREFIXES)


def pipeline_of(schedule_id: str) -> tuple[str, str] | None:
    """``(namespace, pipeline)`` of one of our Schedule ids."""
    for prefix in ID_PREFIXES:
        if schedule_id.startswith(prefix):
            ns, _, name = schedule_id[len(prefix) :].partition("/")
            return (ns, name) if ns and name else None
    return None


__all__ = [
    "FINGERPRINT_MEMO",
    "ID_PREFIXES",
    "OVERLAP",
    "DesiredSchedule",
    "desired_schedules",
    "owned",
    "pipeline_of",
]
