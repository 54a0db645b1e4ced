"""The GitHub driver against answers shaped as GitHub's REST API documents them (scm_answers/github)."""

from __future__ import annotations

import time

import pytest
import requests
from scm_fake import FakeProvider

from worker.scm.driver import (
    Account,
    Endpoint,
    Hook,
    HookEvent,
    HookSpec,
    Permissions,
    ProviderForbidden,
    ProviderRateLimited,
    ProviderRefused,
    ProviderUnauthorized,
    ProviderUnavailable,
    is_current,
)
from worker.scm.github import GitHubDriver
from worker.webhooks.events import HookKind, Provider

pytestmark = pytest.mark.unit

API = "https://api.github.com"
ENDPOINT = Endpoint(api_url=API, web_url="https://github.com")
TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
REPO = "octocat/Hello-World"
HOOKS = "/repos/octocat/Hello-World/hooks"
SPEC = HookSpec(
    url="https://ci.example.com/hooks/github/team/deploy",
    secret="wh-secret",
    events=frozenset({HookEvent.PUSH, HookEvent.TAG, HookEvent.PULL_REQUEST}),
)


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider(API)


@pytest.fixture
def driver(fake: FakeProvider) -> GitHubDriver:
    return GitHubDriver(fake.session())


def test_the_driver_is_githubs() -> None:
    assert GitHubDriver.provider is Provider.GITHUB


# --- verify ---------------------------------------------------------------------------------------------


