"""The Gitea driver against answers shaped as Gitea 1.2x's swagger documents them (scm_answers/gitea:
``User``, ``Repository``, ``Hook``)."""

from __future__ import annotations

import pytest
from scm_fake import FakeProvider

from worker.scm.driver import (
    Account,
    Endpoint,
    Hook,
    HookEvent,
    HookSpec,
    Permissions,
    ProviderUnauthorized,
    is_current,
)
from worker.scm.gitea import GiteaDriver
from worker.webhooks.events import Provider

pytestmark = pytest.mark.unit

BASE = "https://gitea.example"
ENDPOINT = Endpoint(api_url=BASE + "/api/v1", web_url=BASE)
TOKEN = "8c3e1c1ae0b1f2e3d4c5b6a79808f7e6d5c4b3a2"
REPO = "wonderland/rabbit-hole"
HOOKS = "/api/v1/repos/wonderland/rabbit-hole/hooks"
SPEC = HookSpec(
    url="https://ci.example.com/hooks/gitea/team/deploy",
    secret="wh-secret",
    events=frozenset({HookEvent.PUSH, HookEvent.TAG, HookEvent.PULL_REQUEST}),
)


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider(BASE)


@pytest.fixture
def driver(fake: FakeProvider) -> GiteaDriver:
    return GiteaDriver(fake.session())


def test_the_driver_is_giteas() -> None:
    assert GiteaDriver.provider is Provider.GITEA


def test_a_token_is_verified_as_its_user_with_giteas_token_header(
    fake: FakeProvider, driver: GiteaDriver
) -> None:
    fake.route("GET", "/api/v1/user", json_file="gitea/user.json")

    account = driver.verify(ENDPOINT, TOKEN)

    assert account == Account(
        login="alice",
        display_name="Alice Liddell",
        avatar_url="https://gitea.example/avatars/1",
        html_url="https://gitea.example/alice",
    )
    assert fake.only().headers["Authorization"] == f"token {TOKEN}"


def test_a_revoked_token_is_refused_with_giteas_message(fake: FakeProvider, driver: GiteaDriver) -> None:
    fake.route("GET", "/api/v1/user", status=401, json_file="gitea/unauthorized.json")

    with pytest.raises(ProviderUnauthorized, match="HTTP 401: invalid username, password or token"):
        driver.verify(ENDPOINT, TOKEN)


def test_repositories_are_listed_in_pages_of_fifty_through_the_link_header(
    fake: FakeProvider, driver: GiteaDriver
) -> None:
    following = BASE + "/api/v1/user/repos?limit=50&page=2"
    fake.route(
        "GET",
        "/api/v1/user/repos",
        json_file="gitea/repos_page1.json",
        headers={"Link": f'<{following}>; rel="next"'},
    )
    fake.route("GET", "/api/v1/user/repos", query={"page": "2"}, json_file="gitea/repos_page2.json")

    glass, hole, party = driver.repositories(ENDPOINT, TOKEN)

    assert fake.sent[0].query == {"limit": "50", "page": "1"}
    assert fake.sent[1].url == following
    assert (glass.full_name, glass.clone_url, glass.language) == (
        "alice/looking-glass",
        "https://gitea.example/alice/looking-glass.git",
        "Go",
    )
    assert glass.permissions == Permissions(pull=True, push=True, admin=True)
    assert (hole.private, hole.default_branch) == (True, "develop")
    assert hole.permissions == Permissions(pull=True, push=True, admin=False)
    assert party.permissions == Permissions(pull=True, push=False, admin=False)


def test_a_hook_delivers_pull_requests_only_with_the_opened_and_synchronized_events(
    fake: FakeProvider, driver: GiteaDriver
) -> None:
    fake.route("GET", HOOKS, json_file="gitea/hooks.json")

    hooks = driver.hooks(ENDPOINT, TOKEN, REPO)

    assert hooks == [
        Hook(
            id="7",
            url="https://ci.example.com/hooks/gitea/team/deploy",
            events=frozenset({"push", "pull_request"}),
        ),
        # comments and reviews only: no new pull request, no new commits
        Hook(id="8", url="https://ci.example.com/hooks/gitea/team/comments", events=frozenset()),
        Hook(
            id="9",
            url="https://ci.example.com/hooks/gitea/team/old",
            events=frozenset({"push"}),
            active=False,
        ),
    ]
    assert fake.only().query == {"limit": "50", "page": "1"}


def test_a_hook_is_created_as_a_gitea_json_hook_for_every_branch(
    fake: FakeProvider, driver: GiteaDriver
) -> None:
    fake.route("POST", HOOKS, status=201, json_file="gitea/hook_created.json")

    hook = driver.create_hook(ENDPOINT, TOKEN, REPO, SPEC)

    assert fake.only().body == {
        "type": "gitea",
        "active": True,
        "branch_filter": "*",
        "config": {"url": SPEC.url, "content_type": "json", "secret": "wh-secret"},
        "events": ["pull_request", "push"],
    }
    assert hook.id == "10"
    assert is_current(driver, hook, SPEC)


def test_a_hook_is_updated_with_its_secret_events_and_active_flag(
    fake: FakeProvider, driver: GiteaDriver
) -> None:
    fake.route("PATCH", HOOKS + "/8", json_file="gitea/hook_updated.json")
    spec = HookSpec(url=SPEC.url, secret="rotated", events=frozenset({HookEvent.TAG}))

    hook = driver.update_hook(ENDPOINT, TOKEN, REPO, "8", spec)

    sent = fake.only()
    assert (sent.method, sent.path) == ("PATCH", HOOKS + "/8")
    assert sent.body == {
        "active": True,
        "config": {"url": SPEC.url, "content_type": "json", "secret": "rotated"},
        "events": ["push"],
    }
    assert is_current(driver, hook, spec)


def test_a_hook_already_gone_is_deleted_all_the_same(fake: FakeProvider, driver: GiteaDriver) -> None:
    route = fake.route("DELETE", HOOKS + "/9", status=404, json_file="gitea/not_found.json")

    driver.delete_hook(ENDPOINT, TOKEN, REPO, "9")

    assert route.hits == 1
    assert fake.only().headers["Authorization"] == f"token {TOKEN}"
