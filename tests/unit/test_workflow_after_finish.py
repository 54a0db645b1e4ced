"""The one call after a run's end (notifications, history limit), on the time-skipping test server."""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment
from workflow_harness import World, permanent, running, start

from crds.messages import Activity, ExecutionContext, ExecutionRef
from crds.pipeline_file import Notification, Recipient
from crds.reasons import ConditionStatus, ConditionType, ExecutionPhase

pytestmark = pytest.mark.unit


class NotifyingWorld(World):
    """A pipeline file whose notification names one recipient."""

    def context(self, ref: ExecutionRef) -> ExecutionContext:
        ctx = super().context(ref)
        ctx.config.notification = Notification(recipients=[Recipient(recipient="#ci", notifier="slack")])
        return ctx


async def test_the_after_finish_activity_runs_once_after_cleanup_and_the_terminal_status(
    time_env: WorkflowEnvironment,
) -> None:
    world = NotifyingWorld(quota=1)
    async with running(time_env, world) as queue:
        status = await (await start(time_env, queue)).result()
    assert status.phase == ExecutionPhase.SUCCESS
    names = [name for name, _ in world.calls]
    assert names.count(Activity.RUN_FINISHED) == 1
    last_write = len(names) - 1 - names[::-1].index(Activity.WRITE_STATUS)
    assert names.index(Activity.CLEANUP) < last_write < names.index(Activity.RUN_FINISHED)
    terminal = world.written()[-1]
    assert terminal.phase == ExecutionPhase.SUCCESS
    notified = terminal.condition(ConditionType.NOTIFIED)
    assert notified is not None and notified.status == ConditionStatus.UNKNOWN
    [call] = world.called(Activity.RUN_FINISHED)
    assert call.context.execution.name == "app-1"


async def test_a_run_without_notification_has_no_notified_condition_and_still_trims_its_history(
    time_env: WorkflowEnvironment,
) -> None:
    world = World()
    async with running(time_env, world) as queue:
        await (await start(time_env, queue)).result()
    assert world.written()[-1].condition(ConditionType.NOTIFIED) is None
    assert len(world.called(Activity.RUN_FINISHED)) == 1


async def test_an_after_finish_activity_that_fails_leaves_the_run_success(
    time_env: WorkflowEnvironment,
) -> None:
    world = NotifyingWorld()
    world.fail[Activity.RUN_FINISHED] = permanent("the apiserver refused")
    async with running(time_env, world) as queue:
        status = await (await start(time_env, queue)).result()
    assert status.phase == ExecutionPhase.SUCCESS
    assert world.written()[-1].phase == ExecutionPhase.SUCCESS
