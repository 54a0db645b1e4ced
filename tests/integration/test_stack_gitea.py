"""The local git forge (Gitea): its API, git over HTTP, signed push webhooks to a receiver on loopback,
what it offers to deliver a hook again, revoked tokens, and its state across a restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.proc import wait_for
from devstack.stack import Stack
from devstack.testbin import GITEA_VERSION

pytestmark = pytest.mark.integration

DELIVERY_DEADLINE = 30.0  # Gitea delivers from a queue, after the push has returned


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST (and answers 200)."""

    server: ThreadingHTTPServer
    deliveries: list[Delivery] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/gitea"

    def wait(self, predicate: Callable[[Delivery], bool], what: str) -> Delivery:
        deadline = time.monotonic() + DELIVERY_DEADLINE
        with self.changed:
            while True:
                for delivery in self.deliveries:
                    if predicate(delivery):
                        return delivery
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [
                        (d.headers.get("X-Gitea-Event"), d.headers.get("X-Gitea-Delivery"))
                        for d in self.deliveries
                    ]
                    raise AssertionError(f"no {what} within {DELIVERY_DEADLINE:.0f}s; received: {seen}")
                self.changed.wait(left)


@dataclass(frozen=True)
class Forge:
    """A user of the stack's Gitea with a repository holding one pushed commit."""

    url: str
    user: str
    password: str
    token: str
    token_id: int
    repo: str
    commit: str
    work: Path

    def repo_url(self, *, secret: str | None = None) -> str:
        """The clone URL, with ``user:secret`` (the password by default) in it."""
        host = self.url.removeprefix("http://")
        return f"http://{self.user}:{secret or self.password}@{host}/{self.user}/{self.repo}.git"


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
        ["git", "-c", "user.name=Stack Test", "-c", "user.email=stacktest@devstack.invalid", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def _commit_and_push(forge_url: str, work: Path, message: str) -> str:
    (work / "version.txt").write_text(f"{message}\n")
    _git("add", "version.txt", cwd=work)
    _git("commit", "-q", "-m", message, cwd=work)
    _git("push", "-q", forge_url, "HEAD:refs/heads/main", cwd=work)
    return _git("rev-parse", "HEAD", cwd=work)


@pytest.fixture(scope="module")
def admin(stack_env: dict[str, str]) -> requests.Session:
    return _session(stack_env["GITEA_ADMIN_TOKEN"])


@pytest.fixture(scope="module")
def forge(
    stack_env: dict[str, str], admin: requests.Session, tmp_path_factory: pytest.TempPathFactory
) -> Forge:
    url = stack_env["GITEA_URL"]
    user, password = f"t{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    made = admin.post(
        f"{url}/api/v1/admin/users",
        json={"username": user, "email": f"{user}@devstack.invalid", "password": password,
              "must_change_password": False},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    # A user's tokens are made with the user's basic-auth credentials (a token may not make tokens).
    token = _session().post(
        f"{url}/api/v1/users/{user}/tokens",
        auth=(user, password),
        json={"name": "stacktest", "scopes": ["write:repository", "write:user"]},
    )
    assert token.status_code == 201, token.text
    repo = admin.post(
        f"{url}/api/v1/admin/users/{user}/repos", json={"name": "app", "default_branch": "main"}
    )
    assert repo.status_code == 201, repo.text
    assert repo.json()["owner"]["login"] == user and repo.json()["empty"] is True

    work = tmp_path_factory.mktemp("gitea-work")
    _git("init", "-q", "-b", "main", cwd=work)
    partial = Forge(url, user, password, token.json()["sha1"], token.json()["id"], "app", "", work)
    commit = _commit_and_push(partial.repo_url(), work, "first")
    # Gitea processes a push from a queue: until it has, the repository is still "empty", and v1.27.3
    # answers GET .../branches/main with a 500 (a nil GitRepo) although the branch exists.
    wait_for(
        lambda: admin.get(f"{url}/api/v1/repos/{user}/app").json()["empty"] is False,
        DELIVERY_DEADLINE,
        "the first push to be processed (repository no longer empty)",
    )
    return Forge(url, user, password, partial.token, partial.token_id, "app", commit, work)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")
            with holder[0].changed:
                holder[0].deliveries.append(Delivery(dict(self.headers.items()), body))
                holder[0].changed.notify_all()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Receiver(server))
    thread = threading.Thread(target=server.serve_forever, name="gitea-hook-receiver", daemon=True)
    thread.start()
    yield holder[0]
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Hooked:
    hook_id: int
    secret: str
    commit: str
    delivery: Delivery


