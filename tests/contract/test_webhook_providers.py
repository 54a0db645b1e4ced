"""Real provider payloads, signed as each provider signs, through the real receiver process.

The payloads (tests/contract/payloads/, sources in its README) were written by GitHub (via
@octokit/webhooks-examples), GitLab, Atlassian and Gitea, not by us. Each test posts one to
``python -m worker.webhooks`` and checks the PipelineExecution it created on the real apiserver (event,
branch, ref, commit) or the reason it gave for creating none.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from webhook_client import NOT_RUN, post

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec, Triggers
from crds.pipeline_file import PipelineConfig
from worker.webhooks.events import Provider
from worker.webhooks.secrets import ensure_webhook_secret
from worker.webhooks.signatures import sign

pytestmark = pytest.mark.integration

PAYLOADS = Path(__file__).resolve().parent / "payloads"
CONFIG = {
    "stages": [{"name": "Test", "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": "true"}}]}]
}
EVENT_HEADER = {
    Provider.GITHUB: "X-GitHub-Event",
    Provider.GITLAB: "X-Gitlab-Event",
    Provider.BITBUCKET: "X-Event-Key",
    Provider.GITEA: "X-Gitea-Event",
}
DELIVERY_HEADER = {
    Provider.GITHUB: "X-GitHub-Delivery",
    Provider.GITLAB: "X-Gitlab-Event-UUID",
    Provider.BITBUCKET: "X-Request-UUID",
    Provider.GITEA: "X-Gitea-Delivery",
}


@pytest.fixture
def hook_pipeline(kube: Kube, namespace: str) -> Callable[..., tuple[Pipeline, bytes]]:
    """``make(triggers=None, config=CONFIG) -> (Pipeline, webhook secret)`` in the test's namespace."""

    def make(
        triggers: dict[str, Any] | None = None, config: dict[str, Any] | None = None
    ) -> tuple[Pipeline, bytes]:
        pipeline = kube.create(
            Pipeline(
                metadata=ObjectMeta(
                    name=f"app-{uuid.uuid4().hex[:6]}", namespace=namespace, annotations=NOT_RUN
                ),
                spec=PipelineSpec(
                    repository_url="https://git.example.com/team/app.git",
                    triggers=Triggers.model_validate(triggers or {}),
                    config=PipelineConfig.model_validate(config or CONFIG),
                ),
            )
        )
        return pipeline, ensure_webhook_secret(kube, pipeline).encode()

    return make


def deliver(
    receiver: Any,
    provider: Provider,
    pipeline: Pipeline,
    secret: bytes,
    file: str,
    event: str,
    delivery: str | None = None,
) -> tuple[int, Any]:
    body = (PAYLOADS / file).read_bytes()
    headers = {
        EVENT_HEADER[provider]: event,
        DELIVERY_HEADER[provider]: delivery or str(uuid.uuid4()),
        **sign(provider, secret, body),
    }
    return post(receiver.port, f"/hooks/{provider.value}/{pipeline.namespace}/{pipeline.name}", body, headers)


def created_run(kube: Kube, pipeline: Pipeline, answer: Any) -> PipelineExecution:
    assert answer["outcome"] == "created", answer
    runs = kube.list_resources(
        PipelineExecution, pipeline.namespace, label_selector=f"devops.cubepaas.io/pipeline={pipeline.name}"
    )
    assert [r.name for r in runs] == [answer["run"]], "exactly the one run named in the answer"
    return runs[0]


def no_run(kube: Kube, pipeline: Pipeline) -> None:
    runs = kube.list_resources(
        PipelineExecution, pipeline.namespace, label_selector=f"devops.cubepaas.io/pipeline={pipeline.name}"
    )
    assert runs == []


# --- GitHub -----------------------------------------------------------------------------------------------


