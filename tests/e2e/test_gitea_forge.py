"""Source-code providers against a real forge: a Gitea user's credential is verified and its repositories
mirrored, a Pipeline gets its webhook registered at Gitea, a real ``git push`` and a pull request opened
through Gitea's API start runs through the real receiver and worker, Gitea's replay of a delivery starts
none, a revoked token turns the credential not Ready with Gitea's words, and deleting the Pipeline
deletes the hook. Nothing here writes a status: the worker does."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from activities.errors import KubeNotFoundError
from activities.kube import Kube, encode_secret_data
from crds.execution import PipelineExecution
from crds.meta import ObjectMeta, SecretKeyReference
from crds.pipeline import Pipeline, PipelineSpec
from crds.reasons import ConditionStatus, ExecutionPhase, ScmConditionType, SourceCodeProviderType
from crds.sourcecode import (
    SourceCodeCredential,
    SourceCodeCredentialSpec,
    SourceCodeProviderConfig,
    SourceCodeProviderConfigSpec,
    SourceCodeRepository,
)

pytestmark = pytest.mark.e2e

SYNC = 60.0  # the e2e worker syncs every 5 s; Gitea delivers from a queue
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
PIPELINE_FILE = """\
branch: [main, feature]
stages:
- name: Test
  steps:
  - runScriptConfig:
      image: alpine
      shellScript: test -f version.txt
"""


def _session(token: str | None = None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback: no proxy from the environment
    if token:
        session.headers["Authorization"] = f"token {token}"
    return session


def _git(*args: str, cwd: Path) -> str:
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }
    result = subprocess.run(
        ["git", "-c", "user.name=E2E", "-c", "user.email=e2e@devstack.invalid", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


@dataclass(frozen=True)
class GiteaUser:
    url: str
    user: str
    password: str
    token: str
    token_id: int
    work: Path

    def push_url(self, repo: str) -> str:
        host = self.url.removeprefix("http://")
        return f"http://{self.user}:{self.password}@{host}/{self.user}/{repo}.git"

    def clone_url(self, repo: str) -> str:
        return f"{self.url}/{self.user}/{repo}.git"

    def commit_and_push(self, message: str, branch: str = "main") -> str:
        (self.work / "version.txt").write_text(f"{message}\n")
        _git("add", "-A", cwd=self.work)
        _git("commit", "-q", "-m", message, cwd=self.work)
        _git("push", "-q", self.push_url("app"), f"HEAD:refs/heads/{branch}", cwd=self.work)
        return _git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture(scope="module")
def gitea(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> GiteaUser:
    """A new Gitea user with a token and a repository ``app`` holding the pipeline file."""
    url = stack_env["GITEA_URL"]
    admin = _session(stack_env["GITEA_ADMIN_TOKEN"])
    user, password = f"e{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    made = admin.post(
        f"{url}/api/v1/admin/users",
        json={"username": user, "email": f"{user}@devstack.invalid", "password": password,
              "must_change_password": False},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    token = _session().post(
        f"{url}/api/v1/users/{user}/tokens",
        auth=(user, password),
        json={"name": "cubepaas", "scopes": ["write:repository", "write:user"]},
    )
    assert token.status_code == 201, token.text
    repo = admin.post(
        f"{url}/api/v1/admin/users/{user}/repos", json={"name": "app", "default_branch": "main"}
    )
    assert repo.status_code == 201, repo.text
    work = tmp_path_factory.mktemp("gitea-e2e")
    _git("init", "-q", "-b", "main", cwd=work)
    (work / ".cubepaas.devops.yml").write_text(PIPELINE_FILE)
    forge = GiteaUser(url, user, password, token.json()["sha1"], token.json()["id"], work)
    forge.commit_and_push("first")
    deadline = time.monotonic() + SYNC
    while admin.get(f"{url}/api/v1/repos/{user}/app").json()["empty"]:  # Gitea indexes a push from a queue
        assert time.monotonic() < deadline, "Gitea did not process the first push"
        time.sleep(0.3)
    return forge


@dataclass(frozen=True)
class Project:
    namespace: str
    forge: GiteaUser


@pytest.fixture(scope="module")
def project(
    kube: Kube, gitea: GiteaUser, project_namespace: Callable[..., str], worker_process: Any
) -> Project:
    """A project namespace with a ``gitea`` provider and the user's credential (its token in a Secret)."""
    ns = project_namespace("gitea")
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "gitea-token", "namespace": ns},
            "data": encode_secret_data({"token": gitea.token}),
        }
    )
    kube.create(
        SourceCodeProviderConfig(
            metadata=ObjectMeta(name="gitea", namespace=ns),
            spec=SourceCodeProviderConfigSpec(type=SourceCodeProviderType.GITEA, url=gitea.url),
        )
    )
    kube.create(
        SourceCodeCredential(
            metadata=ObjectMeta(name="me", namespace=ns),
            spec=SourceCodeCredentialSpec(
                provider_type=SourceCodeProviderType.GITEA,
                provider_config_name="gitea",
                login_name=gitea.user,
                token_secret_ref=SecretKeyReference(name="gitea-token", key="token"),
            ),
        )
    )
    return Project(ns, gitea)


