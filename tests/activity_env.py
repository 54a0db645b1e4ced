"""An ``ActivityEnvironment`` whose attempt has the deadline a worker would give it.

The SDK's default info says the attempt started at the epoch with a 1 s start-to-close timeout, so
every wait an activity bounds by its deadline (``activities.heartbeat.seconds_left``) is cut to its
1 s minimum: a Deployment the bootstrap waits for then has to be ready within 1 s, which a loaded
machine misses.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from temporalio.testing import ActivityEnvironment


def activity_environment(start_to_close: timedelta = timedelta(minutes=15)) -> ActivityEnvironment:
    """An environment whose attempt starts now, with ``start_to_close`` (the bootstrap's: 15 min)."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, started_time=datetime.now(UTC), start_to_close_timeout=start_to_close
    )
    return env
