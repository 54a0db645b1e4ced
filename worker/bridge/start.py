"""Start one PipelineExecutionWorkflow per CR, or attach to the one that runs, and record it in the CR.

The workflow id is :func:`crds.messages.execution_workflow_id` (namespace, name, uid); the start uses
``WorkflowIDConflictPolicy.FAIL`` and ``WorkflowIDReusePolicy.REJECT_DUPLICATE``, so a restarted bridge or
two replicas never start a second workflow. "Already started" is then told apart with one ``describe``:
a running workflow is attached to (``existing``), a closed one means the run already happened
(``closed``). ``status.workflow`` (id, runId, namespace, uiUrl) is written from the
:class:`~crds.execution.WorkflowRef` model when it differs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import KubeNotFoundError
from activities.kube import Kube
from crds.execution import PipelineExecution, WorkflowRef
from crds.messages import EXECUTION_WORKFLOW, ExecutionRef, ExecutionWorkflowInput
from crds.meta import GROUP, VERSION
from crds.reasons import ExecutionPhase
from worker.bridge.metrics import ERRORS, STARTS, STATUS_WRITES
from worker.bridge.tracked import RPC_TIMEOUT, Tracked
from worker.settings import WorkerSettings

logger = logging.getLogger(__name__)

PLURAL = PipelineExecution.crd.plural
SA_PIPELINE = SearchAttributeKey.for_keyword("DevopsPipeline")
SA_NAMESPACE = SearchAttributeKey.for_keyword("DevopsNamespace")
SA_BRANCH = SearchAttributeKey.for_keyword("DevopsBranch")
SA_TRIGGER = SearchAttributeKey.for_keyword("DevopsTrigger")
SA_RUN = SearchAttributeKey.for_int("DevopsRun")
SA_PHASE = SearchAttributeKey.for_keyword("DevopsPhase")

#: Continue the workflow as new after this many history events (operators and tests; default: when
#: Temporal suggests it).
HISTORY_LIMIT_ANNOTATION = "devops.cubepaas.io/history-limit"


def summary_of(pe: PipelineExecution) -> str:
    """``<pipeline> #<run> on <branch> (<trigger>)``, at most 200 bytes."""
    spec = pe.spec
    where = spec.branch or spec.ref or "default branch"
    text = f"{spec.pipeline_name} #{spec.run} on {where} ({spec.triggered_by})"
    return text.encode()[:200].decode(errors="ignore")


def details_of(pe: PipelineExecution) -> str:
    """Markdown shown in the Temporal UI: what the run is and how to get back to its CR."""
    spec, ns, name = pe.spec, pe.namespace, pe.name
    lines = [
        f"**PipelineExecution** `{ns}/{name}` (uid `{pe.metadata.uid}`)",
        "",
        f"- Pipeline: `{spec.pipeline_name}`, run **#{spec.run}**",
        f"- Branch: `{spec.branch or '-'}`" + (f", ref `{spec.ref}`" if spec.ref else ""),
        f"- Commit: `{spec.commit or 'head of branch'}`, event `{spec.event}`",
        f"- Triggered by: {spec.triggered_by}"
        + (f" ({spec.trigger_user_name})" if spec.trigger_user_name else ""),
        "",
        "The CR (its status mirrors this workflow):",
        "",
        f"    kubectl -n {ns} get pipelineexecution {name} -o yaml",
        f"    /apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{name}",
        "",
        f"Control it from the CR: `kubectl -n {ns} patch pipelineexecution {name} --type merge "
        '-p \'{"spec":{"paused":true}}\'` (or `cancelled`), or with signals `pause`, `resume`, `cancel`.',
    ]
    return "\n".join(lines)


