"""Entering the per-project executor quota: signal-with-start of the quota workflow.

A workflow cannot signal-with-start another workflow, so this one call is an activity holding a
Temporal client. Retrying it is harmless: the quota workflow treats a repeated acquire as the same one.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from crds.messages import (
    QUOTA_WORKFLOW,
    TASK_QUEUE,
    Activity,
    QuotaAcquireInput,
    QuotaHolders,
    QuotaRequest,
    QuotaWorkflowInput,
    Signal,
    quota_workflow_id,
)


class QuotaActivities:
    def __init__(self, client: Client, task_queue: str = TASK_QUEUE) -> None:
        self.client = client
        self.task_queue = task_queue

    @activity.defn(name=Activity.QUOTA_ACQUIRE)
    async def acquire(self, inp: QuotaAcquireInput) -> None:
        await self.client.start_workflow(
            QUOTA_WORKFLOW,
            QuotaWorkflowInput(project_namespace=inp.project_namespace, capacity=inp.capacity),
            id=quota_workflow_id(inp.project_namespace),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal=Signal.QUOTA_ACQUIRE,
            start_signal_args=[
                QuotaRequest(
                    workflow_id=inp.workflow_id, run=inp.run, capacity=inp.capacity, created=inp.created
                )
            ],
            static_summary=f"Executor quota of project {inp.project_namespace}",
        )

    @activity.defn(name=Activity.QUOTA_GONE_HOLDERS)
    async def gone_holders(self, inp: QuotaHolders) -> QuotaHolders:
        """The holders whose workflow no longer runs (ended without releasing, e.g. terminated)."""
        gone: list[str] = []
        for wid in inp.workflow_ids:
            try:
                desc = await self.client.get_workflow_handle(wid).describe()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    gone.append(wid)
                    continue
                raise
            if desc.status != WorkflowExecutionStatus.RUNNING:
                gone.append(wid)
        return QuotaHolders(workflow_ids=gone)
