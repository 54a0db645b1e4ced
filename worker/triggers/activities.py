"""The activities of the scheduled workflows: create a run, wait for it, cancel it, poll a branch.

They live in ``worker`` (not ``activities``) because they create runs through :mod:`worker.runs`, the
one path the CLI and the webhook receiver use too.
"""

from __future__ import annotations

import logging
import time

from temporalio import activity
from temporalio.exceptions import CancelledError

from activities.errors import DevopsError, KubeNotFoundError, to_application_error
from activities.execution import git_credentials
from activities.gitfile import resolve_revision
from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.messages import (
    Activity,
    CreateScheduledRunInput,
    RunRefInput,
    ScheduledRunResult,
    ScmPollInput,
    ScmPollResult,
)
from crds.pipeline import Pipeline
from crds.reasons import GitEvent, TriggeredBy
from worker.runs import RunDetails, create_delivered_run, delivery_key

logger = logging.getLogger(__name__)

WAIT_INTERVAL = 3.0


class TriggerActivities:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    @activity.defn(name=Activity.TRIGGER_CREATE_RUN)
    def create_run(self, inp: CreateScheduledRunInput) -> ScheduledRunResult:
        """The run of one cron firing (exactly one, also when this activity is retried)."""
        try:
            pipeline = self.kube.find(Pipeline, inp.namespace, inp.pipeline)
            if pipeline is None:
                return ScheduledRunResult(reason="the pipeline no longer exists")
            details = RunDetails(
                branch=inp.branch or None, triggered_by=TriggeredBy.CRON.value, event=GitEvent.CRON.value
            )
            key = delivery_key("cron", inp.delivery)
            delivered = create_delivered_run(self.kube, inp.namespace, inp.pipeline, key, details)
            return ScheduledRunResult(run=delivered.execution.name)
        except KubeNotFoundError:
            return ScheduledRunResult(reason="the pipeline no longer exists")
        except DevopsError as err:
            raise to_application_error(err) from err

    @activity.defn(name=Activity.TRIGGER_WAIT_RUN)
    def wait_run(self, inp: RunRefInput) -> ScheduledRunResult:
        """Until the run ends (heartbeating; cancelled with the firing)."""
        while True:
            try:
                pe = self.kube.find(PipelineExecution, inp.namespace, inp.name)
            except DevopsError as err:
                raise to_application_error(err) from err
            if pe is None:
                return ScheduledRunResult(run=inp.name, phase="Deleted")
            if pe.is_finished and pe.status is not None and pe.status.phase is not None:
                return ScheduledRunResult(run=inp.name, phase=pe.status.phase.value)
            activity.heartbeat()
            if activity.is_cancelled():
                raise CancelledError("the scheduled firing was cancelled")
            time.sleep(WAIT_INTERVAL)

    @activity.defn(name=Activity.TRIGGER_CANCEL_RUN)
    def cancel_run(self, inp: RunRefInput) -> None:
        try:
            self.kube.patch(PipelineExecution, inp.namespace, inp.name, {"spec": {"cancelled": True}})
        except KubeNotFoundError:
            return
        except DevopsError as err:
            raise to_application_error(err) from err

    @activity.defn(name=Activity.TRIGGER_POLL_SCM)
    def poll_scm(self, inp: ScmPollInput) -> ScmPollResult:
        """``git ls-remote`` the branch; a run when its head moved since the last poll.

        The first poll only records the head. The run's delivery key is ``<previous>..<head>``: a retry
        after a crash between creating the run and recording the head finds the same run.
        """
        try:
            return self._poll(inp)
        except KubeNotFoundError:
            return ScmPollResult(reason="the pipeline no longer exists")
        except DevopsError as err:
            raise to_application_error(err) from err

    def _poll(self, inp: ScmPollInput) -> ScmPollResult:
        pipeline = self.kube.get(Pipeline, inp.namespace, inp.pipeline)
        branch = inp.branch or pipeline.spec.default_branch
        user, token = git_credentials(self.kube, inp.namespace, pipeline.spec.source_code_credential_name)
        head = resolve_revision(
            pipeline.spec.repository_url, f"refs/heads/{branch}", username=user, password=token
        )
        previous = pipeline.status.last_polled_commit if pipeline.status else None
        if previous == head:
            return ScmPollResult(commit=head, reason="unchanged")
        run = ""
        if previous is not None:
            details = RunDetails(
                branch=branch,
                triggered_by=TriggeredBy.POLL.value,
                event=GitEvent.PUSH.value,
                commit=head,
                ref=f"refs/heads/{branch}",
            )
            key = delivery_key("poll", f"{previous}..{head}")
            run = create_delivered_run(self.kube, inp.namespace, inp.pipeline, key, details).execution.name
        self.kube.patch_status(Pipeline, inp.namespace, inp.pipeline, {"lastPolledCommit": head})
        logger.info(
            "poll %s/%s: %s -> %s (%s)", inp.namespace, inp.pipeline, previous, head, run or "baseline"
        )
        return ScmPollResult(commit=head, run=run, reason="" if run else "first poll: head recorded")


__all__ = ["TriggerActivities"]
