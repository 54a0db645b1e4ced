"""How each activity is scheduled: timeouts, heartbeats and retries, in one table.

Transient faults are retried with backoff, without a limit on attempts; each activity has a
schedule-to-close deadline instead. Permanent ones arrive as non-retryable ApplicationErrors.

Every activity that can take more than a few seconds heartbeats (``activities/heartbeat.py``) and is
scheduled with a heartbeat timeout of seconds: after a worker dies, Temporal retries it elsewhere
within that timeout instead of waiting for the start-to-close timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

from crds.messages import Activity

RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)
#: A worker that died is noticed within this long (the activities heartbeat every third of it).
HEARTBEAT = timedelta(seconds=10)
#: The shortest schedule-to-close deadline: the time transient faults may take to go away.
MIN_SCHEDULE_TO_CLOSE = timedelta(minutes=30)


@dataclass(frozen=True)
class Options:
    start_to_close: timedelta
    heartbeat: timedelta | None = HEARTBEAT

    @property
    def schedule_to_close(self) -> timedelta:
        return max(self.start_to_close * 10, MIN_SCHEDULE_TO_CLOSE)


OPTIONS: dict[Activity, Options] = {
    Activity.LOAD_EXECUTION: Options(timedelta(minutes=2)),
    Activity.WRITE_STATUS: Options(timedelta(minutes=1)),
    Activity.UPDATE_PIPELINE: Options(timedelta(minutes=1)),
    # Deployments may take minutes to become available; the activity waits for them itself.
    Activity.BOOTSTRAP_NAMESPACE: Options(timedelta(minutes=15)),
    Activity.RECONCILE_ROLEBINDINGS: Options(timedelta(minutes=2)),
    Activity.JENKINS_PREPARE: Options(timedelta(minutes=2)),
    Activity.JENKINS_TRIGGER: Options(timedelta(minutes=3)),
    # The follow activity heartbeats every poll; its timeout is set per call (``follow_heartbeat``).
    Activity.JENKINS_FOLLOW: Options(timedelta(hours=24)),
    Activity.JENKINS_FOLLOW_THROUGH: Options(timedelta(hours=24)),
    # Memory only; it may wait a few seconds for another run that verifies the same namespace.
    Activity.NAMESPACE_VERIFIED: Options(timedelta(seconds=10), heartbeat=None),
    Activity.JENKINS_GATE: Options(timedelta(minutes=2)),
    Activity.JENKINS_STOP: Options(timedelta(minutes=2)),
    Activity.JENKINS_CONSOLE_TAIL: Options(timedelta(minutes=1)),
    Activity.STORE_STEP_LOG: Options(timedelta(minutes=5)),
    Activity.CLEANUP: Options(timedelta(minutes=5)),
    # After the end: notifications are retried for the setting's retryTimeout (``run_finished``).
    Activity.RUN_FINISHED: Options(timedelta(minutes=5)),
    # The Pipeline's status, the terminal status and the history limit (no notifications: no waits).
    Activity.FINISH: Options(timedelta(minutes=5)),
    # The daily log retention sweep (workflows/retention.py): one pass over every project.
    Activity.SWEEP_LOGS: Options(timedelta(hours=2), heartbeat=timedelta(minutes=2)),
    # One Temporal RPC each: nothing to heartbeat.
    Activity.QUOTA_ACQUIRE: Options(timedelta(minutes=1), heartbeat=None),
    Activity.QUOTA_GONE_HOLDERS: Options(timedelta(minutes=1), heartbeat=None),
}


#: Run as local activities by runs that start with the ``coarse-run`` change (workflows/execution.py): a
#: local activity costs one history event (its marker) instead of six (scheduled, started, completed and
#: the workflow task that follows), and no round trip through the Temporal server. Only short calls
#: qualify, each idempotent (a local activity whose workflow task is lost is run again): the reads, the
#: status writes, the Jenkins job's setup and trigger (which finds a build it started already), gates,
#: cleanup. Long or big ones stay activities with heartbeats: the bootstrap (it waits for Deployments),
#: following the build, storing a step's log, stopping a build, notifications.
LOCAL: frozenset[Activity] = frozenset(
    {
        Activity.LOAD_EXECUTION,
        Activity.WRITE_STATUS,
        Activity.UPDATE_PIPELINE,
        Activity.NAMESPACE_VERIFIED,
        Activity.RECONCILE_ROLEBINDINGS,
        Activity.JENKINS_PREPARE,
        Activity.JENKINS_TRIGGER,
        Activity.JENKINS_GATE,
        Activity.JENKINS_CONSOLE_TAIL,
        Activity.CLEANUP,
        Activity.QUOTA_ACQUIRE,
        Activity.FINISH,
    }
)


def follow_heartbeat(poll_interval_seconds: float) -> timedelta:
    """The follow activity heartbeats once per poll: allow a few polls, and at least ``HEARTBEAT``."""
    return max(HEARTBEAT, timedelta(seconds=poll_interval_seconds * 5))


def run_finished(retry_timeout: timedelta) -> Options:
    """The after-finish activity retries notifiers itself for ``retry_timeout``, plus the base time."""
    base = OPTIONS[Activity.RUN_FINISHED]
    return Options(base.start_to_close + retry_timeout, heartbeat=base.heartbeat)


__all__ = ["HEARTBEAT", "LOCAL", "OPTIONS", "RETRY", "Options", "follow_heartbeat", "run_finished"]
