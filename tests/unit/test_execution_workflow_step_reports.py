"""PipelineExecutionWorkflow (time-skipping test server, stub activities): what stored step logs report
reaches the status, and the bootstrap gets everything the PipelineSetting asks of the pipeline namespace."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from temporalio.testing import WorkflowEnvironment
from workflow_harness import World, running, start

from crds.execution import PublishedImage
from crds.messages import (
    Activity,
    BootstrapInput,
    ExecutionContext,
    ExecutionRef,
    StepReport,
)
from crds.reasons import ExecutionPhase
from crds.setting import PipelineSettingSpec

pytestmark = pytest.mark.unit

IMAGE = PublishedImage(repository="reg:5000/demo/app", tag="run-1", digest="sha256:" + "c" * 64)


@dataclass
class ReportingWorld(World):
    """Stage 1's step pushed an image; the project asks for a quota and persistent volumes."""

    def context(self, ref: ExecutionRef) -> ExecutionContext:
        ctx = super().context(ref)
        setting = PipelineSettingSpec.model_validate(
            {
                **ctx.setting.to_dict(),
                "resourceQuota": {"requestsCpu": "4", "pods": 10},
                "executorResources": {"cpuRequest": "250m", "memoryLimit": "1Gi"},
                "persistence": {"enabled": True, "storageClassName": "fast", "registrySize": "50Gi"},
            }
        )
        return ctx.model_copy(update={"setting": setting})

    def log_report(self, stage: int, step: int) -> StepReport | None:
        return StepReport(image=IMAGE) if (stage, step) == (1, 0) else None


async def test_a_reported_image_is_in_the_step_status_and_the_bootstrap_gets_the_settings_quota_and_volumes(
    time_env: WorkflowEnvironment,
) -> None:
    world = ReportingWorld()
    async with running(time_env, world) as queue:
        status = await (await start(time_env, queue)).result()
    assert status.phase == ExecutionPhase.SUCCESS
    assert status.stages[1].steps[0].image == IMAGE
    assert status.stages[2].steps[0].image is None
    boot: BootstrapInput = world.called(Activity.BOOTSTRAP_NAMESPACE)[0]
    assert boot.resource_quota == {"requests.cpu": "4", "pods": "10"}
    assert (boot.default_requests, boot.default_limits) == ({"cpu": "250m"}, {"memory": "1Gi"})
    assert (boot.persistent_volumes, boot.storage_class, boot.registry_volume_size) == (True, "fast", "50Gi")