def test_a_github_branch_push_creates_a_push_run_of_its_after_commit(
    webhook_receiver, kube, hook_pipeline
) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver, Provider.GITHUB, pipeline, secret, "github/push-branch.json", "push"
    )
    assert status == 201
    run = created_run(kube, pipeline, answer).spec
    assert (run.event, run.branch, run.ref, run.commit) == (
        "push",
        "master",
        "refs/heads/master",
        "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    )
    assert run.triggered_by == "webhook"
    assert run.author == "Codertocat" and run.commit_message == "Initial commit"


def test_a_github_tag_push_creates_a_tag_run(webhook_receiver, kube, hook_pipeline) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver, Provider.GITHUB, pipeline, secret, "github/push-tag.json", "push"
    )
    assert status == 201
    run = created_run(kube, pipeline, answer).spec
    assert (run.event, run.ref, run.commit) == (
        "tag",
        "refs/tags/simple-tag",
        "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    )
    assert not run.branch or run.branch == pipeline.spec.default_branch


def test_a_github_tag_deletion_starts_nothing_and_says_so(webhook_receiver, kube, hook_pipeline) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver, Provider.GITHUB, pipeline, secret, "github/push-tag-deleted.json", "push"
    )
    assert (status, answer["outcome"]) == (200, "skipped")
    assert "deleted" in answer["reason"]
    no_run(kube, pipeline)


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
def test_a_github_pull_request_runs_its_head_commit_on_the_pull_ref_with_the_target_branch(
    webhook_receiver, kube, hook_pipeline, action: str
) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver,
        Provider.GITHUB,
        pipeline,
        secret,
        f"github/pull_request-{action}.json",
        "pull_request",
    )
    assert status == 201
    run = created_run(kube, pipeline, answer).spec
    assert (run.event, run.branch, run.ref, run.commit) == (
        "pull_request",
        "master",
        "refs/pull/2/head",
        "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
    )
    assert run.secrets_withheld is False  # head and base are the same repository


def test_a_closed_github_pull_request_starts_nothing(webhook_receiver, kube, hook_pipeline) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver, Provider.GITHUB, pipeline, secret, "github/pull_request-closed.json", "pull_request"
    )
    assert (status, answer["outcome"]) == (200, "ignored")
    assert "closed" in answer["reason"]
    no_run(kube, pipeline)


def test_a_github_ping_is_answered_and_starts_nothing(webhook_receiver, kube, hook_pipeline) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(webhook_receiver, Provider.GITHUB, pipeline, secret, "github/ping.json", "ping")
    assert (status, answer["outcome"]) == (200, "pong")
    no_run(kube, pipeline)


def test_a_push_is_skipped_when_the_pipeline_turned_push_triggers_off(
    webhook_receiver, kube, hook_pipeline
) -> None:
    pipeline, secret = hook_pipeline(triggers={"webhookPush": False})
    status, answer = deliver(
        webhook_receiver, Provider.GITHUB, pipeline, secret, "github/push-branch.json", "push"
    )
    assert (status, answer["outcome"]) == (200, "skipped")
    assert "webhookPush" in answer["reason"]
    no_run(kube, pipeline)


def test_a_push_is_skipped_when_the_pipeline_files_branch_constraint_excludes_it(
    webhook_receiver, kube, hook_pipeline
) -> None:
    pipeline, secret = hook_pipeline(config={**CONFIG, "branch": "main"})
    status, answer = deliver(
        webhook_receiver, Provider.GITHUB, pipeline, secret, "github/push-branch.json", "push"
    )
    assert (status, answer["outcome"]) == (200, "skipped")
    assert "constraints" in answer["reason"] and "master" in answer["reason"]
    no_run(kube, pipeline)


def test_a_pull_request_is_skipped_when_the_pipeline_files_event_constraint_excludes_it(
    webhook_receiver, kube, hook_pipeline
) -> None:
    pipeline, secret = hook_pipeline(config={**CONFIG, "event": ["push", "tag"]})
    status, answer = deliver(
        webhook_receiver, Provider.GITHUB, pipeline, secret, "github/pull_request-opened.json", "pull_request"
    )
    assert (status, answer["outcome"]) == (200, "skipped")
    no_run(kube, pipeline)


