"""The end of a run in one local activity: the Pipeline's status, the terminal status, the history limit.

Three steps that each were a local activity of their own, each a round of the workflow and a marker in
its history carrying the run's context. Their order and their failures stay what they were:

- The Pipeline's status first. A transient fault fails the activity, which is retried (nothing else
  is done yet); a permanent one is named in the terminal status message, and the run still ends.
- The terminal status: its faults are the activity's (the workflow, if the retries run out, ends the
  run the way it did before this activity existed).
- The history limit last, after the CR says the run has ended; a fault is reported, not raised (the
  next run's finish applies the limit again).
"""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity

from activities.errors import DevopsError, to_application_error
from activities.execution import ExecutionActivities
from activities.finished import RunFinishedActivities
from crds.build_status import housekeeping_failed, pipeline_status_step
from crds.messages import Activity, FinishInput, FinishResult
from crds.pipeline import Pipeline
from crds.text import escape_controls

logger = logging.getLogger(__name__)


class FinishActivities:
    """Composes the activities whose steps it runs (the same instances the worker registers)."""

    def __init__(self, statuses: ExecutionActivities, finished: RunFinishedActivities) -> None:
        self.statuses = statuses
        self.finished = finished

    @activity.defn(name=Activity.FINISH)
    async def finish(self, inp: FinishInput) -> FinishResult:
        try:
            return await self._finish(inp)
        except DevopsError as err:
            raise to_application_error(err) from err

    async def _finish(self, inp: FinishInput) -> FinishResult:
        status = inp.write.status
        pipeline_failed: str | None = None
        pipeline: Pipeline | None = None
        try:
            pipeline = await asyncio.to_thread(self.statuses.set_pipeline_status, inp.pipeline)
        except DevopsError as err:
            if err.retryable:
                raise
            pipeline_failed = escape_controls(err.message)
            logger.warning("%s failed: %s", pipeline_status_step(inp.pipeline.pipeline), pipeline_failed)
            status.message = housekeeping_failed(
                status.message, pipeline_status_step(inp.pipeline.pipeline), pipeline_failed
            )
        written = await asyncio.to_thread(self.statuses.write, inp.write)
        result = FinishResult(write=written, pipeline_failed=pipeline_failed)
        if inp.history is None or not written.exists:
            return result
        try:
            done = await self.finished.run(inp.history, pipeline)
        except DevopsError as err:
            result.history_failed = escape_controls(err.message)
            logger.warning("execution history of %s: %s", inp.history.context.pipeline, err.message)
            return result
        result.deleted_executions = done.deleted_executions
        return result


__all__ = ["FinishActivities"]
