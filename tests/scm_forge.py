"""An in-memory provider driver for the tests of the source-code reconcilers: accounts, repositories and
hooks in dicts, and switches that make it refuse or stop answering. The real drivers are proven against
recorded answers (GitHub, GitLab) and the stack's Gitea; this one lets a test reach every branch."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from worker.scm.driver import (
    Account,
    Endpoint,
    Hook,
    HookEvent,
    HookSpec,
    ProviderForbidden,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderUnauthorized,
    ProviderUnavailable,
    Repository,
)
from worker.webhooks.events import GitHook, Provider
from worker.webhooks.scm import gitea


@dataclass
class FakeForge:
    provider: Provider = Provider.GITEA
    tokens: dict[str, str] = field(default_factory=dict)
    """token -> login"""
    repos: dict[str, list[Repository]] = field(default_factory=dict)
    """login -> repositories"""
    installed: dict[str, dict[str, tuple[HookSpec, bool]]] = field(default_factory=dict)
    """repo -> hook id -> (spec, active)"""
    admin_of: set[str] = field(default_factory=set)
    down: bool = False
    rate_limited_after: int | None = None
    calls: list[str] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def _login(self, token: str, what: str) -> str:
        self.calls.append(what)
        if self.down:
            raise ProviderUnavailable(f"{what}: HTTP 503: the forge is down")
        login = self.tokens.get(token)
        if login is None:
            raise ProviderUnauthorized(f"{what}: HTTP 401: token is invalid", status=401)
        return login

    def verify(self, endpoint: Endpoint, token: str) -> Account:
        login = self._login(token, "GET /user")
        return Account(login=login, display_name=login.title(), html_url=f"{endpoint.web_url}/{login}")

    def repositories(self, endpoint: Endpoint, token: str) -> Iterator[Repository]:
        login = self._login(token, "GET /user/repos")
        for n, repo in enumerate(self.repos.get(login, [])):
            if self.rate_limited_after is not None and n >= self.rate_limited_after:
                raise ProviderRateLimited("GET /user/repos: HTTP 429: slow down", retry_after=30)
            yield repo

    def events_for(self, wanted: frozenset[HookEvent]) -> frozenset[str]:
        out = {"push"} if wanted & {HookEvent.PUSH, HookEvent.TAG} else set()
        return frozenset(out | ({"pull_request"} if HookEvent.PULL_REQUEST in wanted else set()))

    def _hook(self, hook_id: str, spec: HookSpec, active: bool) -> Hook:
        return Hook(id=hook_id, url=spec.url, events=self.events_for(spec.events), active=active)

    def _admin(self, token: str, repo: str, what: str) -> None:
        self._login(token, what)
        if repo not in self.admin_of:
            raise ProviderForbidden(f"{what}: HTTP 403: you must be an admin of {repo}", status=403)

    def hooks_of(self, repo: str) -> dict[str, tuple[HookSpec, bool]]:
        return self.installed.setdefault(repo, {})

    def hooks(self, endpoint: Endpoint, token: str, repo: str) -> list[Hook]:
        self._admin(token, repo, f"GET /repos/{repo}/hooks")
        return [self._hook(i, s, a) for i, (s, a) in self.hooks_of(repo).items()]

    def create_hook(self, endpoint: Endpoint, token: str, repo: str, spec: HookSpec) -> Hook:
        self._admin(token, repo, f"POST /repos/{repo}/hooks")
        hook_id = str(next(self._ids))
        self.hooks_of(repo)[hook_id] = (spec, True)
        return self._hook(hook_id, spec, True)

    def update_hook(self, endpoint: Endpoint, token: str, repo: str, hook_id: str, spec: HookSpec) -> Hook:
        self._admin(token, repo, f"PATCH /repos/{repo}/hooks/{hook_id}")
        if hook_id not in self.hooks_of(repo):
            raise ProviderNotFound(f"PATCH /repos/{repo}/hooks/{hook_id}: HTTP 404", status=404)
        self.hooks_of(repo)[hook_id] = (spec, True)
        return self._hook(hook_id, spec, True)

    def delete_hook(self, endpoint: Endpoint, token: str, repo: str, hook_id: str) -> None:
        self._admin(token, repo, f"DELETE /repos/{repo}/hooks/{hook_id}")
        self.hooks_of(repo).pop(hook_id, None)

    def parse_hook(self, event: str, doc: dict[str, Any]) -> GitHook:
        return gitea(event, doc)
