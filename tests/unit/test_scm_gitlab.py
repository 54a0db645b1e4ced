"""The GitLab driver against answers shaped as GitLab's REST API v4 documents them (scm_answers/gitlab)."""

from __future__ import annotations

import copy
import time

import pytest
import requests
from scm_fake import FakeProvider, answer

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
from worker.scm.gitlab import GitLabDriver
from worker.webhooks.events import HookKind, Provider

pytestmark = pytest.mark.unit

BASE = "https://gitlab.example.com"
ENDPOINT = Endpoint(api_url=BASE + "/api/v4", web_url=BASE)
TOKEN = "glpat-example-token"
REPO = "flightjs/sub/flight"
HOOKS = "/api/v4/projects/flightjs%2Fsub%2Fflight/hooks"
SPEC = HookSpec(
    url="https://ci.example.com/hooks/gitlab/team/deploy",
    secret="wh-secret",
    events=frozenset({HookEvent.PUSH, HookEvent.TAG}),
)


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider(BASE)


@pytest.fixture
def driver(fake: FakeProvider) -> GitLabDriver:
    return GitLabDriver(fake.session())


def test_the_driver_is_gitlabs() -> None:
    assert GitLabDriver.provider is Provider.GITLAB


# --- verify ---------------------------------------------------------------------------------------------


def test_a_token_is_verified_as_its_user(fake: FakeProvider, driver: GitLabDriver) -> None:
    fake.route("GET", "/api/v4/user", json_file="gitlab/user.json")

    account = driver.verify(ENDPOINT, TOKEN)

    assert account == Account(
        login="john_smith",
        display_name="John Smith",
        avatar_url="http://localhost:3000/uploads/user/avatar/1/index.jpg",
        html_url="http://localhost:3000/john_smith",
    )
    sent = fake.only()
    assert sent.url == BASE + "/api/v4/user"
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "PRIVATE-TOKEN" not in sent.headers


def test_a_revoked_token_is_refused_with_gitlabs_message(fake: FakeProvider, driver: GitLabDriver) -> None:
    fake.route("GET", "/api/v4/user", status=401, json_file="gitlab/unauthorized.json")

    with pytest.raises(ProviderUnauthorized) as raised:
        driver.verify(ENDPOINT, TOKEN)

    assert raised.value.status == 401
    assert raised.value.message == "GET https://gitlab.example.com/api/v4/user: HTTP 401: 401 Unauthorized"


def test_a_revoked_oauth_token_is_refused_with_the_oauth_description(
    fake: FakeProvider, driver: GitLabDriver
) -> None:
    fake.route("GET", "/api/v4/user", status=401, json_file="gitlab/oauth_revoked.json")

    with pytest.raises(
        ProviderUnauthorized, match=r"Token was revoked\. You have to re-authorize from the user\."
    ):
        driver.verify(ENDPOINT, TOKEN)


def test_an_answer_without_a_username_is_a_provider_fault(fake: FakeProvider, driver: GitLabDriver) -> None:
    fake.route("GET", "/api/v4/user", json_body={"id": 1})

    with pytest.raises(ProviderUnavailable, match="names no username"):
        driver.verify(ENDPOINT, TOKEN)


def test_an_html_sign_in_page_is_not_taken_for_an_answer(fake: FakeProvider, driver: GitLabDriver) -> None:
    fake.route("GET", "/api/v4/user", text="<!DOCTYPE html><title>Sign in · GitLab</title>")

    with pytest.raises(ProviderUnavailable, match="the answer is not JSON"):
        driver.verify(ENDPOINT, TOKEN)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_gitlab_down_is_unavailable(fake: FakeProvider, driver: GitLabDriver, status: int) -> None:
    fake.route("GET", "/api/v4/user", status=status, text="GitLab is not responding")

    with pytest.raises(ProviderUnavailable) as raised:
        driver.verify(ENDPOINT, TOKEN)

    assert type(raised.value) is ProviderUnavailable
    assert raised.value.message.endswith(f"HTTP {status}: GitLab is not responding")


