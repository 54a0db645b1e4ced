"""Heartbeats and deadlines: a dead worker costs seconds, not the start-to-close timeout.

Temporal notices a worker that died mid-activity only when a heartbeat is missed (the heartbeat
timeout, seconds) or when the attempt's start-to-close timeout ends (minutes). So every activity that
can take longer than a few seconds heartbeats and is scheduled with a heartbeat timeout of seconds
(``workflows/options.py``).

Most activities are synchronous and block in HTTP calls (python-jenkins, the Kubernetes client,
minio), where they cannot heartbeat between calls. :func:`heartbeating` heartbeats from a side thread
while the activity runs: it proves that the worker process lives, which is what the heartbeat timeout
is for; a hung call is bounded by its own timeout and by the attempt's start-to-close timeout, from
which :func:`seconds_left` derives the inner waits' deadlines.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from temporalio import activity

P = ParamSpec("P")
R = TypeVar("R")

#: Heartbeat this often when the activity was scheduled without a heartbeat timeout.
DEFAULT_INTERVAL = 2.0
#: Leave this much of the attempt's start-to-close timeout to report an error (rather than be killed).
DEADLINE_MARGIN = 5.0


def heartbeat_interval(info: activity.Info) -> float:
    """A third of the heartbeat timeout (two beats may be lost before Temporal gives up on us)."""
    if info.heartbeat_timeout is None:
        return DEFAULT_INTERVAL
    return max(0.2, info.heartbeat_timeout.total_seconds() / 3)


def seconds_left(default: float, *, margin: float = DEADLINE_MARGIN) -> float:
    """``default``, or less when the attempt's start-to-close deadline comes sooner (at least 1 s).

    Outside an activity (a unit test calling the function directly) it is ``default``.
    """
    if not activity.in_activity():
        return default
    info = activity.info()
    if info.start_to_close_timeout is None:
        return default
    elapsed = (datetime.now(UTC) - info.started_time).total_seconds()
    left = info.start_to_close_timeout.total_seconds() - elapsed - margin
    return max(1.0, min(default, left))


def _beats() -> bool:
    """Inside a (non-local) activity. A local activity has no heartbeat: it lives in the workflow task,
    whose own timeout notices a dead worker, so the side thread would only cost CPU."""
    return activity.in_activity() and not activity.info().is_local


@contextmanager
def keep_alive() -> Iterator[None]:
    """Heartbeat from a side thread until the block ends (a no-op outside an activity, or a local one)."""
    if not _beats():
        yield
        return
    interval = heartbeat_interval(activity.info())
    stop = threading.Event()
    # The activity's context (which heartbeat() reads) is a context variable: take it to the thread.
    context = contextvars.copy_context()

    def beat() -> None:
        while not stop.wait(interval):
            context.run(activity.heartbeat)

    thread = threading.Thread(target=beat, name="activity-heartbeat", daemon=True)
    activity.heartbeat()
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


async def beating(awaitable: Awaitable[R], *details: object) -> R:
    """Await ``awaitable`` (an async activity's blocking call in a thread), heartbeating meanwhile."""
    task = asyncio.ensure_future(awaitable)
    if not _beats():
        return await task
    interval = heartbeat_interval(activity.info())
    while True:
        done, _ = await asyncio.wait({task}, timeout=interval)
        if done:
            return task.result()
        activity.heartbeat(*details)


def heartbeating(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a synchronous activity (under ``@activity.defn``) to heartbeat while it runs."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with keep_alive():
            return fn(*args, **kwargs)

    return wrapper


__all__ = ["beating", "heartbeat_interval", "heartbeating", "keep_alive", "seconds_left"]