def test_a_token_is_verified_as_its_user(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route("GET", "/user", json_file="github/user.json")

    account = driver.verify(ENDPOINT, TOKEN)

    assert account == Account(
        login="octocat",
        display_name="monalisa octocat",
        avatar_url="https://github.com/images/error/octocat_happy.gif",
        html_url="https://github.com/octocat",
    )
    sent = fake.only()
    assert sent.method == "GET"
    assert sent.url == API + "/user"
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Accept"] == "application/vnd.github+json"
    assert sent.headers["X-GitHub-Api-Version"] == "2022-11-28"


def test_a_user_without_a_name_is_shown_by_login(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route(
        "GET", "/user", json_body={"login": "octocat", "name": None, "html_url": "https://github.com/octocat"}
    )

    assert driver.verify(ENDPOINT, TOKEN).display_name == "octocat"


def test_github_enterprise_server_is_asked_under_its_api_v3_path() -> None:
    fake = FakeProvider("https://ghe.example")
    fake.route("GET", "/api/v3/user", json_file="github/user.json")

    GitHubDriver(fake.session()).verify(Endpoint("https://ghe.example/api/v3", "https://ghe.example"), TOKEN)

    assert fake.only().path == "/api/v3/user"


def test_a_revoked_token_is_refused_with_githubs_message(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route("GET", "/user", status=401, json_file="github/bad_credentials.json")

    with pytest.raises(ProviderUnauthorized) as raised:
        driver.verify(ENDPOINT, TOKEN)

    assert raised.value.status == 401
    assert raised.value.message == "GET https://api.github.com/user: HTTP 401: Bad credentials"


def test_an_answer_without_a_login_is_a_provider_fault(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route("GET", "/user", json_body={"message": "ok"})

    with pytest.raises(ProviderUnavailable, match="names no login"):
        driver.verify(ENDPOINT, TOKEN)


def test_a_proxys_html_page_is_not_taken_for_an_answer(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route("GET", "/user", text="<!DOCTYPE html><title>Sign in · Corporate proxy</title>")

    with pytest.raises(ProviderUnavailable, match="the answer is not JSON"):
        driver.verify(ENDPOINT, TOKEN)


def test_github_down_is_unavailable(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route("GET", "/user", status=502, text="Server Error")

    with pytest.raises(ProviderUnavailable) as raised:
        driver.verify(ENDPOINT, TOKEN)

    assert type(raised.value) is ProviderUnavailable
    assert raised.value.status == 502


def test_github_out_of_reach_is_unavailable(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route("GET", "/user", error=requests.ConnectionError("Name or service not known"))

    with pytest.raises(ProviderUnavailable, match="ConnectionError: Name or service not known"):
        driver.verify(ENDPOINT, TOKEN)


# --- repositories ---------------------------------------------------------------------------------------

NEXT = API + "/user/repos?per_page=100&affiliation=owner%2Ccollaborator%2Corganization_member&page=2"


def two_pages(fake: FakeProvider) -> None:
    fake.route(
        "GET",
        "/user/repos",
        json_file="github/repos_page1.json",
        headers={"Link": f'<{NEXT}>; rel="next", <{NEXT}>; rel="last"'},
    )
    fake.route("GET", "/user/repos", query={"page": "2"}, json_file="github/repos_page2.json")


def test_repositories_are_listed_page_by_page_through_the_link_header(
    fake: FakeProvider, driver: GitHubDriver
) -> None:
    two_pages(fake)

    repos = list(driver.repositories(ENDPOINT, TOKEN))

    assert [r.full_name for r in repos] == ["octocat/Hello-World", "github/Hello-Moon", "github/Hello-Mars"]
    first, second = fake.sent
    assert first.path == "/user/repos"
    assert first.query == {"per_page": "100", "affiliation": "owner,collaborator,organization_member"}
    assert second.url == NEXT
    assert second.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_repository_is_read_from_githubs_fields(fake: FakeProvider, driver: GitHubDriver) -> None:
    two_pages(fake)

    hello, moon, mars = driver.repositories(ENDPOINT, TOKEN)

    assert hello.clone_url == "https://github.com/octocat/Hello-World.git"
    assert hello.html_url == "https://github.com/octocat/Hello-World"
    assert hello.default_branch == "master"
    assert hello.language == ""  # null in the answer
    assert hello.private is False
    assert moon.private is True
    assert moon.language == "Python"
    assert mars.default_branch == "trunk"


def test_permissions_are_githubs_admin_push_and_pull(fake: FakeProvider, driver: GitHubDriver) -> None:
    two_pages(fake)

    hello, moon, mars = driver.repositories(ENDPOINT, TOKEN)

    assert hello.permissions == Permissions(pull=True, push=True, admin=True)
    # "maintain" may not manage webhooks: only admin may.
    assert moon.permissions == Permissions(pull=True, push=True, admin=False)
    assert mars.permissions == Permissions(pull=True, push=False, admin=False)


def test_a_caller_that_stops_early_asks_for_no_further_page(fake: FakeProvider, driver: GitHubDriver) -> None:
    two_pages(fake)

    first = next(iter(driver.repositories(ENDPOINT, TOKEN)))

    assert first.full_name == REPO
    assert len(fake.sent) == 1


def test_a_spent_rate_limit_stops_the_listing_until_the_reset(
    fake: FakeProvider, driver: GitHubDriver
) -> None:
    reset = int(time.time()) + 1800
    fake.route(
        "GET",
        "/user/repos",
        status=403,
        json_file="github/rate_limited.json",
        headers={"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
    )

    with pytest.raises(ProviderRateLimited) as raised:
        list(driver.repositories(ENDPOINT, TOKEN))

    assert 1790 <= raised.value.retry_after <= 1800
    assert "API rate limit exceeded for user ID 1." in raised.value.message


def test_a_secondary_rate_limit_waits_for_retry_after(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route(
        "GET",
        "/user/repos",
        status=403,
        json_file="github/secondary_rate_limited.json",
        headers={"Retry-After": "45", "X-RateLimit-Remaining": "4321"},
    )

    with pytest.raises(ProviderRateLimited) as raised:
        list(driver.repositories(ENDPOINT, TOKEN))

    assert raised.value.retry_after == 45.0
    assert raised.value.status == 403


def test_a_secondary_rate_limit_with_429_and_no_headers_waits_a_minute(
    fake: FakeProvider, driver: GitHubDriver
) -> None:
    fake.route("GET", "/user/repos", status=429, json_file="github/secondary_rate_limited.json")

    with pytest.raises(ProviderRateLimited) as raised:
        list(driver.repositories(ENDPOINT, TOKEN))

    assert raised.value.retry_after == 60.0


# --- events and hooks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "names"),
    [
        ({HookEvent.PUSH}, {"push"}),
        ({HookEvent.TAG}, {"push"}),
        ({HookEvent.PUSH, HookEvent.TAG}, {"push"}),
        ({HookEvent.PULL_REQUEST}, {"pull_request"}),
        ({HookEvent.PUSH, HookEvent.TAG, HookEvent.PULL_REQUEST}, {"push", "pull_request"}),
        (set(), set()),
    ],
)
def test_tags_arrive_as_pushes_and_pull_requests_as_themselves(
    wanted: set[HookEvent], names: set[str]
) -> None:
    assert GitHubDriver().events_for(frozenset(wanted)) == names


def test_hooks_are_the_repositorys_web_hooks_in_the_drivers_event_names(
    fake: FakeProvider, driver: GitHubDriver
) -> None:
    fake.route("GET", HOOKS, json_file="github/hooks.json")

    hooks = driver.hooks(ENDPOINT, TOKEN, REPO)

    assert hooks == [
        Hook(id="12345678", url="https://example.com/webhook", events=frozenset({"push", "pull_request"})),
        Hook(
            id="12345679",
            url="https://ci.example.com/hooks/github/team/deploy",
            events=frozenset({"push", "pull_request"}),  # "*": every event
            active=False,
        ),
    ]
    sent = fake.only()
    assert sent.query == {"per_page": "100"}


def test_a_hook_is_created_as_a_json_web_hook_with_the_secret(
    fake: FakeProvider, driver: GitHubDriver
) -> None:
    fake.route("POST", HOOKS, status=201, json_file="github/hook_created.json")

    hook = driver.create_hook(ENDPOINT, TOKEN, REPO, SPEC)

    sent = fake.only()
    assert sent.url == API + HOOKS
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.body == {
        "name": "web",
        "active": True,
        "events": ["pull_request", "push"],
        "config": {
            "url": "https://ci.example.com/hooks/github/team/deploy",
            "content_type": "json",
            "secret": "wh-secret",
            "insecure_ssl": "0",
        },
    }
    assert hook == Hook(
        id="12345681",
        url="https://ci.example.com/hooks/github/team/deploy",
        events=frozenset({"push", "pull_request"}),
    )
    assert is_current(driver, hook, SPEC)


def test_a_tag_only_hook_subscribes_to_pushes(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route("POST", HOOKS, status=201, json_file="github/hook_created.json")

    driver.create_hook(
        ENDPOINT, TOKEN, REPO, HookSpec(url=SPEC.url, secret="s", events=frozenset({HookEvent.TAG}))
    )

    assert fake.only().body["events"] == ["push"]


def test_a_hook_is_updated_with_its_whole_config_so_the_secret_survives(
    fake: FakeProvider, driver: GitHubDriver
) -> None:
    fake.route("PATCH", HOOKS + "/12345679", json_file="github/hook_updated.json")
    spec = HookSpec(url=SPEC.url, secret="rotated", events=frozenset({HookEvent.PUSH}))

    hook = driver.update_hook(ENDPOINT, TOKEN, REPO, "12345679", spec)

    sent = fake.only()
    assert sent.method == "PATCH"
    assert sent.body == {
        "active": True,
        "events": ["push"],
        "config": {"url": SPEC.url, "content_type": "json", "secret": "rotated", "insecure_ssl": "0"},
    }
    assert hook.id == "12345679"
    assert hook.active is True
    assert is_current(driver, hook, spec)


def test_a_hook_is_deleted(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route("DELETE", HOOKS + "/12345678", status=204)

    assert driver.delete_hook(ENDPOINT, TOKEN, REPO, "12345678") is None

    sent = fake.only()
    assert (sent.method, sent.url) == ("DELETE", API + HOOKS + "/12345678")


def test_a_hook_already_gone_is_deleted_all_the_same(fake: FakeProvider, driver: GitHubDriver) -> None:
    route = fake.route("DELETE", HOOKS + "/12345678", status=404, json_file="github/not_found.json")

    driver.delete_hook(ENDPOINT, TOKEN, REPO, "12345678")

    assert route.hits == 1


def test_a_token_without_admin_rights_may_not_create_a_hook(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route(
        "POST",
        HOOKS,
        status=403,
        json_file="github/forbidden.json",
        headers={"X-RateLimit-Remaining": "4999", "X-RateLimit-Reset": str(int(time.time()) + 3600)},
    )

    with pytest.raises(ProviderForbidden) as raised:
        driver.create_hook(ENDPOINT, TOKEN, REPO, SPEC)

    assert type(raised.value) is ProviderForbidden
    assert raised.value.message.endswith("HTTP 403: Resource not accessible by personal access token")


def test_a_second_hook_for_the_same_url_is_refused_with_githubs_reason(
    fake: FakeProvider, driver: GitHubDriver
) -> None:
    fake.route("POST", HOOKS, status=422, json_file="github/validation_failed.json")

    with pytest.raises(ProviderRefused) as raised:
        driver.create_hook(ENDPOINT, TOKEN, REPO, SPEC)

    assert type(raised.value) is ProviderRefused
    assert raised.value.message.endswith("Validation Failed: Hook already exists on this repository")


def test_a_created_hook_without_an_id_is_a_provider_fault(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route("POST", HOOKS, status=201, json_body={"name": "web"})

    with pytest.raises(ProviderUnavailable, match="has no id"):
        driver.create_hook(ENDPOINT, TOKEN, REPO, SPEC)


def test_owner_and_name_are_escaped_in_the_path(fake: FakeProvider, driver: GitHubDriver) -> None:
    fake.route("GET", "/repos/octo%23cat/hello%3Fworld/hooks", json_body=[])

    assert driver.hooks(ENDPOINT, TOKEN, "octo#cat/hello?world") == []
    assert fake.only().path == "/repos/octo%23cat/hello%3Fworld/hooks"


# --- deliveries -----------------------------------------------------------------------------------------


def test_deliveries_are_read_by_the_receivers_github_parser() -> None:
    push = GitHubDriver().parse_hook(
        "push",
        {
            "ref": "refs/tags/v1.0.0",
            "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
            "head_commit": {"id": "6113728f", "message": "Release", "author": {"name": "Mona"}},
            "sender": {"login": "octocat"},
        },
    )
    ping = GitHubDriver().parse_hook("ping", {"zen": "Speak like a human.", "hook_id": 12345678})

    assert push.kind is HookKind.TAG
    assert push.commit == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert ping.kind is HookKind.PING