def test_gitlab_out_of_reach_is_unavailable(fake: FakeProvider, driver: GitLabDriver) -> None:
    fake.route("GET", "/api/v4/user", error=requests.ConnectTimeout("timed out"))

    with pytest.raises(ProviderUnavailable, match="ConnectTimeout: timed out"):
        driver.verify(ENDPOINT, TOKEN)


# --- repositories ---------------------------------------------------------------------------------------

NEXT = (
    BASE + "/api/v4/projects?membership=true&order_by=id&pagination=keyset&per_page=100"
    "&simple=false&sort=asc&id_after=6"
)


def two_pages(fake: FakeProvider, first: object = None) -> None:
    page1 = first if first is not None else answer("gitlab/projects_page1.json")
    fake.route("GET", "/api/v4/projects", json_body=page1, headers={"Link": f'<{NEXT}>; rel="next"'})
    fake.route("GET", "/api/v4/projects", query={"id_after": "6"}, json_file="gitlab/projects_page2.json")


def test_projects_are_listed_by_keyset_pages_through_the_link_header(
    fake: FakeProvider, driver: GitLabDriver
) -> None:
    two_pages(fake)

    repos = list(driver.repositories(ENDPOINT, TOKEN))

    assert [r.full_name for r in repos] == [
        "diaspora/diaspora-client",
        "brightbox/puppet",
        "flightjs/sub/flight",
        "flightjs/sub/radar",
        "john_smith/notes",
    ]
    first, second = fake.sent
    assert first.path == "/api/v4/projects"
    assert first.query == {
        "membership": "true",
        "simple": "false",
        "per_page": "100",
        "order_by": "id",
        "sort": "asc",
        "pagination": "keyset",
    }
    assert second.url == NEXT
    assert second.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_project_is_read_from_gitlabs_fields(fake: FakeProvider, driver: GitLabDriver) -> None:
    two_pages(fake)

    client, _, flight, radar, _ = driver.repositories(ENDPOINT, TOKEN)

    assert client.clone_url == "http://example.com/diaspora/diaspora-client.git"
    assert client.html_url == "http://example.com/diaspora/diaspora-client"
    assert client.default_branch == "master"
    assert client.language == ""
    assert client.private is True
    assert flight.private is False  # public
    assert radar.private is True  # internal: not for everyone
    assert flight.default_branch == "main"


def test_access_levels_map_reporter_to_pull_developer_to_push_and_maintainer_to_admin(
    fake: FakeProvider, driver: GitLabDriver
) -> None:
    two_pages(fake)

    by_name = {r.full_name: r.permissions for r in driver.repositories(ENDPOINT, TOKEN)}

    assert by_name["diaspora/diaspora-client"] == Permissions(pull=True, push=False, admin=False)  # 20
    assert by_name["flightjs/sub/flight"] == Permissions(pull=True, push=True, admin=False)  # 30 (group 20)
    assert by_name["john_smith/notes"] == Permissions(pull=True, push=True, admin=True)  # 40


def test_the_higher_of_project_and_group_access_counts(fake: FakeProvider, driver: GitLabDriver) -> None:
    two_pages(fake)

    puppet = next(r for r in driver.repositories(ENDPOINT, TOKEN) if r.full_name == "brightbox/puppet")

    # project_access 10 (guest), group_access 50 (owner)
    assert puppet.permissions == Permissions(pull=True, push=True, admin=True)


def test_a_group_maintainer_with_project_guest_access_may_manage_hooks(
    fake: FakeProvider, driver: GitLabDriver
) -> None:
    page = copy.deepcopy(answer("gitlab/projects_page1.json"))
    page[0]["permissions"] = {
        "project_access": None,
        "group_access": {"access_level": 40, "notification_level": 3},
    }
    two_pages(fake, page)

    client = next(iter(driver.repositories(ENDPOINT, TOKEN)))

    assert client.permissions == Permissions(pull=True, push=True, admin=True)


def test_a_guest_of_a_private_project_may_not_clone_it(fake: FakeProvider, driver: GitLabDriver) -> None:
    page = copy.deepcopy(answer("gitlab/projects_page1.json"))
    page[0]["permissions"] = {
        "project_access": {"access_level": 10, "notification_level": 3},
        "group_access": None,
    }
    two_pages(fake, page)

    client = next(iter(driver.repositories(ENDPOINT, TOKEN)))

    assert client.permissions == Permissions(pull=False, push=False, admin=False)


