"""worker.runs.create_delivered_run against the real apiserver: one run per delivery key, whatever happens."""

from __future__ import annotations

import threading

import pytest

from activities.errors import KubeNotFoundError, KubeTransientError
from activities.kube import Kube
from crds.execution import DELIVERY_LABEL, PipelineExecution
from crds.meta import ObjectMeta
from crds.pipeline import MAX_DELIVERIES, Pipeline, PipelineSpec
from worker import runs
from worker.bridge import TASK_QUEUE_ANNOTATION
from worker.runs import RunDetails, create_delivered_run, create_run, delivery_key

pytestmark = pytest.mark.integration

NO_WORKER = {TASK_QUEUE_ANNOTATION: "test-runs-without-a-worker"}
PUSH = RunDetails(branch="main", triggered_by="webhook", event="push", commit="a" * 40, ref="refs/heads/main")


def _pipeline(kube: Kube, namespace: str) -> Pipeline:
    return kube.create(
        Pipeline(
            metadata=ObjectMeta(name="app", namespace=namespace, annotations=NO_WORKER),
            spec=PipelineSpec(repositoryUrl="file:///srv/git/app.git"),
        )
    )


def _runs(kube: Kube, namespace: str) -> list[PipelineExecution]:
    return kube.list_resources(PipelineExecution, namespace)


def test_a_delivery_creates_one_run_carrying_its_key_and_the_pipelines_task_queue(
    kube: Kube, namespace: str
) -> None:
    _pipeline(kube, namespace)
    key = delivery_key("github", "d-1")
    first = create_delivered_run(kube, namespace, "app", key, PUSH)
    again = create_delivered_run(kube, namespace, "app", key, PUSH)
    assert first.created and not again.created
    assert again.execution.name == first.execution.name == "app-1"
    assert first.execution.metadata.labels[DELIVERY_LABEL] == key
    assert first.execution.metadata.annotations[TASK_QUEUE_ANNOTATION] == NO_WORKER[TASK_QUEUE_ANNOTATION]
    assert [r.name for r in _runs(kube, namespace)] == ["app-1"]


def test_a_caller_that_died_after_taking_the_number_leaves_the_run_to_the_redelivery(
    kube: Kube, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pipeline(kube, namespace)
    key = delivery_key("github", "d-crash")

    def die(*_: object, **__: object) -> PipelineExecution:
        raise KubeTransientError("the process died before creating the run")

    with monkeypatch.context() as patch:
        patch.setattr(runs, "_create", die)
        with pytest.raises(KubeTransientError):
            create_delivered_run(kube, namespace, "app", key, PUSH)
    assert _runs(kube, namespace) == []
    status = kube.get(Pipeline, namespace, "app").status
    assert status is not None and [(d.key, d.run) for d in status.deliveries] == [(key, 1)]

    redelivered = create_delivered_run(kube, namespace, "app", key, PUSH)
    assert redelivered.created and redelivered.execution.name == "app-1"  # the number it took, not a new one
    assert kube.get(Pipeline, namespace, "app").status.next_run == 2  # type: ignore[union-attr]


def test_a_key_that_aged_out_of_the_pipeline_status_is_still_found_by_its_label(
    kube: Kube, namespace: str
) -> None:
    _pipeline(kube, namespace)
    old = delivery_key("gitlab", "old")
    first = create_delivered_run(kube, namespace, "app", old, PUSH)
    for i in range(MAX_DELIVERIES):
        create_delivered_run(kube, namespace, "app", delivery_key("gitlab", f"new-{i}"), PUSH)
    status = kube.get(Pipeline, namespace, "app").status
    assert status is not None and old not in {d.key for d in status.deliveries}
    again = create_delivered_run(kube, namespace, "app", old, PUSH)
    assert not again.created and again.execution.name == first.execution.name
    assert len(_runs(kube, namespace)) == MAX_DELIVERIES + 1


def test_two_pipelines_of_one_repository_each_get_a_run_of_the_same_delivery(
    kube: Kube, namespace: str
) -> None:
    _pipeline(kube, namespace)
    kube.create(
        Pipeline(
            metadata=ObjectMeta(name="docs", namespace=namespace, annotations=NO_WORKER),
            spec=PipelineSpec(repositoryUrl="file:///srv/git/app.git"),
        )
    )
    # Gitea's identity of a delivery is its body, the same at both hooks; push the first Pipeline's
    # record out of its status so that the second Pipeline's search goes by label.
    key = delivery_key("gitea", "body:push:same")
    app = create_delivered_run(kube, namespace, "app", key, PUSH)
    for i in range(MAX_DELIVERIES):
        create_delivered_run(kube, namespace, "app", delivery_key("gitea", f"other-{i}"), PUSH)
    docs = create_delivered_run(kube, namespace, "docs", key, PUSH)
    assert app.created and docs.created
    assert (app.execution.name, docs.execution.name) == ("app-1", "docs-1")


def test_concurrent_deliveries_of_one_key_and_plain_runs_interleave_without_duplicates_or_gaps(
    kube: Kube, namespace: str
) -> None:
    _pipeline(kube, namespace)
    key = delivery_key("gitea", "same")
    names: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(12)

    def deliver() -> None:
        barrier.wait()
        name = create_delivered_run(kube, namespace, "app", key, PUSH).execution.name
        with lock:
            names.append(name)

    def by_hand() -> None:
        barrier.wait()
        name = create_run(kube, namespace, "app", annotations=NO_WORKER).name
        with lock:
            names.append(name)

    threads = [threading.Thread(target=deliver) for _ in range(10)] + [
        threading.Thread(target=by_hand) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names) == 12
    created = sorted(r.name for r in _runs(kube, namespace))
    assert created == sorted({*names}) and len(created) == 3  # one for the delivery, two by hand
    assert sorted(int(n.rsplit("-", 1)[1]) for n in created) == [1, 2, 3]


def test_a_delivery_for_a_missing_pipeline_is_not_found(kube: Kube, namespace: str) -> None:
    with pytest.raises(KubeNotFoundError):
        create_delivered_run(kube, namespace, "nope", delivery_key("github", "x"), PUSH)
