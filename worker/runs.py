"""Creating a run of a Pipeline: the one function the CLI and the webhooks call.

A run number is taken from ``Pipeline.status.nextRun`` with a compare-and-swap: the status subresource
is patched with the ``resourceVersion`` that was read, so of two concurrent callers that read the same
number exactly one wins; the other gets 409, reads again and takes the next number. Then the
execution ``<pipeline>-<run>`` is created. The bridge notices it and starts its workflow.

A number is never handed out twice. It can be skipped (a gap) when creating the execution fails
after the number was taken; when the name is already taken (``nextRun`` was reset by hand, for
example) the next number is taken instead of failing.

**Exactly one run per delivery.** A run started by a delivery (a webhook's delivery id, a schedule
firing, a polled commit) passes ``delivery``: its key (sha256 of ``<source>:<id>``) is written into
``Pipeline.status.deliveries`` in the SAME compare-and-swap that takes the number, and the execution
``<pipeline>-<run>`` carries it as the label ``devops.cubepaas.io/delivery``. A redelivery — later, after
a lost answer, from another replica or ten at once — finds the key (in the status, or by label once it
aged out of the status) and gets the run it took the first time; if that run's creation was interrupted
after the number was taken, the redelivery creates it under that same name. All state is in the
cluster, none in memory.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from activities.errors import KubeConflictError, KubeTransientError
from activities.kube import Kube
from activities.locks import KeyedLocks
from crds.execution import (
    DELIVERY_LABEL,
    PIPELINE_LABEL,
    RUN_LABEL,
    PipelineExecution,
    PipelineExecutionSpec,
)
from crds.meta import ObjectMeta, OwnerReference
from crds.pipeline import MAX_DELIVERIES, DeliveryRecord, Pipeline
from crds.pipeline_file import PipelineConfig
from crds.reasons import GitEvent, TriggeredBy
from worker.bridge import TASK_QUEUE_ANNOTATION

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

logger = logging.getLogger(__name__)

#: How many times a caller retries the compare-and-swap before giving up (each loss means another
#: caller got a number, so this bounds the number of truly concurrent callers, not time).
MAX_ATTEMPTS = 200

#: A random id per create_run call, so a create retried after a lost answer recognises its own object.
REQUEST_ANNOTATION = "devops.cubepaas.io/request-id"

#: Callers of this process take a Pipeline's numbers in turn (a CLI or webhook burst is not 409s).
_NUMBERS = KeyedLocks()


class RunNumberError(RuntimeError):
    """No run number could be taken (too much contention or a persistent conflict)."""


def delivery_key(source: str, delivery_id: str) -> str:
    """The key of one delivery: 40 hex characters of sha256(``<source>:<id>``) (a valid label value)."""
    return hashlib.sha256(f"{source}:{delivery_id}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class RunDetails:
    """What a run builds and why; every field optional (empty = the Pipeline's default)."""

    branch: str | None = None
    triggered_by: str = "user"
    trigger_user: str = ""
    event: str = "manual"
    commit: str = ""
    ref: str = ""
    author: str = ""
    commit_message: str = ""
    html_link: str = ""
    variables: tuple[tuple[str, str], ...] = ()
    secrets_withheld: bool = False


@dataclass(frozen=True)
class DeliveredRun:
    """The run of a delivery; ``created`` is False when an earlier delivery of the same key created it."""

    execution: PipelineExecution
    created: bool


def _kube(client: ApiClient | Kube) -> Kube:
    return client if isinstance(client, Kube) else Kube(client)


def take_run_number(kube_api_client: ApiClient | Kube, namespace: str, pipeline: str) -> tuple[int, Pipeline]:
    """Take the next run number of a Pipeline (CAS on its status); returns it with the Pipeline read.

    Raises :class:`activities.errors.KubeNotFoundError` when the Pipeline does not exist.
    """
    kube = _kube(kube_api_client)
    with _NUMBERS.hold((namespace, pipeline)):
        return _take_run_number(kube, namespace, pipeline)


def _take_run_number(kube: Kube, namespace: str, pipeline: str) -> tuple[int, Pipeline]:
    for attempt in range(MAX_ATTEMPTS):
        current = kube.get(Pipeline, namespace, pipeline)
        run = current.status.next_run if current.status else 1
        try:
            kube.patch_status(
                Pipeline,
                namespace,
                pipeline,
                {"nextRun": run + 1},
                resource_version=current.metadata.resource_version,
            )
        except KubeConflictError:
            # Someone else took this number (or changed the Pipeline): read again, take the next one.
            time.sleep(random.uniform(0, min(0.2, 0.005 * (attempt + 1))))
            continue
        except KubeTransientError as err:
            logger.warning("taking a run number of %s/%s: %s; retrying", namespace, pipeline, err)
            time.sleep(min(2.0, 0.1 * 2 ** min(attempt, 5)))
            continue
        return run, current
    raise RunNumberError(f"could not take a run number of {namespace}/{pipeline} in {MAX_ATTEMPTS} attempts")


def create_run(
    kube_api_client: ApiClient | Kube,
    namespace: str,
    pipeline: str,
    *,
    branch: str | None = None,
    triggered_by: str = "user",
    trigger_user: str = "",
    event: str = "manual",
    commit: str = "",
    ref: str = "",
    pipeline_config: PipelineConfig | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> PipelineExecution:
    """Create the next run of ``namespace/pipeline`` and return the created PipelineExecution.

    ``branch`` defaults to the Pipeline's ``defaultBranch``. The execution carries the labels
    ``devops.cubepaas.io/pipeline`` and ``devops.cubepaas.io/run`` and an owner reference to the
    Pipeline (deleting the Pipeline deletes its runs).
    """
    kube = _kube(kube_api_client)
    details = RunDetails(
        branch=branch,
        triggered_by=triggered_by,
        trigger_user=trigger_user,
        event=event,
        commit=commit,
        ref=ref,
    )
    request_id = uuid.uuid4().hex
    for _ in range(MAX_ATTEMPTS):
        run, pipe = take_run_number(kube, namespace, pipeline)
        execution = _execution(pipe, run, details, pipeline_config, labels, annotations, request_id)
        try:
            created = _create(kube, execution)
        except KubeConflictError:
            logger.warning(
                "execution %s/%s already exists (nextRun was behind); taking the next number",
                namespace,
                execution.name,
            )
            continue
        logger.info(
            "created run %s/%s (run %d, branch %s)", namespace, execution.name, run, execution.spec.branch
        )
        return created
    raise RunNumberError(f"could not create a run of {namespace}/{pipeline}: every name taken")


def create_delivered_run(
    kube_api_client: ApiClient | Kube,
    namespace: str,
    pipeline: str,
    delivery: str,
    details: RunDetails,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> DeliveredRun:
    """The one run of ``delivery`` (a :func:`delivery_key`): created now, or the one created before.

    Raises :class:`activities.errors.KubeNotFoundError` when the Pipeline does not exist.
    """
    kube = _kube(kube_api_client)
    with _NUMBERS.hold((namespace, pipeline)):
        return _create_delivered_run(kube, namespace, pipeline, delivery, details, labels, annotations)


def _create_delivered_run(
    kube: Kube,
    namespace: str,
    pipeline: str,
    delivery: str,
    details: RunDetails,
    labels: dict[str, str] | None,
    annotations: dict[str, str] | None,
) -> DeliveredRun:
    request_id = uuid.uuid4().hex
    all_labels = {**(labels or {}), DELIVERY_LABEL: delivery}
    for attempt in range(MAX_ATTEMPTS):
        pipe = kube.get(Pipeline, namespace, pipeline)
        status = pipe.status
        records = list(status.deliveries) if status else []
        record = next((r for r in records if r.key == delivery), None)
        if record is not None:
            existing = kube.find(PipelineExecution, namespace, pipe.execution_name(record.run))
            if existing is None:
                # The number was taken but the run not created (the first caller stopped): create it.
                execution = _execution(pipe, record.run, details, None, all_labels, annotations, request_id)
                try:
                    return DeliveredRun(_create(kube, execution), True)
                except KubeConflictError:
                    continue  # created meanwhile by a concurrent redelivery: read it next round
            if existing.metadata.labels.get(DELIVERY_LABEL) == delivery:
                return DeliveredRun(existing, False)
            records = [r for r in records if r.key != delivery]  # its name was taken by another run
        else:
            # Scoped to this Pipeline: two Pipelines of one repository each get the same body (and,
            # from Gitea, the same delivery identity), and each must get its run.
            aged_out = kube.list_resources(
                PipelineExecution,
                namespace,
                label_selector=f"{DELIVERY_LABEL}={delivery},{PIPELINE_LABEL}={pipeline}",
            )
            if aged_out:
                return DeliveredRun(aged_out[0], False)
        run = status.next_run if status else 1
        records = [*records, DeliveryRecord(key=delivery, run=run)][-MAX_DELIVERIES:]
        try:
            kube.patch_status(
                Pipeline,
                namespace,
                pipeline,
                {"nextRun": run + 1, "deliveries": [r.to_dict() for r in records]},
                resource_version=pipe.metadata.resource_version,
            )
        except KubeConflictError:
            time.sleep(random.uniform(0, min(0.2, 0.005 * (attempt + 1))))
            continue
        except KubeTransientError as err:
            logger.warning("taking a run number of %s/%s: %s; retrying", namespace, pipeline, err)
            time.sleep(min(2.0, 0.1 * 2 ** min(attempt, 5)))
            continue
        execution = _execution(pipe, run, details, None, all_labels, annotations, request_id)
        try:
            created = _create(kube, execution)
        except KubeConflictError:
            continue  # a concurrent redelivery created it, or the name was taken: the next round decides
        logger.info("created run %s/%s (run %d) for a delivery", namespace, execution.name, run)
        return DeliveredRun(created, True)
    raise RunNumberError(f"could not create the run of a delivery of {namespace}/{pipeline}")


def _execution(
    pipe: Pipeline,
    run: int,
    details: RunDetails,
    pipeline_config: PipelineConfig | None,
    labels: dict[str, str] | None,
    annotations: dict[str, str] | None,
    request_id: str,
) -> PipelineExecution:
    namespace, pipeline = pipe.namespace, pipe.name
    # A Pipeline pinned to a task queue gets its runs there (unless the caller says otherwise).
    queue = pipe.metadata.annotations.get(TASK_QUEUE_ANNOTATION)
    annotations = {**({TASK_QUEUE_ANNOTATION: queue} if queue else {}), **(annotations or {})}
    return PipelineExecution(
        metadata=ObjectMeta(
            name=pipe.execution_name(run),
            namespace=namespace,
            labels={**(labels or {}), PIPELINE_LABEL: pipeline, RUN_LABEL: str(run)},
            annotations={**annotations, REQUEST_ANNOTATION: request_id},
            owner_references=[
                OwnerReference(
                    api_version=pipe.api_version,
                    kind=pipe.kind,
                    name=pipeline,
                    uid=pipe.metadata.uid or "",
                )
            ]
            if pipe.metadata.uid
            else [],
        ),
        spec=PipelineExecutionSpec(
            pipeline_name=pipeline,
            run=run,
            triggered_by=TriggeredBy(details.triggered_by),
            trigger_user_name=details.trigger_user or None,
            branch=details.branch if details.branch is not None else pipe.spec.default_branch,
            ref=details.ref or None,
            commit=details.commit or None,
            event=GitEvent(details.event),
            author=details.author or None,
            commit_message=details.commit_message[:1024] or None,
            html_link=details.html_link or None,
            variables=dict(details.variables),
            secrets_withheld=details.secrets_withheld,
            pipeline_config=pipeline_config,
        ),
    )


def _create(kube: Kube, execution: PipelineExecution, attempts: int = 5) -> PipelineExecution:
    """Create, retrying transient faults (not a 409: the name is taken) a few times."""
    request_id = execution.metadata.annotations[REQUEST_ANNOTATION]
    for attempt in range(attempts):
        try:
            return kube.create(execution)
        except KubeConflictError:
            # After a transient failure the first create may have succeeded: then it is ours.
            existing = kube.find(PipelineExecution, execution.namespace, execution.name) if attempt else None
            if existing is not None and existing.metadata.annotations.get(REQUEST_ANNOTATION) == request_id:
                return existing
            raise
        except KubeTransientError as err:
            if attempt == attempts - 1:
                raise
            logger.warning("creating %s: %s; retrying", execution.metadata.name, err)
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


__all__ = [
    "MAX_ATTEMPTS",
    "REQUEST_ANNOTATION",
    "DeliveredRun",
    "RunDetails",
    "RunNumberError",
    "create_delivered_run",
    "create_run",
    "delivery_key",
    "take_run_number",
]