class Starter:
    """Starts or attaches to the workflow of a CR and writes ``status.workflow``."""

    def __init__(self, kube: Kube, client: Client, settings: WorkerSettings, stats: Counter[str]) -> None:
        self.kube = kube
        self.client = client
        self.settings = settings
        self.stats = stats

    async def start(self, tracked: Tracked, pe: PipelineExecution) -> bool:
        """Start the CR's workflow, or attach to the one it has; True when this call started it (the
        workflow then writes ``status.workflow`` itself, with its first status)."""
        spec = pe.spec
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(SA_PIPELINE, spec.pipeline_name),
                SearchAttributePair(SA_NAMESPACE, tracked.namespace),
                SearchAttributePair(SA_BRANCH, spec.branch or ""),
                SearchAttributePair(SA_TRIGGER, str(spec.triggered_by)),
                SearchAttributePair(SA_RUN, spec.run),
                SearchAttributePair(SA_PHASE, ExecutionPhase.WAITING.value),
            ]
        )
        limit = (pe.metadata.annotations or {}).get(HISTORY_LIMIT_ANNOTATION, "")
        arg = ExecutionWorkflowInput(
            execution=ExecutionRef(namespace=tracked.namespace, name=tracked.name, uid=tracked.uid),
            ui_base_url=self.settings.temporal_ui_url,
            history_limit=int(limit) if limit.isdigit() else 0,
        )
        try:
            handle = await self.client.start_workflow(
                EXECUTION_WORKFLOW,
                arg,
                id=tracked.workflow_id,
                task_queue=self.settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=attributes,
                static_summary=summary_of(pe),
                static_details=details_of(pe),
                rpc_timeout=RPC_TIMEOUT,
                # The first workflow task comes back in the answer when this process's worker has a slot
                # (and the server allows it); otherwise it goes through the task queue as usual.
                request_eager_start=True,
            )
        except WorkflowAlreadyStartedError as err:
            await self._already_started(tracked, err)
            return False
        except Exception:
            ERRORS.labels("start").inc()
            raise
        tracked.started = True
        tracked.run_id = handle.result_run_id or handle.run_id
        self._count("started", tracked)
        return True

    async def _already_started(self, tracked: Tracked, err: WorkflowAlreadyStartedError) -> None:
        """A workflow has this id: attach to it while it runs; a closed one means the run happened."""
        try:
            desc = await self.client.get_workflow_handle(tracked.workflow_id, run_id=err.run_id).describe(
                rpc_timeout=RPC_TIMEOUT
            )
        except RPCError as rpc:
            if rpc.status != RPCStatusCode.NOT_FOUND:
                ERRORS.labels("start").inc()
                raise
            desc = None  # gone from the retention window: closed long ago
        tracked.started = True
        tracked.run_id = err.run_id or tracked.run_id
        if desc is not None and desc.status == WorkflowExecutionStatus.RUNNING:
            self._count("existing", tracked)
            return
        tracked.closed = True
        self._count("closed", tracked)

    def _count(self, result: str, tracked: Tracked) -> None:
        STARTS.labels(result).inc()
        self.stats[result] += 1
        logger.info("bridge: %s workflow %s (run %s)", result, tracked.workflow_id, tracked.run_id)

    def desired_workflow_ref(self, tracked: Tracked) -> WorkflowRef:
        ui, ns = self.settings.temporal_ui_url, self.settings.temporal_namespace
        return WorkflowRef.of(ui, ns, tracked.workflow_id, tracked.run_id)

    async def write_status(self, tracked: Tracked, pe: PipelineExecution) -> None:
        desired = self.desired_workflow_ref(tracked)
        current = pe.status.workflow if pe.status else None
        if current == desired:
            return
        # Every field is sent (None ones as null) so a stale runId or uiUrl is cleared, not kept.
        patch: dict[str, Any] = {"workflow": desired.model_dump(mode="json", by_alias=True)}
        try:
            await asyncio.to_thread(
                self.kube.patch_status, PipelineExecution, tracked.namespace, tracked.name, patch
            )
        except KubeNotFoundError:
            return  # deleted meanwhile: the DELETED event follows
        except Exception:
            ERRORS.labels("status").inc()
            raise
        STATUS_WRITES.inc()
        self.stats["status"] += 1
        logger.debug("bridge: wrote status.workflow of %s/%s", tracked.namespace, tracked.name)


__all__ = [
    "HISTORY_LIMIT_ANNOTATION",
    "SA_BRANCH",
    "SA_NAMESPACE",
    "SA_PHASE",
    "SA_PIPELINE",
    "SA_RUN",
    "SA_TRIGGER",
    "Starter",
    "details_of",
    "summary_of",
]
