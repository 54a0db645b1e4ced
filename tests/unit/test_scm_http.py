"""The one request path of the provider drivers (worker/scm/http.py) and driver.py's shared helpers."""

from __future__ import annotations

import time

import pytest
import requests
from scm_fake import FakeProvider

from worker.scm import http
from worker.scm.driver import (
    Endpoint,
    Hook,
    HookEvent,
    HookSpec,
    ProviderForbidden,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRefused,
    ProviderUnauthorized,
    ProviderUnavailable,
    is_current,
    repository_path,
)
from worker.scm.github import GitHubDriver
from worker.scm.gitlab import GitLabDriver
from worker.scm.http import Api

pytestmark = pytest.mark.unit

BASE = "https://git.example"
ENDPOINT = Endpoint(api_url=BASE + "/api", web_url=BASE, verify="/etc/ca.pem", timeout=7.5)


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider(BASE)


def api(fake: FakeProvider) -> Api:
    return Api(ENDPOINT, {"Authorization": "Bearer t0ken"}, fake.session())


# --- the request ----------------------------------------------------------------------------------------


def test_every_request_carries_the_token_the_user_agent_the_timeout_and_the_ca_bundle(
    fake: FakeProvider,
) -> None:
    fake.route("GET", "/api/user", json_body={"login": "a"})

    assert api(fake).json("GET", "/user") == {"login": "a"}

    sent = fake.only()
    assert sent.url == BASE + "/api/user"
    assert sent.headers["Authorization"] == "Bearer t0ken"
    assert sent.headers["User-Agent"] == "cubepaas-devops"
    assert sent.headers["Accept"] == "application/json"
    assert sent.timeout == 7.5
    assert sent.verify == "/etc/ca.pem"


def test_a_driver_header_replaces_the_default_accept_header(fake: FakeProvider) -> None:
    fake.route("GET", "/api/user", json_body={})

    Api(ENDPOINT, {"Accept": "application/vnd.github+json"}, fake.session()).call("GET", "/user")

    assert fake.only().headers["Accept"] == "application/vnd.github+json"


def test_a_body_is_sent_as_json(fake: FakeProvider) -> None:
    fake.route("POST", "/api/things", status=201, json_body={"id": 1})

    api(fake).json("POST", "/things", body={"name": "web", "events": ["push"]})

    sent = fake.only()
    assert sent.body == {"name": "web", "events": ["push"]}
    assert sent.headers["Content-Type"] == "application/json"


def test_an_empty_answer_is_none(fake: FakeProvider) -> None:
    fake.route("DELETE", "/api/things/1", status=204)

    assert api(fake).json("DELETE", "/things/1") is None


def test_an_answer_that_is_not_json_is_a_provider_fault(fake: FakeProvider) -> None:
    fake.route("GET", "/api/user", text="<html><body>Sign in to continue</body></html>")

    with pytest.raises(
        ProviderUnavailable, match=r"GET https://git.example/api/user: the answer is not JSON"
    ):
        api(fake).json("GET", "/user")


@pytest.mark.parametrize(
    "error",
    [requests.ConnectionError("connection refused"), requests.Timeout("read timed out")],
    ids=["refused", "timeout"],
)
def test_a_connection_that_fails_is_unavailable_and_says_so_without_the_query(
    fake: FakeProvider, error: requests.RequestException
) -> None:
    fake.route("GET", "/api/projects", error=error)

    with pytest.raises(ProviderUnavailable) as raised:
        api(fake).call("GET", "/projects", params={"cursor": "c2VjcmV0"})

    assert raised.type is ProviderUnavailable
    assert raised.value.message.startswith("GET https://git.example/api/projects: ")
    assert str(error) in raised.value.message
    assert "c2VjcmV0" not in raised.value.message


# --- the fault tree -------------------------------------------------------------------------------------


def refused(fake: FakeProvider, status: int, **answer: object) -> Exception:
    fake.route("GET", "/api/thing", status=status, **answer)
    with pytest.raises(Exception) as raised:
        api(fake).call("GET", "/thing")
    return raised.value


