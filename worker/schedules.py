"""Temporal Schedules this product owns; created at worker start-up, idempotently (any replica may)."""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from crds.messages import LOG_RETENTION_SCHEDULE, LOG_RETENTION_WORKFLOW, LogRetentionInput

logger = logging.getLogger(__name__)

LOG_RETENTION_CRON = "30 3 * * *"
"""Every day at 03:30 UTC."""


def log_retention_schedule(task_queue: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            LOG_RETENTION_WORKFLOW,
            LogRetentionInput(),
            id=f"{LOG_RETENTION_SCHEDULE}-run",
            task_queue=task_queue,
            execution_timeout=timedelta(hours=12),
            static_summary="delete step logs older than each project's logRetentionDays",
        ),
        spec=ScheduleSpec(cron_expressions=[LOG_RETENTION_CRON], jitter=timedelta(minutes=10)),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
    )


async def ensure_log_retention_schedule(client: Client, task_queue: str) -> bool:
    """Create the daily retention Schedule unless it exists; True when this call created it."""
    try:
        await client.create_schedule(LOG_RETENTION_SCHEDULE, log_retention_schedule(task_queue))
    except ScheduleAlreadyRunningError:
        return False
    logger.info("created the Temporal Schedule %s (%s UTC)", LOG_RETENTION_SCHEDULE, LOG_RETENTION_CRON)
    return True


__all__ = ["LOG_RETENTION_CRON", "ensure_log_retention_schedule", "log_retention_schedule"]