@pytest.fixture(scope="module")
def hooked(forge: Forge, receiver: Receiver) -> Hooked:
    """A push webhook on the forge's repository, and the delivery of one pushed commit."""
    secret = uuid.uuid4().hex
    made = _session(forge.token).post(
        f"{forge.url}/api/v1/repos/{forge.user}/{forge.repo}/hooks",
        json={"type": "gitea", "active": True, "events": ["push"], "branch_filter": "*",
              "config": {"url": receiver.url, "content_type": "json", "secret": secret}},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    commit = _commit_and_push(forge.repo_url(), forge.work, "hooked")
    delivery = receiver.wait(lambda d: d.payload.get("after") == commit, f"push hook for {commit}")
    return Hooked(made.json()["id"], secret, commit, delivery)


def test_the_api_answers_and_the_admin_token_is_the_admins(
    stack_env: dict[str, str], admin: requests.Session
) -> None:
    url = stack_env["GITEA_URL"]
    assert url.startswith("http://127.0.0.1:")
    version = _session().get(f"{url}/api/v1/version")
    assert version.status_code == 200 and version.json() == {"version": GITEA_VERSION.removeprefix("v")}
    me = admin.get(f"{url}/api/v1/user")
    assert me.status_code == 200, me.text
    assert me.json()["login"] == stack_env["GITEA_ADMIN_USER"] == "devstack-admin"
    assert me.json()["is_admin"] is True
    # The password in the env is the admin's too (basic auth on the API).
    basic = _session().get(
        f"{url}/api/v1/user", auth=(stack_env["GITEA_ADMIN_USER"], stack_env["GITEA_ADMIN_PASSWORD"])
    )
    assert basic.status_code == 200 and basic.json()["login"] == "devstack-admin"


def test_a_commit_pushed_over_http_by_a_new_user_comes_back_in_a_clone_and_in_the_api(
    forge: Forge, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    _git("clone", "-q", forge.repo_url(secret=forge.token), str(clone), cwd=tmp_path)  # a token as password
    assert _git("rev-parse", "HEAD", cwd=clone) == forge.commit
    assert (clone / "version.txt").read_text() == "first\n"
    branch = _session(forge.token).get(f"{forge.url}/api/v1/repos/{forge.user}/{forge.repo}/branches/main")
    assert branch.status_code == 200, branch.text
    assert branch.json()["commit"]["id"] == _git("rev-parse", "HEAD", cwd=forge.work)  # the forge's last push


def test_a_push_delivers_a_push_hook_signed_with_the_hooks_secret_to_a_receiver_on_loopback(
    forge: Forge, hooked: Hooked
) -> None:
    delivery = hooked.delivery
    assert delivery.headers["X-Gitea-Event"] == "push"
    expected = hmac.new(hooked.secret.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(delivery.headers["X-Gitea-Signature"], expected)
    assert delivery.headers["X-Hub-Signature-256"] == f"sha256={expected}"  # GitHub's header, too
    payload = delivery.payload
    assert payload["after"] == hooked.commit and payload["before"] == forge.commit
    assert payload["ref"] == "refs/heads/main"
    assert payload["repository"]["full_name"] == f"{forge.user}/{forge.repo}"
    assert [c["id"] for c in payload["commits"]] == [hooked.commit]
    assert delivery.headers["X-Gitea-Delivery"]  # a UUID per delivery


def test_the_api_shows_the_hook_and_its_test_endpoint_sends_a_new_delivery_but_lists_none(
    forge: Forge, receiver: Receiver, hooked: Hooked
) -> None:
    api = _session(forge.token)
    hooks = f"{forge.url}/api/v1/repos/{forge.user}/{forge.repo}/hooks"
    listed = api.get(hooks)
    assert listed.status_code == 200 and hooked.hook_id in [h["id"] for h in listed.json()]
    hook = api.get(f"{hooks}/{hooked.hook_id}")
    assert hook.status_code == 200, hook.text
    assert hook.json()["active"] is True and hook.json()["events"] == ["push"]
    assert hook.json()["config"] == {"url": receiver.url, "content_type": "json"}  # the secret is not shown
    # v1.27 has no API for a hook's deliveries (nor for redelivering one): only the web UI shows them.
    assert api.get(f"{hooks}/{hooked.hook_id}/deliveries").status_code == 404

    before = {d.headers["X-Gitea-Delivery"] for d in receiver.deliveries}
    tested = api.post(f"{hooks}/{hooked.hook_id}/tests")
    assert tested.status_code == 204, tested.text
    fresh = receiver.wait(lambda d: d.headers["X-Gitea-Delivery"] not in before, "the test delivery")
    # A new push event for the branch's head commit, signed like the others; not the same delivery.
    assert fresh.headers["X-Gitea-Event"] == "push"
    assert fresh.payload["after"] == hooked.commit
    signature = hmac.new(hooked.secret.encode(), fresh.body, hashlib.sha256).hexdigest()
    assert fresh.headers["X-Gitea-Signature"] == signature


def test_the_web_ui_replays_a_delivery_with_the_same_body_and_signature_and_a_new_delivery_id(
    forge: Forge, receiver: Receiver, hooked: Hooked
) -> None:
    web = _session()
    login = web.post(f"{forge.url}/user/login", data={"user_name": forge.user, "password": forge.password})
    assert login.status_code == 200 and "/user/login" not in login.url, login.url
    original = hooked.delivery.headers["X-Gitea-Delivery"]
    before = {d.headers["X-Gitea-Delivery"] for d in receiver.deliveries}

    replay = web.post(
        f"{forge.url}/{forge.user}/{forge.repo}/settings/hooks/{hooked.hook_id}/replay/{original}"
    )

    assert replay.status_code == 200, replay.text[:300]
    again = receiver.wait(lambda d: d.headers["X-Gitea-Delivery"] not in before, "the replayed delivery")
    assert again.body == hooked.delivery.body
    assert again.headers["X-Gitea-Signature"] == hooked.delivery.headers["X-Gitea-Signature"]
    assert again.headers["X-Gitea-Delivery"] != original  # a receiver must not deduplicate by this id


def test_a_revoked_token_is_refused_with_401_and_gitea_says_why(stack_env: dict[str, str]) -> None:
    url = stack_env["GITEA_URL"]
    admin = _session(stack_env["GITEA_ADMIN_TOKEN"])
    user, password = f"r{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    made = admin.post(
        f"{url}/api/v1/admin/users",
        json={"username": user, "email": f"{user}@devstack.invalid", "password": password,
              "must_change_password": False},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    token = _session().post(
        f"{url}/api/v1/users/{user}/tokens",
        auth=(user, password),
        json={"name": "soon-gone", "scopes": ["all"]},
    )
    assert token.status_code == 201, token.text
    secret, token_id = token.json()["sha1"], token.json()["id"]
    assert _session(secret).get(f"{url}/api/v1/user").json()["login"] == user

    # Deleting takes basic auth too (a token, even the admin's, gets 401 "auth required").
    by_token = admin.delete(f"{url}/api/v1/users/{user}/tokens/{token_id}")
    assert by_token.status_code == 401 and by_token.json()["message"] == "auth required"
    deleted = _session().delete(f"{url}/api/v1/users/{user}/tokens/{token_id}", auth=(user, password))
    assert deleted.status_code == 204, deleted.text

    refused = _session(secret).get(f"{url}/api/v1/user")
    assert refused.status_code == 401
    assert refused.json()["message"] == "invalid username, password or token"


def test_users_repositories_and_the_admin_token_survive_a_restart_of_gitea(
    stack: Stack, forge: Forge, tmp_path: Path
) -> None:
    before = stack.status_of("gitea")
    stack.restart_component("gitea")
    after = stack.status_of("gitea")
    assert after.healthy and after.pid != before.pid and after.url == before.url
    env = stack.env()
    assert env["GITEA_URL"] == forge.url
    me = _session(env["GITEA_ADMIN_TOKEN"]).get(f"{forge.url}/api/v1/user")
    assert me.status_code == 200 and me.json()["login"] == "devstack-admin"
    clone = tmp_path / "clone"
    _git("clone", "-q", forge.repo_url(), str(clone), cwd=tmp_path)
    assert _git("rev-parse", "HEAD", cwd=clone) == _git("rev-parse", "HEAD", cwd=forge.work)
