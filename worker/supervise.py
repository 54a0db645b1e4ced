"""The Temporal worker, kept running through Temporal outages of any length.

The SDK retries a failing poll for about a minute and then fails the worker: ``Worker.run()`` raises
(``Poll failure: ...``) and that worker never polls again. A Temporal restart that takes longer, a
frontend behind a reloading proxy, a namespace briefly unavailable: each would otherwise end the
process, or worse leave it alive with nobody polling. :class:`WorkerSupervisor` makes a new worker on the
same client after a backoff instead, and reports not-running (``/readyz`` 503) in between.

A worker that cannot even be constructed (a workflow the sandbox rejects, an activity registered twice)
is a defect of this build, not an outage: that error ends the supervisor, and the process exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

logger = logging.getLogger("worker")


class RunnableWorker(Protocol):
    """What the supervisor needs of :class:`temporalio.worker.Worker`."""

    @property
    def is_running(self) -> bool: ...

    async def run(self) -> None: ...

    async def shutdown(self) -> None: ...


W = TypeVar("W", bound=RunnableWorker)


class WorkerSupervisor(Generic[W]):
    """Runs workers made by ``make`` one at a time: a worker that fails is replaced after a backoff.

    ``run(stop)`` returns once ``stop`` is set and leaves the current worker polling, so that the caller
    can stop what depends on it first; ``shutdown()`` then drains it.
    """

    def __init__(
        self,
        make: Callable[[], W],
        *,
        first_delay: float = 1.0,
        max_delay: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        self._make = make
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._healthy_after = healthy_after  # a worker that ran this long resets the backoff
        self.current: W | None = None
        self._task: asyncio.Task[None] | None = None
        self.replacements = 0

    @property
    def is_running(self) -> bool:
        return self.current is not None and self.current.is_running

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        delay = self._first_delay
        while not stop.is_set():
            self.current = self._make()
            self._task = asyncio.create_task(self.current.run(), name="temporal-worker")
            started = loop.time()
            stop_wait = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({self._task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_wait.cancel()
            if not self._task.done():
                return  # stopping: shutdown() drains this worker
            error = None if self._task.cancelled() else self._task.exception()
            self.current, self._task = None, None
            if stop.is_set():
                return
            if loop.time() - started >= self._healthy_after:
                delay = self._first_delay
            logger.error(
                "the Temporal worker stopped (%s); a new one starts in %.0fs",
                error or "without an error",
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, self._max_delay)
            self.replacements += 1

    async def shutdown(self) -> BaseException | None:
        """Drain the current worker (running activities get its graceful-shutdown time); its error, if any."""
        worker, task = self.current, self._task
        if worker is None or task is None:
            return None
        await worker.shutdown()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None if task.cancelled() else task.exception()
