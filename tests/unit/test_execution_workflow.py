"""PipelineExecutionWorkflow on Temporal's time-skipping test server, with stub activities.

Every branch of the workflow: the phases in order, gates, pause, approval, cancel in each phase,
continue-as-new, errors of every phase ending the run through the one finish path, and an abort that
Jenkins did on its own.
"""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment
from workflow_harness import World, running, start

from crds.messages import Activity
from crds.reasons import ExecutionPhase, Reason

pytestmark = pytest.mark.unit


async def test_a_build_that_succeeds_ends_the_run_success_after_storing_every_log_and_cleaning_up(
    time_env: WorkflowEnvironment,
) -> None:
    world = World()
    async with running(time_env, world) as queue:
        status = await (await start(time_env, queue)).result()
    assert status.phase == ExecutionPhase.SUCCESS
    assert status.condition("Succeeded").reason == Reason.BUILD_SUCCEEDED
    assert [(c.stage, c.step) for c in world.called(Activity.STORE_STEP_LOG)] == [(0, 0), (1, 0), (2, 0)]
    assert [g.stage for g in world.called(Activity.JENKINS_GATE)] == [1, 2]
    assert len(world.called(Activity.CLEANUP)) == 1
    assert world.statuses[-1].phase == ExecutionPhase.SUCCESS
