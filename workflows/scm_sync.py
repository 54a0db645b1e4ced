"""A credential's sync: the workflow each credential's Schedule starts (``devops-scm/<ns>/<credential>``).

It verifies the token and mirrors the repositories in one activity (:mod:`worker.scm.activities`). A
sync that cannot finish (the provider down) is retried a few times, then left to the next firing: the
Schedule is the retry loop, so a provider outage never piles up workflows (overlap SKIP).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from crds.messages import SCM_SYNC_WORKFLOW, Activity, ScmSyncInput, ScmSyncResult


@workflow.defn(name=SCM_SYNC_WORKFLOW)
class SourceCodeSyncWorkflow:
    @workflow.run
    async def run(self, inp: ScmSyncInput) -> ScmSyncResult:
        result: ScmSyncResult = await workflow.execute_activity(
            Activity.SCM_SYNC,
            inp,
            result_type=ScmSyncResult,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2)),
            summary=f"verify {inp.namespace}/{inp.credential} and list its repositories",
        )
        return result


__all__ = ["SourceCodeSyncWorkflow"]
