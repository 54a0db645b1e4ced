"""Webhooks end to end: a provider's payload, pointed at a local repository, goes through the receiver
process, becomes a PipelineExecution and runs to Success on the real worker and jenkins-lite."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from webhook_client import post

from activities.kube import Kube, encode_secret_data
from crds.execution import PipelineExecution
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec
from crds.reasons import ConditionType, ExecutionPhase
from devstack.gitrepo import git, push_commit
from worker.webhooks.events import Provider
from worker.webhooks.secrets import ensure_webhook_secret
from worker.webhooks.signatures import sign

pytestmark = pytest.mark.e2e

PAYLOADS = Path(__file__).resolve().parents[1] / "contract" / "payloads"
PIPELINE = """
branch: [main]
stages:
- name: Test
  steps:
  - runScriptConfig:
      image: alpine
      shellScript: 'echo "token: ${API_TOKEN:-withheld}"; test "${API_TOKEN:-withheld}" = "$EXPECTED"'
    env: {EXPECTED: withheld}
    envFrom:
    - {sourceName: api, sourceKey: token, targetKey: API_TOKEN}
"""


def finished(kube: Kube, ns: str, name: str, wait_until: Callable[..., Any]) -> PipelineExecution:
    def done() -> PipelineExecution | None:
        pe = kube.get(PipelineExecution, ns, name)
        return pe if pe.is_finished else None

    result: PipelineExecution = wait_until(done, 180, f"{ns}/{name} to finish")
    return result


def test_a_pull_request_from_a_fork_runs_to_success_without_the_envfrom_secret(
    kube: Kube,
    webhook_receiver: Any,
    worker_process: Any,
    project_namespace: Callable[..., str],
    git_repo: Callable[..., tuple[str, str]],
    wait_until: Callable[..., Any],
) -> None:
    ns = project_namespace("hookfork")
    url, base_sha = git_repo(PIPELINE)
    head_sha = push_commit(url, {"feature.txt": "from a fork\n"}, "fork change", branch="fork-feature")
    git(Path(url.removeprefix("file://")), "update-ref", "refs/pull/2/head", head_sha)  # as GitHub keeps it
    pipeline = kube.create(
        Pipeline(metadata=ObjectMeta(name="app", namespace=ns), spec=PipelineSpec(repository_url=url))
    )
    secret = ensure_webhook_secret(kube, pipeline).encode()

    doc = json.loads((PAYLOADS / "gitea" / "pull-request-event.json").read_bytes())
    doc["pull_request"]["head"]["sha"] = head_sha
    doc["pull_request"]["base"]["ref"] = "main"
    body = json.dumps(doc).encode()
    headers = {
        "X-Gitea-Event": "pull_request",
        "X-Gitea-Delivery": str(uuid.uuid4()),
        **sign(Provider.GITEA, secret, body),
    }
    status, answer = post(webhook_receiver.port, f"/hooks/gitea/{ns}/app", body, headers)
    assert status == 201, answer

    pe = finished(kube, ns, answer["run"], wait_until)
    assert pe.spec.secrets_withheld and pe.spec.commit == head_sha and pe.spec.ref == "refs/pull/2/head"
    assert pe.status is not None and pe.status.phase == ExecutionPhase.SUCCESS, pe.status
    initialized = pe.status.condition(ConditionType.INITIALIZED)
    assert initialized is not None and "envFrom secrets withheld" in (initialized.message or "")
    assert base_sha != head_sha


def test_a_push_runs_its_commit_with_the_secret_and_the_repositorys_branch_constraint_is_honoured(
    kube: Kube,
    webhook_receiver: Any,
    worker_process: Any,
    project_namespace: Callable[..., str],
    git_repo: Callable[..., tuple[str, str]],
    wait_until: Callable[..., Any],
) -> None:
    ns = project_namespace("hookpush")
    url, sha = git_repo(PIPELINE.replace("EXPECTED: withheld", "EXPECTED: s3cret"))
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "api", "namespace": ns},
            "data": encode_secret_data({"token": "s3cret"}),
        }
    )
    pipeline = kube.create(
        Pipeline(metadata=ObjectMeta(name="app", namespace=ns), spec=PipelineSpec(repository_url=url))
    )
    secret = ensure_webhook_secret(kube, pipeline).encode()

    def push(ref: str, after: str) -> tuple[int, Any]:
        doc = json.loads((PAYLOADS / "github" / "push-branch.json").read_bytes())
        doc["ref"], doc["after"], doc["head_commit"]["id"] = ref, after, after
        body = json.dumps(doc).encode()
        headers = {
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            **sign(Provider.GITHUB, secret, body),
        }
        return post(webhook_receiver.port, f"/hooks/github/{ns}/app", body, headers)

    other = push_commit(url, {"x.txt": "x\n"}, "on another branch", branch="develop")
    status, answer = push("refs/heads/develop", other)
    assert (status, answer["outcome"]) == (200, "skipped")  # the file at that commit says branch: [main]
    assert "develop" in answer["reason"]

    status, answer = push("refs/heads/main", sha)
    assert status == 201, answer
    pe = finished(kube, ns, answer["run"], wait_until)
    assert (pe.spec.event, pe.spec.branch, pe.spec.commit) == ("push", "main", sha)
    assert pe.status is not None and pe.status.phase == ExecutionPhase.SUCCESS, pe.status
    assert len(kube.list_resources(PipelineExecution, ns)) == 1