def test_401_is_unauthorized_with_the_providers_message(fake: FakeProvider) -> None:
    error = refused(fake, 401, json_body={"message": "Bad credentials"})

    assert type(error) is ProviderUnauthorized
    assert isinstance(error, ProviderRefused)
    assert error.status == 401
    assert error.message == "GET https://git.example/api/thing: HTTP 401: Bad credentials"


def test_403_without_rate_limit_headers_is_forbidden(fake: FakeProvider) -> None:
    error = refused(
        fake,
        403,
        json_body={"message": "Must have admin rights to Repository."},
        headers={"X-RateLimit-Remaining": "4999", "X-RateLimit-Reset": str(int(time.time()) + 600)},
    )

    assert type(error) is ProviderForbidden
    assert error.message.endswith("HTTP 403: Must have admin rights to Repository.")


def test_githubs_primary_rate_limit_waits_until_the_reset_epoch(fake: FakeProvider) -> None:
    reset = int(time.time()) + 120
    error = refused(
        fake,
        403,
        json_body={"message": "API rate limit exceeded for user ID 1."},
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
    )

    assert type(error) is ProviderRateLimited
    assert isinstance(error, ProviderUnavailable)
    assert 110 <= error.retry_after <= 120
    assert "API rate limit exceeded" in error.message


def test_a_reset_already_past_still_waits_a_second(fake: FakeProvider) -> None:
    error = refused(
        fake, 403, json_body={}, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1000"}
    )

    assert type(error) is ProviderRateLimited
    assert error.retry_after == 1.0


def test_githubs_secondary_rate_limit_waits_as_long_as_retry_after_says(fake: FakeProvider) -> None:
    error = refused(
        fake,
        403,
        json_body={"message": "You have exceeded a secondary rate limit."},
        headers={"Retry-After": "30", "X-RateLimit-Remaining": "4000"},
    )

    assert type(error) is ProviderRateLimited
    assert error.retry_after == 30.0


def test_a_secondary_rate_limit_without_headers_waits_a_minute(fake: FakeProvider) -> None:
    # GitHub: "Otherwise, wait for at least one minute before retrying."
    error = refused(
        fake,
        403,
        json_body={"message": "You have exceeded a secondary rate limit. Please wait a few minutes."},
        headers={"X-RateLimit-Remaining": "4000"},
    )

    assert type(error) is ProviderRateLimited
    assert error.retry_after == 60.0


def test_429_is_rate_limited_with_gitlabs_retry_after(fake: FakeProvider) -> None:
    error = refused(
        fake,
        429,
        text="Retry later",
        headers={
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(int(time.time()) + 900),
            "Retry-After": "42",
        },
    )

    assert type(error) is ProviderRateLimited
    assert error.retry_after == 42.0
    assert error.message.endswith("HTTP 429: Retry later")


def test_429_without_headers_waits_a_minute(fake: FakeProvider) -> None:
    error = refused(fake, 429, json_body={"message": "Too many requests"})

    assert type(error) is ProviderRateLimited
    assert error.retry_after == 60.0


def test_404_is_not_found(fake: FakeProvider) -> None:
    error = refused(fake, 404, json_body={"message": "404 Project Not Found"})

    assert type(error) is ProviderNotFound
    assert error.message.endswith("404 Project Not Found")


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409])
def test_5xx_timeouts_and_conflicts_are_unavailable(fake: FakeProvider, status: int) -> None:
    error = refused(fake, status, text="upstream connect error")

    assert type(error) is ProviderUnavailable
    assert error.status == status


def test_a_validation_error_is_refused_with_githubs_details(fake: FakeProvider) -> None:
    error = refused(
        fake,
        422,
        json_body={
            "message": "Validation Failed",
            "errors": [
                {"resource": "Hook", "code": "custom", "message": "Hook already exists on this repository"}
            ],
        },
    )

    assert type(error) is ProviderRefused
    assert error.message.endswith("HTTP 422: Validation Failed: Hook already exists on this repository")


def test_an_error_without_a_message_names_its_resource_field_and_code(fake: FakeProvider) -> None:
    error = refused(
        fake,
        422,
        json_body={
            "message": "Validation Failed",
            "errors": [{"resource": "Hook", "field": "url", "code": "invalid"}],
        },
    )

    assert error.message.endswith("Validation Failed: Hook url invalid")