def test_a_github_push_without_commits_starts_nothing(webhook_receiver, kube, hook_pipeline) -> None:
    pipeline, secret = hook_pipeline()
    doc = json.loads((PAYLOADS / "github/push-branch.json").read_bytes())
    doc["commits"], doc["head_commit"] = [], None  # e.g. a push that only moved a branch back
    body = json.dumps(doc).encode()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        **sign(Provider.GITHUB, secret, body),
    }
    status, answer = post(
        webhook_receiver.port, f"/hooks/github/{pipeline.namespace}/{pipeline.name}", body, headers
    )
    assert (status, answer["outcome"]) == (200, "skipped")
    assert "carries no commits" in answer["reason"]
    no_run(kube, pipeline)


def test_skip_ci_in_the_head_commit_message_skips_the_run(webhook_receiver, kube, hook_pipeline) -> None:
    pipeline, secret = hook_pipeline()
    doc = json.loads((PAYLOADS / "github/push-branch.json").read_bytes())
    doc["head_commit"]["message"] = "Update docs [skip ci]"
    body = json.dumps(doc).encode()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        **sign(Provider.GITHUB, secret, body),
    }
    status, answer = post(
        webhook_receiver.port, f"/hooks/github/{pipeline.namespace}/{pipeline.name}", body, headers
    )
    assert (status, answer["outcome"]) == (200, "skipped")
    assert "skip ci" in answer["reason"]
    no_run(kube, pipeline)


# --- GitLab -----------------------------------------------------------------------------------------------


def test_a_gitlab_push_hook_creates_a_push_run(webhook_receiver, kube, hook_pipeline) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver, Provider.GITLAB, pipeline, secret, "gitlab/push-event.json", "Push Hook"
    )
    assert status == 201
    run = created_run(kube, pipeline, answer).spec
    assert (run.event, run.branch, run.ref, run.commit) == (
        "push",
        "master",
        "refs/heads/master",
        "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    )
    assert run.author == "GitLab dev user"


def test_a_gitlab_tag_push_hook_creates_a_tag_run(webhook_receiver, kube, hook_pipeline) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver, Provider.GITLAB, pipeline, secret, "gitlab/tag-event.json", "Tag Push Hook"
    )
    assert status == 201
    run = created_run(kube, pipeline, answer).spec
    assert (run.event, run.ref, run.commit) == (
        "tag",
        "refs/tags/v1.0.0",
        "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
    )


def test_a_gitlab_merge_request_runs_the_merge_request_ref_with_the_target_branch(
    webhook_receiver, kube, hook_pipeline
) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver,
        Provider.GITLAB,
        pipeline,
        secret,
        "gitlab/merge-request-event.json",
        "Merge Request Hook",
    )
    assert status == 201
    run = created_run(kube, pipeline, answer).spec
    assert (run.event, run.branch, run.ref, run.commit) == (
        "pull_request",
        "master",
        "refs/merge-requests/1/head",
        "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    )


def test_a_gitlab_merge_request_update_without_new_commits_starts_nothing(
    webhook_receiver, kube, hook_pipeline
) -> None:
    pipeline, secret = hook_pipeline()
    doc = json.loads((PAYLOADS / "gitlab/merge-request-event.json").read_bytes())
    doc["object_attributes"]["action"] = "update"  # a title edit: GitLab sends no oldrev
    body = json.dumps(doc).encode()
    headers = {
        "X-Gitlab-Event": "Merge Request Hook",
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        **sign(Provider.GITLAB, secret, body),
    }
    status, answer = post(
        webhook_receiver.port, f"/hooks/gitlab/{pipeline.namespace}/{pipeline.name}", body, headers
    )
    assert (status, answer["outcome"]) == (200, "ignored")
    assert "without new commits" in answer["reason"]
    no_run(kube, pipeline)


# --- Bitbucket Cloud and Server ---------------------------------------------------------------------------


def test_a_bitbucket_cloud_push_creates_a_push_run(webhook_receiver, kube, hook_pipeline) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver, Provider.BITBUCKET, pipeline, secret, "bitbucket-cloud/repo-push.json", "repo:push"
    )
    assert status == 201
    run = created_run(kube, pipeline, answer).spec
    assert (run.event, run.branch, run.ref, run.commit) == (
        "push",
        "name-of-branch",
        "refs/heads/name-of-branch",
        "709d658dc5b6d6afcd46049c2f332ee3f515a67d",
    )


