"""End the CRs whose workflow closed without ending them (terminated, timed out, failed).

A terminated workflow runs no cleanup, so its CR would otherwise show ``Building`` forever. The sweep
describes the workflow of every tracked, unfinished CR and writes a terminal status saying what happened,
through the :class:`~crds.execution.PipelineExecutionStatus` model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.errors import KubeNotFoundError
from activities.kube import Kube
from crds.execution import PipelineExecution, PipelineExecutionStatus
from crds.reasons import ConditionStatus, ConditionType, ExecutionPhase
from worker.bridge.tracked import RPC_TIMEOUT, Tracked

logger = logging.getLogger(__name__)

#: How often the bridge looks for such CRs.
ORPHAN_INTERVAL = 30.0
#: Closed workflow states that leave a CR unfinished: how the message names them, the phase, the reason.
ORPHANING: Final = {
    WorkflowExecutionStatus.TERMINATED: ("terminated", ExecutionPhase.ABORTED, "WorkflowTerminated"),
    WorkflowExecutionStatus.TIMED_OUT: ("timed out", ExecutionPhase.FAILED, "WorkflowTimedOut"),
    WorkflowExecutionStatus.FAILED: ("failed", ExecutionPhase.FAILED, "WorkflowFailed"),
}
#: Status fields the sweep writes (the rest stays as the workflow left it).
_WRITTEN: Final = ("phase", "message", "ended", "duration", "conditions")


def orphan_status(
    current: PipelineExecutionStatus, status: WorkflowExecutionStatus, now: datetime
) -> dict[str, object]:
    """The status patch that ends a CR whose workflow closed with ``status`` without ending it."""
    how, phase, reason = ORPHANING[status]
    last = current.phase.value if current.phase else "none"
    message = f"The run's workflow was {how} without finishing the run (last phase: {last})"
    ended = current.model_copy(deep=True)
    ended.set_condition(ConditionType.SUCCEEDED, ConditionStatus.FALSE, reason, message, now)
    ended.finish(phase, now, message)
    data = ended.to_dict()
    return {k: data.get(k) for k in _WRITTEN}


class OrphanSweeper:
    def __init__(self, kube: Kube, client: Client) -> None:
        self.kube = kube
        self.client = client

    async def sweep(self, tracked_executions: Iterable[Tracked]) -> int:
        """End the tracked CRs whose workflow ended without ending them; returns how many it ended."""
        ended = 0
        for tracked in list(tracked_executions):
            if not tracked.started or tracked.deleted:
                continue
            try:
                current = PipelineExecutionStatus.model_validate(tracked.latest.get("status") or {})
            except ValidationError:
                continue  # the bridge logs unparsable CRs once; nothing to end here
            if current.is_finished:
                continue
            try:
                desc = await self.client.get_workflow_handle(tracked.workflow_id).describe(
                    rpc_timeout=RPC_TIMEOUT
                )
            except RPCError:
                continue
            if desc.status not in ORPHANING:
                continue
            patch = orphan_status(current, desc.status, datetime.now(UTC))
            try:
                await asyncio.to_thread(
                    self.kube.patch_status, PipelineExecution, tracked.namespace, tracked.name, patch
                )
            except KubeNotFoundError:
                continue
            tracked.closed = True
            ended += 1
            logger.warning("bridge: %s/%s: %s", tracked.namespace, tracked.name, patch["message"])
        return ended


__all__ = ["ORPHANING", "ORPHAN_INTERVAL", "OrphanSweeper", "orphan_status"]