def test_gitlabs_field_errors_read_as_a_sentence(fake: FakeProvider) -> None:
    error = refused(
        fake, 400, json_body={"message": {"url": ["is blocked: Requests to localhost are not allowed"]}}
    )

    assert type(error) is ProviderRefused
    assert error.message.endswith("HTTP 400: url is blocked: Requests to localhost are not allowed")


def test_an_oauth_error_gives_its_description(fake: FakeProvider) -> None:
    error = refused(
        fake, 401, json_body={"error": "invalid_token", "error_description": "Token was revoked."}
    )

    assert error.message.endswith("HTTP 401: Token was revoked.")


def test_a_message_repeated_in_errors_is_said_once(fake: FakeProvider) -> None:
    error = refused(
        fake,
        404,
        json_body={"errors": ["The target couldn't be found."], "message": "The target couldn't be found."},
    )

    assert error.message.endswith("HTTP 404: The target couldn't be found.")


def test_a_plain_text_error_is_quoted_on_one_line_and_cut_short(fake: FakeProvider) -> None:
    error = refused(fake, 502, text="<html>\n  <h1>502 Bad Gateway</h1>\n" + "x" * 1000)

    assert isinstance(error, ProviderUnavailable)
    said = error.message.split("HTTP 502: ", 1)[1]
    assert said.startswith("<html> <h1>502 Bad Gateway</h1> xxx")
    assert len(said) == http.MESSAGE_LIMIT
    assert said.endswith("…")


def test_an_empty_error_gives_the_reason_phrase(fake: FakeProvider) -> None:
    error = refused(fake, 503)

    assert error.message.endswith("HTTP 503: Service Unavailable")


# --- pagination -----------------------------------------------------------------------------------------


def test_pages_follow_the_link_header_exactly_as_given(fake: FakeProvider) -> None:
    following = BASE + "/api/projects?pagination=keyset&per_page=2&order_by=id&sort=asc&id_after=42"
    fake.route(
        "GET",
        "/api/projects",
        json_body=[{"id": 41}, {"id": 42}],
        headers={"Link": f'<{following}>; rel="next"'},
    )
    fake.route("GET", "/api/projects", query={"id_after": "42"}, json_body=[{"id": 43}])

    pages = list(
        api(fake).pages("/projects", {"pagination": "keyset", "per_page": 2, "order_by": "id", "sort": "asc"})
    )

    assert pages == [[{"id": 41}, {"id": 42}], [{"id": 43}]]
    assert [s.url for s in fake.sent][1] == following
    assert fake.sent[1].headers["Authorization"] == "Bearer t0ken"


def test_an_empty_page_ends_the_listing_even_with_a_next_link(fake: FakeProvider) -> None:
    following = BASE + "/api/things?page=2"
    fake.route("GET", "/api/things", json_body=[], headers={"Link": f'<{following}>; rel="next"'})

    assert list(api(fake).pages("/things", {"page": 1})) == [[]]
    assert len(fake.sent) == 1


def test_a_provider_that_always_says_next_is_stopped(
    fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "MAX_PAGES", 3)
    fake.route(
        "GET",
        "/api/things",
        json_body=[{"id": 1}],
        headers={"Link": f'<{BASE}/api/things?page=9>; rel="next"'},
    )

    assert len(list(api(fake).pages("/things", {"page": 1}))) == 3
    assert len(fake.sent) == 3


def test_a_page_that_is_not_a_list_is_a_provider_fault(fake: FakeProvider) -> None:
    fake.route("GET", "/api/things", json_body={"message": "moved"})

    with pytest.raises(ProviderUnavailable, match="the answer is not a list"):
        list(api(fake).pages("/things", {"page": 1}))


def test_a_page_that_is_not_json_is_a_provider_fault(fake: FakeProvider) -> None:
    fake.route("GET", "/api/things", text="<html>maintenance</html>")

    with pytest.raises(ProviderUnavailable, match="the answer is not JSON"):
        list(api(fake).pages("/things", {"page": 1}))


