"""Cron and SCM polling as Temporal Schedules, end to end: a worker process reconciles the Schedules,
Temporal fires them, the firing creates the run through ``worker.runs``, the bridge runs it on jenkins-lite.

Each test runs its own worker (own task queue, watching only the test's namespace; the Pipeline is pinned
to that queue by annotation, so the session's worker leaves it alone).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.messages import cron_schedule_id, poll_schedule_id
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec, Triggers
from crds.reasons import ExecutionPhase
from devstack.components import temporal_binary
from devstack.gitrepo import push_commit
from devstack.proc import wait_for
from worker.bridge import TASK_QUEUE_ANNOTATION

pytestmark = pytest.mark.e2e

PIPELINE = """
stages:
- name: Test
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo scheduled; sleep 3"}
"""


def pipeline_with(kube: Kube, ns: str, name: str, url: str, queue: str, triggers: dict[str, Any]) -> Pipeline:
    return kube.create(
        Pipeline(
            metadata=ObjectMeta(name=name, namespace=ns, annotations={TASK_QUEUE_ANNOTATION: queue}),
            spec=PipelineSpec(repository_url=url, triggers=Triggers.model_validate(triggers)),
        )
    )


def runs_of(kube: Kube, ns: str, name: str) -> list[PipelineExecution]:
    found = kube.list_resources(PipelineExecution, ns, label_selector=f"devops.cubepaas.io/pipeline={name}")
    return sorted(found, key=lambda pe: pe.spec.run)


async def schedule_gone(client: Client, sid: str) -> bool:
    try:
        await client.get_schedule_handle(sid).describe()
    except RPCError as err:
        return err.status == RPCStatusCode.NOT_FOUND
    return False


async def test_a_cron_trigger_becomes_a_schedule_that_starts_runs_one_at_a_time_until_the_pipeline_is_deleted(
    kube: Kube,
    temporal_client: Client,
    stack_env: dict[str, str],
    project_namespace: Callable[..., str],
    git_repo: Callable[..., tuple[str, str]],
    dedicated_worker: Callable[[str], Any],
) -> None:
    ns = project_namespace("cron")
    worker = dedicated_worker(ns)
    worker.start()
    url, _ = git_repo(PIPELINE)
    pipeline_with(kube, ns, "nightly", url, worker.queue, {"cron": {"schedule": "*/2 * * * * * *"}})
    sid = cron_schedule_id(ns, "nightly")

    first = wait_for(
        lambda: next(iter(runs_of(kube, ns, "nightly")), None), 60, "a run started by the cron trigger"
    )
    assert (first.spec.triggered_by, first.spec.event, first.spec.branch) == ("cron", "cron", "main")

    listed = (
        await asyncio.to_thread(
            subprocess.run,
            [
                str(temporal_binary()),
                "schedule",
                "list",
                "--address",
                stack_env["TEMPORAL_ADDRESS"],
                "--namespace",
                stack_env["TEMPORAL_NAMESPACE"],
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    ).stdout
    assert sid in listed
    description = await temporal_client.get_schedule_handle(sid).describe()
    assert description.schedule.state.note == f"cron trigger of Pipeline {ns}/nightly"

    # Overlap Skip: the second run is created only after the first one ended.
    def second_run() -> PipelineExecution | None:
        found = runs_of(kube, ns, "nightly")
        return found[1] if len(found) > 1 else None

    second = wait_for(second_run, 120, "a second cron run")
    first = kube.get(PipelineExecution, ns, first.name)
    assert (
        first.status is not None and first.status.phase is not None and first.status.phase.value == "Success"
    )
    assert first.status.ended is not None and second.metadata.creation_timestamp is not None
    assert first.status.ended <= second.metadata.creation_timestamp

    kube.patch(Pipeline, ns, "nightly", {"spec": {"triggers": {"cron": {"paused": True}}}})

    async def paused() -> bool:
        return (await temporal_client.get_schedule_handle(sid).describe()).schedule.state.paused

    await async_wait(paused, 30, "the schedule paused with its trigger")

    kube.delete_object(Pipeline.model_fields["api_version"].default, "Pipeline", "nightly", ns)
    await async_wait(
        lambda: schedule_gone(temporal_client, sid), 30, "the schedule deleted with its pipeline"
    )


async def test_scm_polling_runs_each_new_commit_exactly_once_also_across_a_worker_restart(
    kube: Kube,
    temporal_client: Client,
    project_namespace: Callable[..., str],
    git_repo: Callable[..., tuple[str, str]],
    dedicated_worker: Callable[[str], Any],
) -> None:
    ns = project_namespace("poll")
    worker = dedicated_worker(ns)
    worker.start()
    url, first_sha = git_repo(PIPELINE)
    pipeline_with(kube, ns, "polled", url, worker.queue, {"pollScm": {"interval": "1s"}})

    def seen() -> str | None:
        status = kube.get(Pipeline, ns, "polled").status
        return status.last_polled_commit if status else None

    assert wait_for(seen, 60, "the first poll recording the branch head") == first_sha
    assert runs_of(kube, ns, "polled") == []  # the head that was there before polling began is not built

    second_sha = push_commit(url, {"README.md": "one\n"}, "second commit")
    run = wait_for(lambda: next(iter(runs_of(kube, ns, "polled")), None), 60, "a run of the pushed commit")
    assert (run.spec.commit, run.spec.triggered_by, run.spec.event, run.spec.branch) == (
        second_sha,
        "poll",
        "push",
        "main",
    )
    assert wait_for(lambda: seen() == second_sha, 30, "the new head recorded")

    worker.stop()
    third_sha = push_commit(url, {"README.md": "two\n"}, "third commit while the worker is down")
    worker.start()
    wait_for(
        lambda: len(runs_of(kube, ns, "polled")) >= 2, 60, "a run of the commit pushed during the restart"
    )
    wait_for(lambda: seen() == third_sha, 30, "the head after the restart recorded")
    # Several more polls happen; none repeats a commit.
    handle = temporal_client.get_schedule_handle(poll_schedule_id(ns, "polled"))
    polls = (await handle.describe()).info.num_actions

    async def three_more_polls() -> bool:
        return (await handle.describe()).info.num_actions >= polls + 3

    await async_wait(three_more_polls, 60, "three more polls")
    assert [r.spec.commit for r in runs_of(kube, ns, "polled")] == [second_sha, third_sha]

    kube.delete_object(Pipeline.model_fields["api_version"].default, "Pipeline", "polled", ns)
    sid = poll_schedule_id(ns, "polled")
    await async_wait(
        lambda: schedule_gone(temporal_client, sid), 30, "the poll schedule deleted with its pipeline"
    )


async def async_wait(predicate: Callable[[], Any], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.3)
    pytest.fail(f"timed out after {within:.0f}s waiting for {what}", pytrace=False)


async def test_a_cron_expression_temporal_refuses_is_reported_in_the_pipeline_status_until_fixed(
    kube: Kube,
    temporal_client: Client,
    project_namespace: Callable[..., str],
    git_repo: Callable[..., tuple[str, str]],
    dedicated_worker: Callable[[str], Any],
) -> None:
    ns = project_namespace("badcron")
    worker = dedicated_worker(ns)
    worker.start()
    url, _ = git_repo(PIPELINE)
    pipeline_with(kube, ns, "app", url, worker.queue, {"cron": {"schedule": "every day at noon"}})

    def message() -> str | None:
        status = kube.get(Pipeline, ns, "app").status
        return status.triggers_message if status else None

    reported = wait_for(message, 30, "the refused schedule reported in status.triggersMessage")
    assert "devops-cron/" in reported and "CronString" in reported
    kube.patch(Pipeline, ns, "app", {"spec": {"triggers": {"cron": {"schedule": "0 12 * * *"}}}})
    wait_for(lambda: message() is None, 30, "the message cleared once the expression is valid")
    description = await temporal_client.get_schedule_handle(cron_schedule_id(ns, "app")).describe()
    assert description.schedule.state.note == f"cron trigger of Pipeline {ns}/app"
    kube.delete_object(Pipeline.model_fields["api_version"].default, "Pipeline", "app", ns)
    await async_wait(
        lambda: schedule_gone(temporal_client, cron_schedule_id(ns, "app")), 30, "the schedule deleted"
    )


def test_overlap_cancel_other_cancels_the_running_scheduled_run_when_the_next_one_is_due(
    kube: Kube,
    project_namespace: Callable[..., str],
    git_repo: Callable[..., tuple[str, str]],
    dedicated_worker: Callable[[str], Any],
) -> None:
    ns = project_namespace("cronco")
    worker = dedicated_worker(ns)
    worker.start()
    url, _ = git_repo(PIPELINE.replace("sleep 3", "sleep 120"))
    pipeline_with(
        kube,
        ns,
        "slow",
        url,
        worker.queue,
        {"cron": {"schedule": "*/30 * * * * * *", "overlap": "CancelOther"}},
    )

    def second_run() -> PipelineExecution | None:
        found = runs_of(kube, ns, "slow")
        return found[1] if len(found) > 1 else None

    second = wait_for(second_run, 90, "the next scheduled run")

    def first_ended() -> PipelineExecution | None:
        pe = kube.get(PipelineExecution, ns, "slow-1")
        return pe if pe.is_finished else None

    first = wait_for(first_ended, 90, "the first run ended by the next firing")
    assert first.spec.cancelled is True
    assert first.status is not None and first.status.phase == ExecutionPhase.ABORTED, first.status
    assert second.spec.triggered_by == "cron"
    kube.patch(Pipeline, ns, "slow", {"spec": {"triggers": {"cron": {"paused": True}}}})
    kube.delete_object(Pipeline.model_fields["api_version"].default, "Pipeline", "slow", ns)
