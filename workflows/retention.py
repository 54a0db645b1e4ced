"""The daily log retention sweep, started by the Temporal Schedule ``devops-log-retention``.

One activity (:data:`Activity.SWEEP_LOGS`) does the work; the workflow supplies the clock: its own
``workflow.now()`` (the scheduled time), or ``as_of`` from the input.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from crds.messages import (
        LOG_RETENTION_WORKFLOW,
        Activity,
        LogRetentionInput,
        SweepLogsInput,
        SweepLogsResult,
    )
    from workflows.options import OPTIONS, RETRY


@workflow.defn(name=LOG_RETENTION_WORKFLOW)
class LogRetentionWorkflow:
    @workflow.run
    async def run(self, inp: LogRetentionInput | None = None) -> SweepLogsResult:
        as_of = inp.as_of if inp is not None and inp.as_of is not None else workflow.now()
        opts = OPTIONS[Activity.SWEEP_LOGS]
        result: SweepLogsResult = await workflow.execute_activity(
            Activity.SWEEP_LOGS,
            SweepLogsInput(as_of=as_of),
            result_type=SweepLogsResult,
            start_to_close_timeout=opts.start_to_close,
            schedule_to_close_timeout=opts.schedule_to_close,
            heartbeat_timeout=opts.heartbeat,
            retry_policy=RETRY,
            summary=f"delete step logs older than each project's retention, as of {as_of:%Y-%m-%d %H:%M}",
        )
        return result


__all__ = ["LogRetentionWorkflow"]