def test_an_error_on_a_later_page_is_classified_too(fake: FakeProvider) -> None:
    fake.route(
        "GET",
        "/api/things",
        json_body=[{"id": 1}],
        headers={"Link": f'<{BASE}/api/things?page=2>; rel="next"'},
    )
    fake.route(
        "GET", "/api/things", query={"page": "2"}, status=401, json_body={"message": "401 Unauthorized"}
    )

    listing = api(fake).pages("/things", {"page": 1})
    assert next(listing) == [{"id": 1}]
    with pytest.raises(ProviderUnauthorized, match="401 Unauthorized"):
        next(listing)


# --- driver.py: repository_path -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("web_url", "repository_url", "expected"),
    [
        ("https://github.com", "https://github.com/octocat/Hello-World.git", "octocat/Hello-World"),
        ("https://github.com", "https://github.com/octocat/Hello-World", "octocat/Hello-World"),
        ("https://github.com/", "https://github.com/octocat/Hello-World/", "octocat/Hello-World"),
        ("https://github.com", "  https://github.com/octocat/Hello-World.git\n", "octocat/Hello-World"),
        ("https://github.com", "https://GitHub.COM/octocat/Hello-World.git", "octocat/Hello-World"),
        (
            "https://github.com",
            "https://x-access-token:ghp_x@github.com/octocat/Hello-World.git",
            "octocat/Hello-World",
        ),
        ("https://github.com", "https://github.com:443/octocat/Hello-World.git", "octocat/Hello-World"),
        ("https://gitlab.com", "https://gitlab.com/group/sub/project.git", "group/sub/project"),
        ("https://git.example/gitlab", "https://git.example/gitlab/group/project.git", "group/project"),
        ("http://gitea.local:3000", "http://gitea.local:3000/alice/looking-glass.git", "alice/looking-glass"),
    ],
)
def test_a_repository_under_the_providers_web_url_has_a_path(
    web_url: str, repository_url: str, expected: str
) -> None:
    assert repository_path(web_url, repository_url) == expected


@pytest.mark.parametrize(
    ("web_url", "repository_url"),
    [
        ("https://github.com", "https://gitlab.com/octocat/Hello-World.git"),
        ("https://github.com", "https://github.com.evil.example/octocat/Hello-World.git"),
        ("https://github.com", "git@github.com:octocat/Hello-World.git"),
        ("https://github.com", "ssh://git@github.com/octocat/Hello-World.git"),
        ("https://github.com", "https://github.com:8443/octocat/Hello-World.git"),
        ("http://gitea.local:3000", "http://gitea.local:3001/alice/looking-glass.git"),
        ("https://github.com", "https://github.com/octocat"),
        ("https://github.com", "https://github.com/"),
        ("https://github.com", "https://github.com/octocat/../admin"),
        ("https://git.example/gitlab", "https://git.example/other/group/project.git"),
        ("https://git.example/gitlab", "https://git.example/gitlabx/group/project.git"),
    ],
)
def test_a_repository_elsewhere_has_no_path(web_url: str, repository_url: str) -> None:
    assert repository_path(web_url, repository_url) is None


# --- driver.py: is_current ------------------------------------------------------------------------------

SPEC = HookSpec(
    url="https://ci.example.com/hooks/x", secret="s", events=frozenset({HookEvent.PUSH, HookEvent.TAG})
)


def test_a_hook_with_the_url_and_the_events_is_current() -> None:
    hook = Hook(id="1", url=SPEC.url, events=frozenset({"push"}))

    assert is_current(GitHubDriver(), hook, SPEC)


@pytest.mark.parametrize(
    "hook",
    [
        Hook(id="1", url=SPEC.url, events=frozenset({"push"}), active=False),
        Hook(id="1", url=SPEC.url + "/old", events=frozenset({"push"})),
        Hook(id="1", url=SPEC.url, events=frozenset({"push", "pull_request"})),
        Hook(id="1", url=SPEC.url, events=frozenset()),
    ],
    ids=["inactive", "other-url", "more-events", "no-events"],
)
def test_a_hook_that_differs_is_not_current(hook: Hook) -> None:
    assert not is_current(GitHubDriver(), hook, SPEC)


def test_current_is_judged_in_the_drivers_event_names() -> None:
    gitlab_hook = Hook(id="1", url=SPEC.url, events=frozenset({"push_events", "tag_push_events"}))

    assert is_current(GitLabDriver(), gitlab_hook, SPEC)
    assert not is_current(GitHubDriver(), gitlab_hook, SPEC)
