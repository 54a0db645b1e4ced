"""The PipelineSetting's projectLabel reaches both activities that select the project's namespaces."""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment
from workflow_harness import World, running, start

from crds.messages import Activity, ExecutionContext, ExecutionRef
from crds.reasons import ExecutionPhase

pytestmark = pytest.mark.unit


class TeamLabelWorld(World):
    """A project whose namespaces are found by the label ``team.example/project``."""

    def context(self, ref: ExecutionRef) -> ExecutionContext:
        ctx = super().context(ref)
        ctx.setting.project_label = "team.example/project"
        return ctx


async def test_the_bootstrap_and_the_rolebinding_reconcile_select_namespaces_by_the_settings_label(
    time_env: WorkflowEnvironment,
) -> None:
    world = TeamLabelWorld()
    async with running(time_env, world) as queue:
        status = await (await start(time_env, queue)).result()
    assert status.phase == ExecutionPhase.SUCCESS
    [boot] = world.called(Activity.BOOTSTRAP_NAMESPACE)
    [rb] = world.called(Activity.RECONCILE_ROLEBINDINGS)
    assert boot.project_label == "team.example/project"
    assert rb.project_label == "team.example/project"
