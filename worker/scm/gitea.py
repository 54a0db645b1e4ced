"""Gitea's REST API (``/api/v1``) as Gitea 1.2x and Forgejo serve it, proven live on the stack's Gitea."""

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
from worker.webhooks.payload import get, text
from worker.webhooks.scm import gitea as parse_gitea

PAGE_SIZE = 50
"""Gitea's default ``[api] MAX_RESPONSE_ITEMS``; a larger ``limit`` is cut to it."""


class GiteaDriver:
    provider = Provider.GITEA

    def __init__(self, session: requests.Session | None = None) -> None:
        self.session = session

    def _api(self, endpoint: Endpoint, token: str) -> Api:
        return Api(endpoint, {"Authorization": f"token {token}"}, self.session)

    def verify(self, endpoint: Endpoint, token: str) -> Account:
        doc = self._api(endpoint, token).json("GET", "/user")
        login = text(doc, "login")
        if not login:
            raise ProviderUnavailable("GET /user: the answer names no login")
        return Account(
            login=login,
            display_name=text(doc, "full_name") or login,
            avatar_url=text(doc, "avatar_url"),
            html_url=text(doc, "html_url"),
        )

    def repositories(self, endpoint: Endpoint, token: str) -> Iterator[Repository]:
        for page in self._api(endpoint, token).pages("/user/repos", {"limit": PAGE_SIZE, "page": 1}):
            for doc in page:
                repo = _repository(doc)
                if repo is not None:
                    yield repo

    def events_for(self, wanted: frozenset[HookEvent]) -> frozenset[str]:
        # Gitea delivers a pushed tag as a "push" (ref refs/tags/...); "pull_request" subscribes to the
        # pull request's sub-events too, "synchronized" (new commits on the head) among them.
        out: set[str] = set()
        if wanted & {HookEvent.PUSH, HookEvent.TAG}:
            out.add("push")
        if HookEvent.PULL_REQUEST in wanted:
            out.add("pull_request")
        return frozenset(out)

    def hooks(self, endpoint: Endpoint, token: str, repo: str) -> list[Hook]:
        api = self._api(endpoint, token)
        out: list[Hook] = []
        for page in api.pages(f"/repos/{_repo(repo)}/hooks", {"limit": PAGE_SIZE, "page": 1}):
            out += [h for h in (_hook(doc) for doc in page) if h is not None]
        return out

    def create_hook(self, endpoint: Endpoint, token: str, repo: str, spec: HookSpec) -> Hook:
        body = {"type": "gitea", "active": True, "branch_filter": "*", **self._settings(spec)}
        return self._returned(
            self._api(endpoint, token).json("POST", f"/repos/{_repo(repo)}/hooks", body=body)
        )

    def update_hook(self, endpoint: Endpoint, token: str, repo: str, hook_id: str, spec: HookSpec) -> Hook:
        body = {"active": True, **self._settings(spec)}
        path = f"/repos/{_repo(repo)}/hooks/{quote(hook_id, safe='')}"
        return self._returned(self._api(endpoint, token).json("PATCH", path, body=body))

    def delete_hook(self, endpoint: Endpoint, token: str, repo: str, hook_id: str) -> None:
        try:
            self._api(endpoint, token).call("DELETE", f"/repos/{_repo(repo)}/hooks/{quote(hook_id, safe='')}")
        except ProviderNotFound:
            return

    def parse_hook(self, event: str, doc: dict[str, Any]) -> GitHook:
        return parse_gitea(event, doc)

    def _settings(self, spec: HookSpec) -> dict[str, Any]:
        return {
            "config": {"url": spec.url, "content_type": "json", "secret": spec.secret},
            "events": sorted(self.events_for(spec.events)),
        }

    @staticmethod
    def _returned(doc: Any) -> Hook:
        hook = _hook(doc)
        if hook is None:
            raise ProviderUnavailable("the hook Gitea returned has no id")
        return hook


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
    # A hook lists each event it sends: one created with "pull_request" lists "pull_request" (opened,
    # reopened...) and "pull_request_sync" (new commits) among the pull request's sub-events. Both are
    # what a Pipeline's pull_request trigger needs; a hook with only some sub-events (comments, reviews)
    # does not deliver it.
    names = {name for name in get(doc, "events") or [] if isinstance(name, str)}
    events: set[str] = set()
    if "push" in names:
        events.add("push")
    if {"pull_request", "pull_request_sync"} <= names:
        events.add("pull_request")
    return Hook(
        id=hook_id,
        url=text(doc, "config", "url"),
        events=frozenset(events),
        active=get(doc, "active") is not False,
    )


__all__ = ["GiteaDriver"]