@pytest.mark.parametrize(
    ("file", "event"),
    [
        ("pull-request-created.json", "pullrequest:created"),
        ("pull-request-updated.json", "pullrequest:updated"),
    ],
)
def test_a_bitbucket_cloud_pull_request_runs_its_source_commit_with_the_target_branch(
    webhook_receiver, kube, hook_pipeline, file: str, event: str
) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver, Provider.BITBUCKET, pipeline, secret, f"bitbucket-cloud/{file}", event
    )
    assert status == 201
    run = created_run(kube, pipeline, answer).spec
    assert (run.event, run.branch, run.ref, run.commit) == (
        "pull_request",
        "master",
        "refs/heads/branch2",
        "d3022fc0ca3d",
    )


def test_a_bitbucket_server_branch_deletion_starts_nothing(webhook_receiver, kube, hook_pipeline) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver,
        Provider.BITBUCKET,
        pipeline,
        secret,
        "bitbucket-server/repo-refs-changed.json",
        "repo:refs_changed",
    )
    assert (status, answer["outcome"]) == (200, "skipped")
    assert "refs/heads/feature/wip was deleted" in answer["reason"]
    no_run(kube, pipeline)


@pytest.mark.parametrize(
    ("file", "event", "number", "commit"),
    [
        ("pr-opened.json", "pr:opened", 5, "32a0b8a740c2963c6f56bd8baf3dc05683d299e0"),
        ("pr-modified.json", "pr:modified", 3, "591f702354b3abf1faaca4d23811620d1b2ac984"),
    ],
)
def test_a_bitbucket_server_pull_request_runs_its_from_commit_with_the_target_branch(
    webhook_receiver, kube, hook_pipeline, file: str, event: str, number: int, commit: str
) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver, Provider.BITBUCKET, pipeline, secret, f"bitbucket-server/{file}", event
    )
    assert status == 201
    run = created_run(kube, pipeline, answer).spec
    assert (run.event, run.branch, run.ref, run.commit) == (
        "pull_request",
        "master",
        f"refs/pull-requests/{number}/from",
        commit,
    )


# --- Gitea ------------------------------------------------------------------------------------------------


def test_a_gitea_push_creates_a_push_run(webhook_receiver, kube, hook_pipeline) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver, Provider.GITEA, pipeline, secret, "gitea/push-event.json", "push"
    )
    assert status == 201
    run = created_run(kube, pipeline, answer).spec
    assert (run.event, run.branch, run.ref, run.commit) == (
        "push",
        "master",
        "refs/heads/master",
        "67b56589a45103f891bdee7c0546e5d40bc02001",
    )


def test_a_gitea_pull_request_from_a_fork_runs_without_envfrom_secrets(
    webhook_receiver, kube, hook_pipeline
) -> None:
    pipeline, secret = hook_pipeline()
    status, answer = deliver(
        webhook_receiver, Provider.GITEA, pipeline, secret, "gitea/pull-request-event.json", "pull_request"
    )
    assert status == 201
    run = created_run(kube, pipeline, answer).spec
    assert (run.event, run.branch, run.ref, run.commit) == (
        "pull_request",
        "master",
        "refs/pull/2/head",
        "48e773f892a831faa47c0a160d1b7f0cd369ae2a",
    )
    assert run.secrets_withheld is True  # example2/example -> example/example


def test_a_fork_pull_request_gets_secrets_when_the_pipeline_opts_in(
    webhook_receiver, kube, hook_pipeline
) -> None:
    pipeline, secret = hook_pipeline(triggers={"forkPullRequestSecrets": True})
    status, answer = deliver(
        webhook_receiver, Provider.GITEA, pipeline, secret, "gitea/pull-request-event.json", "pull_request"
    )
    assert status == 201
    assert created_run(kube, pipeline, answer).spec.secrets_withheld is False
