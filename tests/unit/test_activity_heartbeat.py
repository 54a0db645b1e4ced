"""Heartbeats and deadlines of activities (defect: a dead worker cost minutes), in Temporal's
ActivityEnvironment (no server)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.heartbeat import beating, heartbeating, seconds_left

pytestmark = pytest.mark.unit


def environment(**info: Any) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, **info)
    return env


def test_a_synchronous_activity_heartbeats_while_it_blocks_in_a_call() -> None:
    env = environment(heartbeat_timeout=timedelta(seconds=0.3))
    beats: list[tuple[Any, ...]] = []
    enough = threading.Event()

    def on_heartbeat(*details: Any) -> None:
        beats.append(details)
        if len(beats) >= 3:
            enough.set()

    env.on_heartbeat = on_heartbeat

    @heartbeating
    def blocking_call() -> str:
        # Blocks like an HTTP call would, until the side thread has heartbeaten a few times.
        assert enough.wait(30), "no heartbeats while the activity blocked"
        return "done"

    assert env.run(blocking_call) == "done"
    assert len(beats) >= 3


def test_a_heartbeating_activity_keeps_its_name_and_types_for_registration() -> None:
    @activity.defn(name="devops.example")
    @heartbeating
    def example(inp: int) -> str:
        return str(inp)

    assert example.__name__ == "example" and example(4) == "4"
    assert activity._Definition.must_from_callable(example).arg_types == [int]


def test_an_inner_wait_ends_before_the_attempts_start_to_close_deadline() -> None:
    started = datetime.now(UTC) - timedelta(seconds=50)
    env = environment(start_to_close_timeout=timedelta(seconds=60), started_time=started)
    left = env.run(seconds_left, 120.0)
    assert 1.0 <= left <= 5.0
    assert environment(start_to_close_timeout=None).run(seconds_left, 120.0) == 120.0
    assert seconds_left(120.0) == 120.0  # outside an activity


async def test_an_async_activity_heartbeats_while_it_awaits_a_blocking_call_in_a_thread() -> None:
    env = environment(heartbeat_timeout=timedelta(seconds=0.3))
    beats: list[tuple[Any, ...]] = []
    enough = threading.Event()

    def on_heartbeat(*details: Any) -> None:
        beats.append(details)
        if len(beats) >= 3:
            enough.set()

    env.on_heartbeat = on_heartbeat

    async def follow_like() -> bool:
        return await beating(asyncio.to_thread(enough.wait, 30), {"describing": True})

    assert await env.run(follow_like)
    assert beats[0] == ({"describing": True},)
