"""The worker supervisor replaces a Temporal worker the SDK gave up on, and drains the last one on stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from worker.supervise import WorkerSupervisor

pytestmark = pytest.mark.unit


class FakeWorker:
    """Runs until shut down, or fails at once with ``error`` (the SDK gave up polling)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.running = False
        self.shut_down = False
        self._stopped = asyncio.Event()

    @property
    def is_running(self) -> bool:
        return self.running

    async def run(self) -> None:
        self.running = True
        try:
            if self.error is not None:
                raise self.error
            await self._stopped.wait()
        finally:
            self.running = False

    async def shutdown(self) -> None:
        self.shut_down = True
        self._stopped.set()


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 -- plain attributes of the supervisor: nothing signals them
            await asyncio.sleep(0.01)


async def test_a_worker_that_failed_polling_is_replaced_and_the_new_one_is_drained_on_stop() -> None:
    made: list[FakeWorker] = [FakeWorker(RuntimeError("Poll failure: Unhandled grpc error when polling"))]
    made.append(FakeWorker())
    supply = iter(made)
    supervisor = WorkerSupervisor(lambda: next(supply), first_delay=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))

    await _until(lambda: supervisor.current is made[1] and supervisor.is_running)
    assert supervisor.replacements == 1
    assert not made[0].shut_down  # it had already ended by itself

    stop.set()
    await task
    assert supervisor.is_running  # run() leaves the worker polling until the caller drains it
    assert await supervisor.shutdown() is None
    assert made[1].shut_down and not supervisor.is_running


async def test_between_a_failed_worker_and_its_replacement_the_supervisor_reports_not_running() -> None:
    failing = FakeWorker(RuntimeError("Poll failure"))
    supervisor = WorkerSupervisor(lambda: failing, first_delay=30.0)
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))

    await _until(lambda: supervisor.current is None)  # failed, now waiting out the backoff
    assert not supervisor.is_running
    stop.set()  # a stop during the backoff ends it at once, not after 30 s
    async with asyncio.timeout(2):
        await task
    assert supervisor.replacements == 0 and await supervisor.shutdown() is None


async def test_the_backoff_doubles_between_failures_up_to_its_maximum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    supervisor = WorkerSupervisor(
        lambda: FakeWorker(RuntimeError("Poll failure")), first_delay=0.01, max_delay=0.04
    )
    waits: list[float] = []
    real_wait_for = asyncio.wait_for

    async def recording_wait_for(awaitable: Any, seconds: float) -> Any:
        waits.append(seconds)
        return await real_wait_for(awaitable, seconds)

    monkeypatch.setattr(asyncio, "wait_for", recording_wait_for)
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    await _until(lambda: supervisor.replacements >= 5)
    stop.set()
    await task
    assert waits[:5] == [0.01, 0.02, 0.04, 0.04, 0.04]


async def test_a_worker_that_cannot_be_built_ends_the_supervisor_with_that_error() -> None:
    def broken() -> FakeWorker:
        raise TypeError("workflow sandbox rejected PipelineExecutionWorkflow")

    supervisor: WorkerSupervisor[FakeWorker] = WorkerSupervisor(broken)
    with pytest.raises(TypeError, match="sandbox"):
        await supervisor.run(asyncio.Event())