def test_a_guest_of_a_public_project_may_clone_it(fake: FakeProvider, driver: GitLabDriver) -> None:
    page = copy.deepcopy(answer("gitlab/projects_page1.json"))
    page[0]["visibility"] = "public"
    page[0]["permissions"] = {
        "project_access": {"access_level": 10, "notification_level": 3},
        "group_access": None,
    }
    two_pages(fake, page)

    client = next(iter(driver.repositories(ENDPOINT, TOKEN)))

    assert client.permissions == Permissions(pull=True, push=False, admin=False)


def test_a_membership_the_listing_does_not_state_is_readable_and_nothing_more(
    fake: FakeProvider, driver: GitLabDriver
) -> None:
    two_pages(fake)

    radar = next(r for r in driver.repositories(ENDPOINT, TOKEN) if r.full_name == "flightjs/sub/radar")

    # project_access and group_access both null: inherited from an ancestor group or a shared group
    assert radar.permissions == Permissions(pull=True, push=False, admin=False)


def test_gitlabs_rate_limit_waits_for_retry_after(fake: FakeProvider, driver: GitLabDriver) -> None:
    fake.route(
        "GET",
        "/api/v4/projects",
        status=429,
        text="Retry later\n",
        headers={
            "RateLimit-Limit": "60",
            "RateLimit-Name": "throttle_authenticated_api",
            "RateLimit-Observed": "67",
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(int(time.time()) + 30),
            "Retry-After": "30",
        },
    )

    with pytest.raises(ProviderRateLimited) as raised:
        list(driver.repositories(ENDPOINT, TOKEN))

    assert raised.value.retry_after == 30.0
    assert raised.value.message.endswith("HTTP 429: Retry later")


# --- events and hooks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "names"),
    [
        ({HookEvent.PUSH}, {"push_events"}),
        ({HookEvent.TAG}, {"tag_push_events"}),
        ({HookEvent.PULL_REQUEST}, {"merge_requests_events"}),
        (
            {HookEvent.PUSH, HookEvent.TAG, HookEvent.PULL_REQUEST},
            {"push_events", "tag_push_events", "merge_requests_events"},
        ),
        (set(), set()),
    ],
)
def test_each_event_is_one_of_gitlabs_hook_flags(wanted: set[HookEvent], names: set[str]) -> None:
    assert GitLabDriver().events_for(frozenset(wanted)) == names


def test_hooks_are_read_with_their_flags_and_gitlabs_disabling(
    fake: FakeProvider, driver: GitLabDriver
) -> None:
    fake.route("GET", HOOKS, json_file="gitlab/hooks.json")

    hooks = driver.hooks(ENDPOINT, TOKEN, REPO)

    assert hooks == [
        Hook(
            id="1",
            url="https://ci.example.com/hooks/gitlab/team/deploy",
            events=frozenset({"push_events", "tag_push_events", "merge_requests_events"}),
        ),
        # temporarily_disabled until 2999
        Hook(
            id="2",
            url="https://ci.example.com/hooks/gitlab/team/other",
            events=frozenset({"push_events"}),
            active=False,
        ),
        # disabled for good
        Hook(
            id="3",
            url="https://ci.example.com/hooks/gitlab/team/old",
            events=frozenset({"push_events"}),
            active=False,
        ),
        # disabled until 2020: sending again
        Hook(id="4", url="https://ci.example.com/hooks/gitlab/team/back", events=frozenset({"push_events"})),
    ]
    sent = fake.only()
    assert sent.path == HOOKS
    assert sent.query == {"per_page": "100"}


def test_a_hook_is_created_with_the_secret_as_token_and_every_flag_said(
    fake: FakeProvider, driver: GitLabDriver
) -> None:
    fake.route("POST", HOOKS, status=201, json_file="gitlab/hook_created.json")

    hook = driver.create_hook(ENDPOINT, TOKEN, REPO, SPEC)

    sent = fake.only()
    assert sent.url == BASE + HOOKS
    assert sent.body == {
        "url": "https://ci.example.com/hooks/gitlab/team/deploy",
        "token": "wh-secret",
        "push_events": True,
        "tag_push_events": True,
        "merge_requests_events": False,
        "enable_ssl_verification": True,
    }
    assert hook == Hook(
        id="11",
        url="https://ci.example.com/hooks/gitlab/team/deploy",
        events=frozenset({"push_events", "tag_push_events"}),
    )
    assert is_current(driver, hook, SPEC)


