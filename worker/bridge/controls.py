"""CR controls -> workflow signals, and a deleted CR -> its workflow cancelled.

``spec.cancelled`` true -> signal ``cancel``; ``spec.paused`` true -> ``pause``, back to false -> ``resume``.
The last forwarded value is remembered per uid, so events that do not change them send nothing (the
workflow's signals are idempotent, so a resend after a restart is harmless).
"""

from __future__ import annotations

import logging
from collections import Counter

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from crds.execution import PipelineExecution
from crds.messages import ControlInput, Signal
from worker.bridge.metrics import CANCELS, ERRORS, SIGNALS
from worker.bridge.tracked import RPC_TIMEOUT, Tracked

logger = logging.getLogger(__name__)

#: Who set ``spec.cancelled`` / ``spec.paused`` (set by the CLI next to the spec change); forwarded as
#: ``ControlInput.user``. ``REQUESTED_BY_ANNOTATION`` is the fallback for both.
CANCELLED_BY_ANNOTATION = "devops.cubepaas.io/cancelled-by"
PAUSED_BY_ANNOTATION = "devops.cubepaas.io/paused-by"
REQUESTED_BY_ANNOTATION = "devops.cubepaas.io/requested-by"


class Controls:
    """Forwards the CR's control fields as signals and cancels the workflows of deleted CRs."""

    def __init__(self, client: Client, stats: Counter[str]) -> None:
        self.client = client
        self.stats = stats

    async def forward(self, tracked: Tracked, pe: PipelineExecution) -> None:
        spec, annotations = pe.spec, pe.metadata.annotations
        fallback_user = annotations.get(REQUESTED_BY_ANNOTATION, "")
        if spec.cancelled:
            if not tracked.cancelled:
                user = annotations.get(CANCELLED_BY_ANNOTATION, fallback_user)
                await self.signal(
                    tracked, Signal.CANCEL, ControlInput(reason="spec.cancelled set", user=user)
                )
                tracked.cancelled = True
            return
        user = annotations.get(PAUSED_BY_ANNOTATION, fallback_user)
        # Edge-triggered: only a change of spec.paused is forwarded. A run paused from the CLI, the Temporal
        # UI or the Temporal CLI while spec.paused stays false must not be resumed by the bridge.
        if spec.paused and tracked.paused is not True:
            await self.signal(tracked, Signal.PAUSE, ControlInput(reason="spec.paused set", user=user))
        elif not spec.paused and tracked.paused is True:
            await self.signal(tracked, Signal.RESUME, ControlInput(reason="spec.paused cleared", user=user))
        tracked.paused = spec.paused

    async def signal(self, tracked: Tracked, signal: Signal, arg: ControlInput) -> None:
        handle = self.client.get_workflow_handle(tracked.workflow_id)
        try:
            await handle.signal(signal.value, arg, rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                tracked.closed = True
                logger.info("bridge: %s not sent, workflow %s is closed", signal.value, tracked.workflow_id)
                return
            ERRORS.labels("signal").inc()
            raise
        SIGNALS.labels(signal.value).inc()
        self.stats[f"signal:{signal.value}"] += 1
        logger.info("bridge: forwarded %s to %s", signal.value, tracked.workflow_id)

    async def cancel(self, tracked: Tracked) -> None:
        """The CR is gone: cancel its workflow (which stops the build and cleans up)."""
        if tracked.closed:
            return
        handle = self.client.get_workflow_handle(tracked.workflow_id)
        try:
            await handle.cancel(rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                tracked.closed = True
                logger.debug("bridge: no running workflow %s to cancel", tracked.workflow_id)
                return
            ERRORS.labels("cancel").inc()
            raise
        tracked.closed = True
        CANCELS.inc()
        self.stats["cancel"] += 1
        logger.info(
            "bridge: %s/%s deleted; cancelled %s", tracked.namespace, tracked.name, tracked.workflow_id
        )


__all__ = ["CANCELLED_BY_ANNOTATION", "PAUSED_BY_ANNOTATION", "REQUESTED_BY_ANNOTATION", "Controls"]
