"""The workflows Temporal Schedules start: one cron firing, one SCM poll.

A cron firing creates the run (an activity calling ``worker.runs``: one CR, then the usual bridge ->
workflow) and waits until that run ends, so the Schedule's overlap policy (Skip by default) is about
runs, not about creating them. When the Schedule cancels a firing (overlap CancelOther), the firing
cancels its run. A poll looks at the branch head once and creates at most one run.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from crds.messages import (
        SCHEDULED_RUN_WORKFLOW,
        SCM_POLL_WORKFLOW,
        Activity,
        CreateScheduledRunInput,
        RunRefInput,
        ScheduledRunInput,
        ScheduledRunResult,
        ScmPollInput,
        ScmPollResult,
    )

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
RUN_WAIT = timedelta(days=2)


@workflow.defn(name=SCHEDULED_RUN_WORKFLOW)
class ScheduledRunWorkflow:
    @workflow.run
    async def run(self, inp: ScheduledRunInput) -> ScheduledRunResult:
        created: ScheduledRunResult = await workflow.execute_activity(
            Activity.TRIGGER_CREATE_RUN,
            CreateScheduledRunInput(
                namespace=inp.namespace,
                pipeline=inp.pipeline,
                branch=inp.branch,
                delivery=workflow.info().workflow_id,
            ),
            result_type=ScheduledRunResult,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RETRY,
            summary=f"create a run of {inp.namespace}/{inp.pipeline}",
        )
        if not created.run:
            return created
        ref = RunRefInput(namespace=inp.namespace, name=created.run)
        try:
            ended: ScheduledRunResult = await workflow.execute_activity(
                Activity.TRIGGER_WAIT_RUN,
                ref,
                result_type=ScheduledRunResult,
                start_to_close_timeout=RUN_WAIT,
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=RETRY,
                summary=f"wait for {created.run}",
            )
        except (asyncio.CancelledError, ActivityError) as err:
            # The Schedule cancels this firing (overlap CancelOther): the cancellation arrives as
            # CancelledError, or as the wait activity's ActivityError caused by it.
            if not is_cancelled_exception(err):
                raise
            await workflow.execute_activity(
                Activity.TRIGGER_CANCEL_RUN,
                ref,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RETRY,
                summary=f"cancel {created.run}",
            )
            raise
        return ScheduledRunResult(run=created.run, phase=ended.phase)


@workflow.defn(name=SCM_POLL_WORKFLOW)
class ScmPollWorkflow:
    @workflow.run
    async def run(self, inp: ScmPollInput) -> ScmPollResult:
        result: ScmPollResult = await workflow.execute_activity(
            Activity.TRIGGER_POLL_SCM,
            inp,
            result_type=ScmPollResult,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2)),
            summary=f"git ls-remote for {inp.namespace}/{inp.pipeline}",
        )
        return result


__all__ = ["ScheduledRunWorkflow", "ScmPollWorkflow"]
