"""ExecutorQuotaWorkflow with execution workflows on the time-skipping test server (stub activities,
the real quota activities): the order of the line across pipelines, queue positions, a cancel while
queued, a holder that was terminated, and the slot given back however a run ends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from workflow_harness import World, eventually, permanent, running, start

from crds.execution import PipelineExecutionStatus
from crds.messages import Activity, ControlInput, Query, QuotaState, Signal, quota_workflow_id
from crds.reasons import ExecutionPhase, Reason

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def quota(env: WorkflowEnvironment, namespace: str) -> QuotaState:
    handle = env.client.get_workflow_handle(quota_workflow_id(namespace))
    return await handle.query(Query.QUOTA, result_type=QuotaState)


async def waiting(env: WorkflowEnvironment, namespace: str) -> list[str]:
    try:
        return [w.workflow_id for w in (await quota(env, namespace)).waiting]
    except Exception:  # the quota workflow is not started yet
        return []


def triggered(world: World) -> list[str]:
    return world.started


async def test_the_line_is_ordered_by_arrival_in_the_project_not_by_each_pipelines_run_number(
    time_env: WorkflowEnvironment,
) -> None:
    ns = f"proj-{uuid.uuid4().hex[:8]}"
    world = World(
        quota=1,
        builds={"hold-1": []},  # holds the only slot until cancelled
        created_at={
            "hold-1": T0 - timedelta(minutes=1),
            "a-40": T0,
            "a-41": T0 + timedelta(seconds=1),
            "b-1": T0 + timedelta(seconds=2),
        },
    )
    async with running(time_env, world) as queue:
        holder = await start(time_env, queue, name="hold-1", namespace=ns)
        await eventually(lambda: "hold-1" in world.idle, "the first run holds the slot and builds")
        runs: dict[str, WorkflowHandle[Any, PipelineExecutionStatus]] = {}
        # They reach the quota in the opposite order of their creation: b-1 first, a-40 last.
        for name in ("b-1", "a-41", "a-40"):
            runs[name] = await start(time_env, queue, name=name, namespace=ns)
            await eventually(lambda h=runs[name]: _in_line(time_env, ns, h.id), f"{name} waits for the slot")
        assert await waiting(time_env, ns) == [runs[n].id for n in ("a-40", "a-41", "b-1")]
        await eventually(
            lambda: any(s.message == "Waiting for an executor slot (2 ahead)" for s in world.written("b-1")),
            "b-1 shows two runs ahead",
        )
        await holder.signal(Signal.CANCEL, ControlInput(reason="make room"))
        results = [await runs[n].result() for n in ("a-40", "a-41", "b-1")]
        state = await quota(time_env, ns)
    assert [r.phase for r in results] == [ExecutionPhase.SUCCESS] * 3
    assert triggered(world) == ["hold-1", "a-40", "a-41", "b-1"]
    assert state.holders == [] and state.waiting == []


async def _in_line(env: WorkflowEnvironment, namespace: str, workflow_id: str) -> bool:
    return workflow_id in await waiting(env, namespace)


async def test_a_run_cancelled_while_queued_leaves_the_line_ends_aborted_and_builds_nothing(
    time_env: WorkflowEnvironment,
) -> None:
    ns = f"proj-{uuid.uuid4().hex[:8]}"
    world = World(quota=1, builds={"hold-1": []})
    async with running(time_env, world) as queue:
        holder = await start(time_env, queue, name="hold-1", namespace=ns)
        await eventually(lambda: "hold-1" in world.idle, "the first run holds the slot")
        queued = await start(time_env, queue, name="app-2", namespace=ns)
        await eventually(lambda: _in_line(time_env, ns, queued.id), "the second run waits")
        await queued.signal(Signal.CANCEL, ControlInput(reason="not needed"))
        status = await queued.result()
        assert await waiting(time_env, ns) == []
        await holder.signal(Signal.CANCEL, ControlInput())
        await holder.result()
    assert status.phase == ExecutionPhase.ABORTED and status.message == "Aborted: not needed"
    assert triggered(world) == ["hold-1"]
    assert [w.phase for w in world.written("app-2")][-2:] == [ExecutionPhase.QUEUEING, ExecutionPhase.ABORTED]


async def test_the_slot_of_a_terminated_holder_is_freed_and_the_next_run_goes_on(
    time_env: WorkflowEnvironment,
) -> None:
    ns = f"proj-{uuid.uuid4().hex[:8]}"
    world = World(quota=1, builds={"hold-1": []})
    async with running(time_env, world) as queue:
        holder = await start(time_env, queue, name="hold-1", namespace=ns)
        await eventually(lambda: "hold-1" in world.idle, "the first run holds the slot")
        queued = await start(time_env, queue, name="app-2", namespace=ns)
        await eventually(lambda: _in_line(time_env, ns, queued.id), "the second run waits")
        await holder.terminate(reason="operator")  # ends without giving the slot back
        status = await queued.result()  # time skips to the quota's check of its holders
    assert status.phase == ExecutionPhase.SUCCESS
    assert triggered(world) == ["hold-1", "app-2"]


async def test_a_run_that_fails_with_a_permanent_store_log_error_gives_its_slot_back_and_cleans_up(
    time_env: WorkflowEnvironment,
) -> None:
    ns = f"proj-{uuid.uuid4().hex[:8]}"
    broken = permanent("AccessDenied: the object store refused the upload")
    world = World(quota=1, fail={Activity.STORE_STEP_LOG: broken}, fail_on_call={Activity.STORE_STEP_LOG: 1})
    async with running(time_env, world) as queue:
        first = await start(time_env, queue, name="app-1", namespace=ns)
        await eventually(lambda: triggered(world) == ["app-1"], "the first run holds the slot")
        second = await start(time_env, queue, name="app-2", namespace=ns)
        failed, succeeded = await first.result(), await second.result()
        state = await quota(time_env, ns)
    assert failed.phase == ExecutionPhase.FAILED and failed.message == broken.message
    cond = failed.condition("Built")
    assert cond is not None and cond.reason == Reason.BUILD_FAILED
    assert succeeded.phase == ExecutionPhase.SUCCESS
    assert [c.target.context.execution.name for c in world.called(Activity.CLEANUP)] == ["app-1", "app-2"]
    assert state.holders == [] and state.waiting == []
