"""Creating a run of a Pipeline: the one function the CLI and the webhooks call.

A run number is taken from ``Pipeline.status.nextRun`` with a compare-and-swap: the status subresource
is patched with the ``resourceVersion`` that was read, so of two concurrent callers that read the same
number exactly one wins; the other gets 409, reads again and takes the next number. Then the
execution ``<pipeline>-<run>`` is created. The bridge notices it and starts its workflow.

A number is never handed out twice. It can be skipped (a gap) when creating the execution fails
after the number was taken; when the name is already taken (``nextRun`` was reset by hand, for
example) the next number is taken instead of failing.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import TYPE_CHECKING

from activities.errors import KubeConflictError, KubeTransientError
from activities.kube import Kube
from crds.execution import PIPELINE_LABEL, RUN_LABEL, PipelineExecution, PipelineExecutionSpec
from crds.meta import ObjectMeta, OwnerReference
from crds.pipeline import Pipeline
from crds.pipeline_file import PipelineConfig
from crds.reasons import GitEvent, TriggeredBy

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

logger = logging.getLogger(__name__)

#: How many times a caller retries the compare-and-swap before giving up (each loss means another
#: caller got a number, so this bounds the number of truly concurrent callers, not time).
MAX_ATTEMPTS = 200

#: A random id per create_run call, so a create retried after a lost answer recognises its own object.
REQUEST_ANNOTATION = "devops.cubepaas.io/request-id"


class RunNumberError(RuntimeError):
    """No run number could be taken (too much contention or a persistent conflict)."""


def _kube(client: ApiClient | Kube) -> Kube:
    return client if isinstance(client, Kube) else Kube(client)


def take_run_number(kube_api_client: ApiClient | Kube, namespace: str, pipeline: str) -> tuple[int, Pipeline]:
    """Take the next run number of a Pipeline (CAS on its status); returns it with the Pipeline read.

    Raises :class:`activities.errors.KubeNotFoundError` when the Pipeline does not exist.
    """
    kube = _kube(kube_api_client)
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
    trigger = TriggeredBy(triggered_by)
    git_event = GitEvent(event)
    request_id = uuid.uuid4().hex
    for _ in range(MAX_ATTEMPTS):
        run, pipe = take_run_number(kube, namespace, pipeline)
        name = pipe.execution_name(run)
        execution = PipelineExecution(
            metadata=ObjectMeta(
                name=name,
                namespace=namespace,
                labels={**(labels or {}), PIPELINE_LABEL: pipeline, RUN_LABEL: str(run)},
                annotations={**(annotations or {}), REQUEST_ANNOTATION: request_id},
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
                triggered_by=trigger,
                trigger_user_name=trigger_user or None,
                branch=branch if branch is not None else pipe.spec.default_branch,
                ref=ref or None,
                commit=commit or None,
                event=git_event,
                pipeline_config=pipeline_config,
            ),
        )
        try:
            created = _create(kube, execution)
        except KubeConflictError:
            logger.warning(
                "execution %s/%s already exists (nextRun was behind); taking the next number", namespace, name
            )
            continue
        logger.info("created run %s/%s (run %d, branch %s)", namespace, name, run, execution.spec.branch)
        return created
    raise RunNumberError(f"could not create a run of {namespace}/{pipeline}: every name taken")


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


__all__ = ["MAX_ATTEMPTS", "REQUEST_ANNOTATION", "RunNumberError", "create_run", "take_run_number"]
