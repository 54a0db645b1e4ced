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
from crds.execution import PipelineExecution, RunSummary
from crds.pipeline import ExecutionHistoryLimit
from crds.reasons import ExecutionPhase

logger = logging.getLogger(__name__)


def executions_to_delete(executions: Iterable[RunSummary], limit: ExecutionHistoryLimit) -> list[RunSummary]:
    """The finished runs beyond the newest ``successful`` Success and ``failed`` other finished runs.

    Newest = highest run number. Unfinished runs are neither counted nor returned.
    """
    finished = sorted((r for r in executions if r.is_finished), key=lambda r: r.run, reverse=True)
    ok = [r for r in finished if r.phase == ExecutionPhase.SUCCESS]
    bad = [r for r in finished if r.phase != ExecutionPhase.SUCCESS]
    doomed = ok[limit.successful :] + bad[limit.failed :]
    return sorted((r for r in doomed if not r.notifying), key=lambda r: r.run)


def prune_history(
    kube: Kube,
    namespace: str,
    pipeline: str,
    limit: ExecutionHistoryLimit,
    executions: list[RunSummary],
    *,
    keep: str | None = None,
) -> list[str]:
    """Delete what :func:`executions_to_delete` names (uid-guarded), except ``keep``: the run that just
    ended stays visible until a later run ends, even when it is older than the kept ones."""
    deleted: list[str] = []
    for r in executions_to_delete((r for r in executions if r.pipeline == pipeline), limit):
        if r.name == keep:
            continue
        try:
            kube.delete(PipelineExecution, namespace, r.name, uid=r.uid or None)
        except (KubeConflictError, KubeNotFoundError):
            continue  # re-created or deleted meanwhile: not ours to delete
        deleted.append(r.name)
    if deleted:
        logger.info("history limit of %s/%s: deleted %s", namespace, pipeline, ", ".join(deleted))
    return deleted


__all__ = ["executions_to_delete", "prune_history"]