def _ready(kube: Kube, ns: str) -> tuple[str, str]:
    cred = kube.get(SourceCodeCredential, ns, "me")
    cond = cred.status.condition(ScmConditionType.READY) if cred.status else None
    return (cond.status.value, cond.message or "") if cond else ("", "")


def _repositories(kube: Kube, ns: str) -> dict[str, SourceCodeRepository]:
    return {r.spec.full_name: r for r in kube.list_resources(SourceCodeRepository, ns)}


def _hooks(forge: GiteaUser) -> list[dict[str, Any]]:
    listed = _session(forge.token).get(f"{forge.url}/api/v1/repos/{forge.user}/app/hooks")
    assert listed.status_code == 200, listed.text
    hooks: list[dict[str, Any]] = listed.json()
    return hooks


def _runs(kube: Kube, ns: str) -> list[PipelineExecution]:
    return kube.list_resources(PipelineExecution, ns)


def _finished(
    kube: Kube, ns: str, wait_until: Callable[..., Any], pick: Callable[[PipelineExecution], bool]
) -> PipelineExecution:
    def done() -> PipelineExecution | None:
        for pe in _runs(kube, ns):
            if pick(pe) and pe.is_finished:
                return pe
        return None

    found: PipelineExecution = wait_until(done, 240, f"a finished run in {ns}")
    return found


def test_a_gitea_credential_turns_ready_and_mirrors_the_users_repositories_including_a_new_one(
    kube: Kube, project: Project, wait_until: Callable[..., Any]
) -> None:
    ns, forge = project.namespace, project.forge
    wait_until(lambda: _ready(kube, ns)[0] == ConditionStatus.TRUE.value, SYNC, "the credential Ready")
    cred = kube.get(SourceCodeCredential, ns, "me")
    assert cred.status is not None and cred.status.account is not None
    assert cred.status.account.login == forge.user and cred.status.last_verified is not None
    repos = wait_until(lambda: _repositories(kube, ns) or None, SYNC, "the mirrored repositories")
    app = repos[f"{forge.user}/app"]
    assert app.spec.url == forge.clone_url("app") and app.spec.default_branch == "main"
    assert app.spec.permissions.admin and app.spec.source_code_credential_name == "me"

    made = _session(forge.token).post(
        f"{forge.url}/api/v1/user/repos", json={"name": "later", "private": True}
    )
    assert made.status_code == 201, made.text
    repos = wait_until(
        lambda: (r := _repositories(kube, ns)) and f"{forge.user}/later" in r and r,
        SYNC,
        "the new repository",
    )
    assert repos[f"{forge.user}/later"].spec.private is True


