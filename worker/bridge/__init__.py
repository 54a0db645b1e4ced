"""The bridge: PipelineExecution CRs -> one Temporal workflow each, and CR controls -> signals.

One module per job:

- :mod:`worker.bridge.watch` lists and watches the CRs (one thread per namespace, resumes from the last
  version, lists again on 410 Gone) and hands the events to the event loop;
- :mod:`worker.bridge.core` runs one driver task per CR (events of a CR in order, CRs in parallel,
  failures retried with backoff) and cancels the workflow of a deleted CR;
- :mod:`worker.bridge.start` starts the CR's workflow or attaches to the running one (never a second),
  and writes ``status.workflow``;
- :mod:`worker.bridge.controls` forwards ``spec.paused`` / ``spec.cancelled`` changes as signals;
- :mod:`worker.bridge.orphans` ends the CRs whose workflow closed without ending them;
- :mod:`worker.bridge.metrics` holds the ``cubepaas_bridge_*`` collectors.

An execution annotated ``devops.cubepaas.io/task-queue: <queue>`` is handled only by the bridge of that
task queue; one without the annotation by every bridge that watches its namespace.
"""

from __future__ import annotations

from worker.bridge.controls import CANCELLED_BY_ANNOTATION, PAUSED_BY_ANNOTATION, REQUESTED_BY_ANNOTATION
from worker.bridge.core import TASK_QUEUE_ANNOTATION, Bridge
from worker.bridge.start import (
    HISTORY_LIMIT_ANNOTATION,
    SA_BRANCH,
    SA_NAMESPACE,
    SA_PHASE,
    SA_PIPELINE,
    SA_RUN,
    SA_TRIGGER,
    details_of,
    summary_of,
)

__all__ = [
    "CANCELLED_BY_ANNOTATION",
    "HISTORY_LIMIT_ANNOTATION",
    "PAUSED_BY_ANNOTATION",
    "REQUESTED_BY_ANNOTATION",
    "SA_BRANCH",
    "SA_NAMESPACE",
    "SA_PHASE",
    "SA_PIPELINE",
    "SA_RUN",
    "SA_TRIGGER",
    "TASK_QUEUE_ANNOTATION",
    "Bridge",
    "details_of",
    "summary_of",
]