def test_a_hook_is_updated_with_put_and_its_token_again(fake: FakeProvider, driver: GitLabDriver) -> None:
    fake.route("PUT", HOOKS + "/2", json_file="gitlab/hook_updated.json")
    spec = HookSpec(
        url=SPEC.url, secret="rotated", events=frozenset({HookEvent.PUSH, HookEvent.PULL_REQUEST})
    )

    hook = driver.update_hook(ENDPOINT, TOKEN, REPO, "2", spec)

    sent = fake.only()
    assert (sent.method, sent.path) == ("PUT", HOOKS + "/2")
    assert sent.body == {
        "url": SPEC.url,
        "token": "rotated",
        "push_events": True,
        "tag_push_events": False,
        "merge_requests_events": True,
        "enable_ssl_verification": True,
    }
    assert hook.events == {"push_events", "merge_requests_events"}
    assert is_current(driver, hook, spec)


def test_a_hook_is_deleted(fake: FakeProvider, driver: GitLabDriver) -> None:
    fake.route("DELETE", HOOKS + "/3", status=204)

    driver.delete_hook(ENDPOINT, TOKEN, REPO, "3")

    sent = fake.only()
    assert (sent.method, sent.url) == ("DELETE", BASE + HOOKS + "/3")
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_hook_already_gone_is_deleted_all_the_same(fake: FakeProvider, driver: GitLabDriver) -> None:
    route = fake.route("DELETE", HOOKS + "/3", status=404, json_file="gitlab/not_found.json")

    driver.delete_hook(ENDPOINT, TOKEN, REPO, "3")

    assert route.hits == 1


def test_a_developer_may_not_manage_hooks(fake: FakeProvider, driver: GitLabDriver) -> None:
    fake.route("POST", HOOKS, status=403, json_file="gitlab/forbidden.json")

    with pytest.raises(ProviderForbidden) as raised:
        driver.create_hook(ENDPOINT, TOKEN, REPO, SPEC)

    assert type(raised.value) is ProviderForbidden
    assert raised.value.message.endswith("HTTP 403: 403 Forbidden")


def test_a_blocked_hook_url_is_refused_with_gitlabs_reason(fake: FakeProvider, driver: GitLabDriver) -> None:
    fake.route("POST", HOOKS, status=422, json_file="gitlab/url_blocked.json")

    with pytest.raises(ProviderRefused) as raised:
        driver.create_hook(ENDPOINT, TOKEN, REPO, SPEC)

    assert type(raised.value) is ProviderRefused
    assert raised.value.message.endswith("url is blocked: Requests to localhost are not allowed")


def test_the_project_path_is_one_url_encoded_segment(fake: FakeProvider, driver: GitLabDriver) -> None:
    fake.route("GET", "/api/v4/projects/my-group%2Fa%20b%2Fc%2B%2B/hooks", json_body=[])

    assert driver.hooks(ENDPOINT, TOKEN, "my-group/a b/c++") == []
    assert fake.only().path == "/api/v4/projects/my-group%2Fa%20b%2Fc%2B%2B/hooks"


# --- deliveries -----------------------------------------------------------------------------------------


def test_deliveries_are_read_by_the_receivers_gitlab_parser() -> None:
    tag = GitLabDriver().parse_hook(
        "Tag Push Hook",
        {
            "object_kind": "tag_push",
            "ref": "refs/tags/v1.0.0",
            "after": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
            "user_username": "john_smith",
            "commits": [],
            "total_commits_count": 0,
        },
    )
    push = GitLabDriver().parse_hook(
        "Push Hook",
        {
            "ref": "refs/heads/main",
            "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "total_commits_count": 1,
        },
    )

    assert tag.kind is HookKind.TAG
    assert tag.sender == "john_smith"
    assert push.kind is HookKind.PUSH
    assert push.branch == "main"
