"""GitHub's REST API (v3, version 2022-11-28): github.com (``https://api.github.com``) and GitHub Enterprise
Server (``<host>/api/v3``)."""

from __future__ import annotations

from collections.abc import Iterator
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
from worker.webhooks.payload import get, items, text
from worker.webhooks.scm import github as parse_github

API_VERSION = "2022-11-28"
PAGE_SIZE = 100
"""GitHub's maximum ``per_page``."""
AFFILIATION = "owner,collaborator,organization_member"
"""Every repository the token's user reaches: own, as a collaborator, through an organization's teams."""


class GitHubDriver:
    provider = Provider.GITHUB

    def __init__(self, session: requests.Session | None = None) -> None:
        self.session = session

    def _api(self, endpoint: Endpoint, token: str) -> Api:
        return Api(
            endpoint,
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
            },
            self.session,
        )

    def verify(self, endpoint: Endpoint, token: str) -> Account:
        doc = self._api(endpoint, token).json("GET", "/user")
        login = text(doc, "login")
        if not login:
            raise ProviderUnavailable("GET /user: the answer names no login")
        return Account(
            login=login,
            display_name=text(doc, "name") or login,
            avatar_url=text(doc, "avatar_url"),
            html_url=text(doc, "html_url"),
        )

    def repositories(self, endpoint: Endpoint, token: str) -> Iterator[Repository]:
        params: dict[str, str | int] = {"per_page": PAGE_SIZE, "affiliation": AFFILIATION}
        for page in self._api(endpoint, token).pages("/user/repos", params):
            for doc in page:
                repo = _repository(doc)
                if repo is not None:
                    yield repo

    def events_for(self, wanted: frozenset[HookEvent]) -> frozenset[str]:
        # A pushed tag is a "push" delivery (ref refs/tags/...); "create" would also fire for branches.
        out: set[str] = set()
        if wanted & {HookEvent.PUSH, HookEvent.TAG}:
            out.add("push")
        if HookEvent.PULL_REQUEST in wanted:
            out.add("pull_request")
        return frozenset(out)

    def hooks(self, endpoint: Endpoint, token: str, repo: str) -> list[Hook]:
        api = self._api(endpoint, token)
        out: list[Hook] = []
        for page in api.pages(f"/repos/{_repo(repo)}/hooks", {"per_page": PAGE_SIZE}):
            out += [h for h in (_hook(doc) for doc in page if text(doc, "name") == "web") if h is not None]
        return out

    def create_hook(self, endpoint: Endpoint, token: str, repo: str, spec: HookSpec) -> Hook:
        body = {"name": "web", **self._settings(spec)}
        return _returned(self._api(endpoint, token).json("POST", f"/repos/{_repo(repo)}/hooks", body=body))

    def update_hook(self, endpoint: Endpoint, token: str, repo: str, hook_id: str, spec: HookSpec) -> Hook:
        # The whole config goes again: GitHub drops a secret an update does not repeat.
        path = f"/repos/{_repo(repo)}/hooks/{quote(hook_id, safe='')}"
        return _returned(self._api(endpoint, token).json("PATCH", path, body=self._settings(spec)))

    def delete_hook(self, endpoint: Endpoint, token: str, repo: str, hook_id: str) -> None:
        try:
            self._api(endpoint, token).call("DELETE", f"/repos/{_repo(repo)}/hooks/{quote(hook_id, safe='')}")
        except ProviderNotFound:
            return

    def parse_hook(self, event: str, doc: dict[str, Any]) -> GitHook:
        return parse_github(event, doc)

    def _settings(self, spec: HookSpec) -> dict[str, Any]:
        return {
            "active": True,
            "events": sorted(self.events_for(spec.events)),
            "config": {
                "url": spec.url,
                "content_type": "json",
                "secret": spec.secret,
                "insecure_ssl": "0",
            },
        }


def _repo(full_name: str) -> str:
    owner, _, name = full_name.partition("/")
    return f"{quote(owner, safe='')}/{quote(name, safe='')}"


def _repository(doc: Any) -> Repository | None:
    full_name, clone_url = text(doc, "full_name"), text(doc, "clone_url")
    if not full_name or not clone_url:
        return None
    perms = get(doc, "permissions")
    return Repository(
        full_name=full_name,
        clone_url=clone_url,
        html_url=text(doc, "html_url"),
        default_branch=text(doc, "default_branch"),
        language=text(doc, "language"),
        private=get(doc, "private") is True,
        permissions=Permissions(
            pull=get(perms, "pull") is not False,
            push=get(perms, "push") is True,
            admin=get(perms, "admin") is True,
        ),
    )


def _hook(doc: Any) -> Hook | None:
    hook_id = text(doc, "id")
    if not hook_id:
        return None
    events: set[str] = set()
    for name in items(doc, "events"):
        if name == "*":  # every event GitHub has
            events |= {"push", "pull_request"}
        elif name in ("push", "pull_request"):
            events.add(name)
    return Hook(
        id=hook_id,
        url=text(doc, "config", "url"),
        events=frozenset(events),
        active=get(doc, "active") is not False,
    )


def _returned(doc: Any) -> Hook:
    hook = _hook(doc)
    if hook is None:
        raise ProviderUnavailable("the hook GitHub returned has no id")
    return hook


__all__ = ["GitHubDriver"]
