"""The follow activity's status writes while a build runs: at most one per poll interval, and when every
stage has ended (the build's end is moments away, and its write carries the last stage too) the write is
held for up to a poll interval. Jenkins is replaced by scripted snapshots and the CR by a recorder (the
loop is the unit)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment
from workflow_harness import World, snapshot, step

from activities.build import BuildActivities, ServiceDefaults
from crds import build_status
from crds.execution import PipelineExecutionStatus
from crds.messages import (
    BuildRef,
    BuildSnapshot,
    ExecutionRef,
    FollowResult,
    FollowThroughInput,
    JenkinsTarget,
    StoredLog,
    WriteStatusInput,
    WriteStatusResult,
)
from crds.reasons import ExecutionPhase, StageState
from workflows import progress

pytestmark = pytest.mark.unit

POLL = 0.3


class Recorder:
    """Stands for the CR: each status the follow writes, in order."""

    def __init__(self) -> None:
        self.written: list[PipelineExecutionStatus] = []

    def write(self, inp: WriteStatusInput) -> WriteStatusResult:
        self.written.append(inp.status.model_copy(deep=True))
        return WriteStatusResult(written=True)


def _follow(script: list[BuildSnapshot]) -> tuple[FollowResult, Recorder]:
    """Run follow_through over ``script``, one snapshot per look."""
    ref = ExecutionRef(namespace="proj", name="app-1", uid=uuid.uuid4().hex)
    ctx = World().context(ref)
    status = PipelineExecutionStatus(phase=ExecutionPhase.BUILDING, message="Building")
    progress.init_stages(status, ctx.config, ctx.branch, ctx.event)
    recorder = Recorder()
    acts = BuildActivities(kube=None, defaults=ServiceDefaults(), statuses=recorder)  # type: ignore[arg-type]
    snaps: Iterator[BuildSnapshot] = iter(script)

    async def observe(*_: Any) -> BuildSnapshot:
        return next(snaps).model_copy(deep=True)

    def store_log(target: JenkinsTarget, build: BuildRef, key: Any, node_id: str | None) -> StoredLog:
        return StoredLog(stage=key.stage, step=key.step, object_name=f"logs/{key.stage}/{key.step}.log")

    acts._observe = observe  # type: ignore[method-assign]
    acts._store_log = store_log  # type: ignore[method-assign]
    acts.engine = lambda ctx: None  # type: ignore[assignment,method-assign,return-value]
    inp = FollowThroughInput(
        target=JenkinsTarget(context=ctx, job="proj-app-1"),
        build=BuildRef(job="proj-app-1", number=1),
        execution=ref,
        status=status,
        poll_interval_seconds=POLL,
    )
    result: FollowResult = asyncio.run(ActivityEnvironment().run(acts.follow_through, inp))
    return result, recorder


def _stages(status: PipelineExecutionStatus) -> list[StageState]:
    return [StageState(s.state) for s in status.stages]


ALL_ENDED = snapshot(step(0, 0, "Success"), step(1, 0, "Success"), step(2, 0, "Success"))
ENDED = snapshot(step(0, 0, "Success"), step(1, 0, "Success"), step(2, 0, "Success"), result="SUCCESS")


def test_a_write_whose_stages_have_all_ended_is_left_to_the_end_that_follows_within_the_interval() -> None:
    result, recorder = _follow([snapshot(step(0, 0, "Building")), ALL_ENDED, ALL_ENDED, ENDED])
    assert [_stages(w) for w in recorder.written] == [
        [StageState.BUILDING, StageState.WAITING, StageState.WAITING]
    ], "the first look is written, the stages that all ended are not: the end carries them"
    assert not result.snapshot.building and build_status.every_stage_ended(result.status)


def test_a_build_that_hangs_on_after_its_stages_shows_them_ended_after_a_poll_interval() -> None:
    # Polls start 50 ms apart and double: twenty looks at a build still running last well over POLL.
    result, recorder = _follow([snapshot(step(0, 0, "Building")), *[ALL_ENDED] * 20, ENDED])
    assert len(recorder.written) == 2
    assert _stages(recorder.written[1]) == [StageState.SUCCESS] * 3
    assert recorder.written[1].phase == ExecutionPhase.BUILDING, "written while the build still ran"
    assert not result.snapshot.building


def test_changes_within_a_poll_interval_of_the_last_write_reach_the_cr_in_one_write() -> None:
    first = snapshot(step(0, 0, "Building"))
    clone_done = snapshot(step(0, 0, "Success"))
    next_runs = snapshot(step(0, 0, "Success"), step(1, 0, "Building"))
    # Looks 50, 100, 200, 300 ms apart: both changes come within POLL of the first write, then the build
    # runs on long enough for the gap to pass.
    _, recorder = _follow([first, clone_done, next_runs, *[next_runs] * 10, ENDED])
    assert [_stages(w) for w in recorder.written] == [
        [StageState.BUILDING, StageState.WAITING, StageState.WAITING],
        [StageState.SUCCESS, StageState.BUILDING, StageState.WAITING],
    ], "the clone's end and the next stage's start in one write, a poll interval after the first"


def test_a_change_just_before_the_end_is_left_to_the_end() -> None:
    middle = snapshot(step(0, 0, "Success"), step(1, 0, "Building"))
    _, recorder = _follow([snapshot(step(0, 0, "Building")), middle, ENDED])
    assert len(recorder.written) == 1, "within the interval of the first write, the end came first"
