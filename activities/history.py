"""Execution history limits: which finished PipelineExecutions of a pipeline are deleted.

Only finished runs count and only finished runs are deleted: a running, queued or paused one is never
touched. A finished run still sending its notifications (``Notified`` Unknown) is kept until a later
run ends. Deleting the CR leaves its Temporal workflow (kept until the namespace's retention) and its
logs (they follow ``logRetentionDays``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from activities.errors import KubeConflictError, KubeNotFoundError
from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.pipeline import ExecutionHistoryLimit
from crds.reasons import ConditionStatus, ConditionType, ExecutionPhase

logger = logging.getLogger(__name__)


def _busy_notifying(pe: PipelineExecution) -> bool:
    cond = pe.status.condition(ConditionType.NOTIFIED) if pe.status else None
    return cond is not None and cond.status == ConditionStatus.UNKNOWN


def executions_to_delete(
    executions: Iterable[PipelineExecution], limit: ExecutionHistoryLimit
) -> list[PipelineExecution]:
    """The finished runs beyond the newest ``successful`` Success and ``failed`` other finished runs.

    Newest = highest run number. Unfinished runs are neither counted nor returned.
    """
    finished = sorted((pe for pe in executions if pe.is_finished), key=lambda pe: pe.spec.run, reverse=True)
    ok = [pe for pe in finished if pe.status is not None and pe.status.phase == ExecutionPhase.SUCCESS]
    bad = [pe for pe in finished if pe.status is not None and pe.status.phase != ExecutionPhase.SUCCESS]
    doomed = ok[limit.successful :] + bad[limit.failed :]
    return sorted((pe for pe in doomed if not _busy_notifying(pe)), key=lambda pe: pe.spec.run)


def prune_history(
    kube: Kube,
    namespace: str,
    pipeline: str,
    limit: ExecutionHistoryLimit,
    executions: list[PipelineExecution],
    *,
    keep: str | None = None,
) -> list[str]:
    """Delete what :func:`executions_to_delete` names (uid-guarded), except ``keep``: the run that just
    ended stays visible until a later run ends, even when it is older than the kept ones."""
    deleted: list[str] = []
    for pe in executions_to_delete((pe for pe in executions if pe.spec.pipeline_name == pipeline), limit):
        if pe.name == keep:
            continue
        try:
            kube.delete(PipelineExecution, namespace, pe.name, uid=pe.metadata.uid)
        except (KubeConflictError, KubeNotFoundError):
            continue  # re-created or deleted meanwhile: not ours to delete
        deleted.append(pe.name)
    if deleted:
        logger.info("history limit of %s/%s: deleted %s", namespace, pipeline, ", ".join(deleted))
    return deleted


__all__ = ["executions_to_delete", "prune_history"]
