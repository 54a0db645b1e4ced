"""worker.runs.create_run against the real apiserver: run numbers by compare-and-swap."""

from __future__ import annotations

import threading

import pytest

from activities.errors import KubeNotFoundError
from activities.kube import Kube
from crds.execution import PIPELINE_LABEL, RUN_LABEL, PipelineExecution
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec
from worker.bridge import TASK_QUEUE_ANNOTATION
from worker.runs import create_run

#: No worker serves this queue: bridges of other tests on the shared stack leave these runs alone.
NO_WORKER = {TASK_QUEUE_ANNOTATION: "test-runs-without-a-worker"}

pytestmark = pytest.mark.integration


def _pipeline(kube: Kube, namespace: str, name: str = "app", default_branch: str = "develop") -> Pipeline:
    return kube.create(
        Pipeline(
            metadata=ObjectMeta(name=name, namespace=namespace),
            spec=PipelineSpec(repositoryUrl="file:///srv/git/app.git", defaultBranch=default_branch),
        )
    )


def test_ten_concurrent_callers_get_ten_distinct_consecutive_run_numbers(kube: Kube, namespace: str) -> None:
    _pipeline(kube, namespace)
    results: list[PipelineExecution] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(10)
    lock = threading.Lock()

    def call() -> None:
        try:
            barrier.wait()
            execution = create_run(
                kube.api_client, namespace, "app", trigger_user="alice", annotations=NO_WORKER
            )
            with lock:
                results.append(execution)
        except BaseException as err:
            with lock:
                errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert sorted(e.spec.run for e in results) == list(range(1, 11))
    listed = kube.list_resources(PipelineExecution, namespace)
    assert sorted(e.name for e in listed) == sorted(f"app-{n}" for n in range(1, 11))
    assert all(e.metadata.labels[PIPELINE_LABEL] == "app" for e in listed)
    assert {e.metadata.labels[RUN_LABEL] for e in listed} == {str(n) for n in range(1, 11)}
    pipeline = kube.get(Pipeline, namespace, "app")
    assert pipeline.status is not None and pipeline.status.next_run == 11


def test_a_run_defaults_to_the_pipelines_branch_and_records_its_trigger(kube: Kube, namespace: str) -> None:
    pipeline = _pipeline(kube, namespace, default_branch="develop")

    first = create_run(
        kube,
        namespace,
        "app",
        triggered_by="webhook",
        trigger_user="bob",
        event="push",
        commit="0" * 40,
        ref="refs/heads/develop",
        annotations=NO_WORKER,
    )
    second = create_run(kube, namespace, "app", branch="feature/x", annotations=NO_WORKER)

    assert (first.name, first.spec.run, first.spec.branch) == ("app-1", 1, "develop")
    assert (first.spec.triggered_by, first.spec.trigger_user_name, first.spec.event) == (
        "webhook",
        "bob",
        "push",
    )
    assert (first.spec.commit, first.spec.ref) == ("0" * 40, "refs/heads/develop")
    assert first.metadata.owner_references[0].uid == pipeline.metadata.uid
    assert (second.name, second.spec.branch, second.spec.triggered_by) == ("app-2", "feature/x", "user")


def test_a_taken_name_is_skipped_instead_of_failing(kube: Kube, namespace: str) -> None:
    _pipeline(kube, namespace)
    create_run(kube, namespace, "app", annotations=NO_WORKER)
    create_run(kube, namespace, "app", annotations=NO_WORKER)
    kube.patch_status(Pipeline, namespace, "app", {"nextRun": 1})  # reset by hand: app-1 and app-2 exist

    third = create_run(kube, namespace, "app", annotations=NO_WORKER)

    assert third.name == "app-3"
    assert kube.get(Pipeline, namespace, "app").status.next_run == 4  # type: ignore[union-attr]


def test_a_run_of_a_missing_pipeline_is_not_found(kube: Kube, namespace: str) -> None:
    with pytest.raises(KubeNotFoundError):
        create_run(kube, namespace, "absent")
