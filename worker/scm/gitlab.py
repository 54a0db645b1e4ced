"""GitLab's REST API (``/api/v4``): gitlab.com and self-managed GitLab.

A project is addressed by its full path, URL-encoded as one segment (``group%2Fsub%2Fproject``);
``Authorization: Bearer`` carries personal, project, group and OAuth access tokens alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from worker.scm.driver import (
    Account,
    Endpoint,
    Hook,
    HookEvent,
    HookSpec,
    Permissions,
    ProviderNotFound,
    ProviderUnavailable,
    Repository,
)
from worker.scm.http import Api
from worker.webhooks.events import GitHook, Provider
from worker.webhooks.payload import get, text
from worker.webhooks.scm import gitlab as parse_gitlab

PAGE_SIZE = 100
"""GitLab's maximum ``per_page``."""

REPORTER, DEVELOPER, MAINTAINER = 20, 30, 40
"""GitLab's access levels: a reporter may clone, a developer push, a maintainer manage webhooks."""

EVENT_FLAGS: dict[HookEvent, str] = {
    HookEvent.PUSH: "push_events",
    HookEvent.TAG: "tag_push_events",
    HookEvent.PULL_REQUEST: "merge_requests_events",
}
"""A hook's boolean per event; the names :meth:`GitLabDriver.events_for` produces are these flags."""


class GitLabDriver:
    provider = Provider.GITLAB

    def __init__(self, session: requests.Session | None = None) -> None:
        self.session = session

    def _api(self, endpoint: Endpoint, token: str) -> Api:
        return Api(endpoint, {"Authorization": f"Bearer {token}"}, self.session)

    def verify(self, endpoint: Endpoint, token: str) -> Account:
        doc = self._api(endpoint, token).json("GET", "/user")
        login = text(doc, "username")
        if not login:
            raise ProviderUnavailable("GET /user: the answer names no username")
        return Account(
            login=login,
            display_name=text(doc, "name") or login,
            avatar_url=text(doc, "avatar_url"),
            html_url=text(doc, "web_url"),
        )

    def repositories(self, endpoint: Endpoint, token: str) -> Iterator[Repository]:
        # Keyset pagination (projects support it ordered by id): the next page's link carries
        # ``id_after``, so a project created mid-listing shifts nothing, and offset pagination's
        # 50,000-record ceiling does not apply.
        params: dict[str, str | int] = {
            "membership": "true",
            "simple": "false",
            "per_page": PAGE_SIZE,
            "order_by": "id",
            "sort": "asc",
            "pagination": "keyset",
        }
        for page in self._api(endpoint, token).pages("/projects", params):
            for doc in page:
                repo = _repository(doc)
                if repo is not None:
                    yield repo

    def events_for(self, wanted: frozenset[HookEvent]) -> frozenset[str]:
        # GitLab sends tags as their own "Tag Push Hook": a push hook alone never delivers them.
        return frozenset(EVENT_FLAGS[event] for event in wanted)

    def hooks(self, endpoint: Endpoint, token: str, repo: str) -> list[Hook]:
        api = self._api(endpoint, token)
        out: list[Hook] = []
        for page in api.pages(f"/projects/{_project(repo)}/hooks", {"per_page": PAGE_SIZE}):
            out += [h for h in (_hook(doc) for doc in page) if h is not None]
        return out

    def create_hook(self, endpoint: Endpoint, token: str, repo: str, spec: HookSpec) -> Hook:
        api = self._api(endpoint, token)
        return _returned(api.json("POST", f"/projects/{_project(repo)}/hooks", body=self._settings(spec)))

    def update_hook(self, endpoint: Endpoint, token: str, repo: str, hook_id: str, spec: HookSpec) -> Hook:
        # The token goes again: GitLab resets it when the URL changes and never returns it.
        path = f"/projects/{_project(repo)}/hooks/{quote(hook_id, safe='')}"
        return _returned(self._api(endpoint, token).json("PUT", path, body=self._settings(spec)))

    def delete_hook(self, endpoint: Endpoint, token: str, repo: str, hook_id: str) -> None:
        try:
            path = f"/projects/{_project(repo)}/hooks/{quote(hook_id, safe='')}"
            self._api(endpoint, token).call("DELETE", path)
        except ProviderNotFound:
            return

    def parse_hook(self, event: str, doc: dict[str, Any]) -> GitHook:
        return parse_gitlab(event, doc)

    @staticmethod
    def _settings(spec: HookSpec) -> dict[str, Any]:
        return {
            "url": spec.url,
            "token": spec.secret,
            **{flag: event in spec.events for event, flag in EVENT_FLAGS.items()},
            "enable_ssl_verification": True,
        }


def _project(full_path: str) -> str:
    return quote(full_path, safe="")


def _access_level(doc: Any, kind: str) -> int:
    level = get(doc, "permissions", kind, "access_level")
    return level if isinstance(level, int) and not isinstance(level, bool) else 0


def _repository(doc: Any) -> Repository | None:
    full_name, clone_url = text(doc, "path_with_namespace"), text(doc, "http_url_to_repo")
    if not full_name or not clone_url:
        return None
    visibility = text(doc, "visibility")
    level = max(_access_level(doc, "project_access"), _access_level(doc, "group_access"))
    # The listing names only a direct membership of the project or of its own group: one inherited from
    # an ancestor group or a shared group leaves both null. Such a project is listed because the user
    # is a member, so it is counted as readable; pushing and hooks wait for a level the API states.
    pull = level >= REPORTER or visibility in ("public", "internal") or level == 0
    return Repository(
        full_name=full_name,
        clone_url=clone_url,
        html_url=text(doc, "web_url"),
        default_branch=text(doc, "default_branch"),
        language="",  # not in the listing (one more call per project: GET /projects/:id/languages)
        private=visibility != "public",
        permissions=Permissions(pull=pull, push=level >= DEVELOPER, admin=level >= MAINTAINER),
    )


def _hook(doc: Any) -> Hook | None:
    hook_id = text(doc, "id")
    if not hook_id:
        return None
    return Hook(
        id=hook_id,
        url=text(doc, "url"),
        events=frozenset(flag for flag in EVENT_FLAGS.values() if get(doc, flag) is True),
        active=_executable(doc),
    )


def _executable(doc: Any) -> bool:
    """GitLab has no "active" flag: it disables a failing hook, for a while or until someone re-enables it."""
    if text(doc, "alert_status") == "disabled":
        return False
    until = _timestamp(text(doc, "disabled_until"))
    return until is None or until <= datetime.now(UTC)


def _timestamp(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _returned(doc: Any) -> Hook:
    hook = _hook(doc)
    if hook is None:
        raise ProviderUnavailable("the hook GitLab returned has no id")
    return hook


__all__ = ["GitLabDriver"]