def test_a_pipeline_gets_its_hook_at_gitea_and_a_git_push_runs_exactly_once_and_a_replay_not_again(
    kube: Kube, project: Project, webhook_receiver: Any, wait_until: Callable[..., Any]
) -> None:
    ns, forge = project.namespace, project.forge
    wait_until(lambda: _ready(kube, ns)[0] == ConditionStatus.TRUE.value, SYNC, "the credential Ready")
    kube.create(
        Pipeline(
            metadata=ObjectMeta(name="app", namespace=ns),
            spec=PipelineSpec(repository_url=forge.clone_url("app"), source_code_credential_name="me"),
        )
    )

    def registered() -> str | None:
        status = kube.get(Pipeline, ns, "app").status
        return status.webhook_id if status else None

    hook_id = wait_until(registered, SYNC, "status.webhookId")
    hook = {str(h["id"]): h for h in _hooks(forge)}[hook_id]
    assert hook["active"] and hook["config"]["url"].endswith(f"/hooks/gitea/{ns}/app")
    assert set(hook["events"]) >= {"push", "pull_request"}, hook["events"]

    commit = forge.commit_and_push("pushed")
    run = _finished(kube, ns, wait_until, lambda pe: pe.spec.commit == commit)
    assert (run.spec.event, run.spec.branch) == ("push", "main")
    assert run.status is not None and run.status.phase == ExecutionPhase.SUCCESS, run.status
    assert [pe.spec.commit for pe in _runs(kube, ns)] == [commit]

    # Gitea's web UI replays a delivery: same body, a new delivery id. The receiver must see it as the
    # same delivery; Gitea's page shows what the receiver answered.
    web = _session()
    login = web.post(f"{forge.url}/user/login", data={"user_name": forge.user, "password": forge.password})
    assert login.status_code == 200 and "/user/login" not in login.url, login.url
    page_url = f"{forge.url}/{forge.user}/app/settings/hooks/{hook_id}"
    page = web.get(page_url).text
    assert "duplicate" not in page  # the push's own delivery was answered "created"
    uuids = re.findall(UUID, page)
    assert uuids, "Gitea lists the hook's deliveries"
    before = len(set(uuids))
    replay = web.post(f"{page_url}/replay/{uuids[0]}")
    assert replay.status_code == 200, replay.text[:300]

    def replayed() -> str | None:
        page = web.get(page_url).text
        found = set(re.findall(UUID, page))
        return page if len(found) > before and "duplicate" in page else None

    wait_until(replayed, SYNC, "Gitea to show the replay answered as a duplicate")
    assert [pe.spec.commit for pe in _runs(kube, ns)] == [commit]


def test_a_pull_request_opened_through_giteas_api_runs_on_its_head(
    kube: Kube, project: Project, webhook_receiver: Any, wait_until: Callable[..., Any]
) -> None:
    ns, forge = project.namespace, project.forge
    assert _hooks(forge), "the hook registered by the test before"
    head = forge.commit_and_push("feature work", branch="feature")
    opened = _session(forge.token).post(
        f"{forge.url}/api/v1/repos/{forge.user}/app/pulls",
        json={"head": "feature", "base": "main", "title": "A feature"},
    )
    assert opened.status_code == 201, opened.text
    run = _finished(kube, ns, wait_until, lambda pe: pe.spec.event == "pull_request")
    assert run.spec.commit == head, run.spec
    assert run.status is not None and run.status.phase == ExecutionPhase.SUCCESS, run.status


def test_deleting_the_pipeline_deletes_its_hook_and_a_revoked_token_turns_the_credential_not_ready(
    kube: Kube, project: Project, wait_until: Callable[..., Any]
) -> None:
    ns, forge = project.namespace, project.forge
    wait_until(lambda: _ready(kube, ns)[0] == ConditionStatus.TRUE.value, SYNC, "the credential Ready")
    # The hook is deleted with the Pipeline while the token still works; then the token goes.
    hook_id = kube.get(Pipeline, ns, "app").status.webhook_id  # type: ignore[union-attr]  # set by the test above
    kube.delete(Pipeline, ns, "app")

    def gone() -> bool:
        try:
            kube.get(Pipeline, ns, "app")
        except KubeNotFoundError:
            return True
        return False

    wait_until(gone, SYNC, "the Pipeline deleted (finalizer released)")
    assert hook_id not in {str(h["id"]) for h in _hooks(forge)}

    deleted = _session().delete(
        f"{forge.url}/api/v1/users/{forge.user}/tokens/{forge.token_id}", auth=(forge.user, forge.password)
    )
    assert deleted.status_code == 204, deleted.text
    wait_until(lambda: _ready(kube, ns)[0] == ConditionStatus.FALSE.value, SYNC, "the credential not Ready")
    assert "invalid username, password or token" in _ready(kube, ns)[1]
