"""What every provider driver does, in the provider's own REST API, and the faults it reports.

A driver is stateless: each call gets the token it acts with. Faults are classified once, in
:mod:`worker.scm.http`, into the tree below; callers act on the branch, never on status codes::

    ProviderError                 base; ``message`` is the provider's own words, for a CR's condition
    ├── ProviderUnavailable       5xx, timeouts, connection errors: try again later
    │   └── ProviderRateLimited   the token's rate limit is spent; ``retry_after`` seconds
    └── ProviderRefused           4xx: the same call will fail again until someone changes something
        ├── ProviderUnauthorized  401: the token is wrong, expired or revoked
        ├── ProviderForbidden     403: the token may not do this (e.g. no admin right on the repository)
        └── ProviderNotFound      404
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from worker.webhooks.events import GitHook, Provider


class ProviderError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ProviderUnavailable(ProviderError):
    pass


class ProviderRateLimited(ProviderUnavailable):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float = 60.0) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ProviderRefused(ProviderError):
    pass


class ProviderUnauthorized(ProviderRefused):
    pass


class ProviderForbidden(ProviderRefused):
    pass


class ProviderNotFound(ProviderRefused):
    pass


class HookEvent(StrEnum):
    """What a Pipeline's triggers want delivered (each driver maps these to its own event names)."""

    PUSH = "push"
    TAG = "tag"
    PULL_REQUEST = "pull_request"


@dataclass(frozen=True)
class Endpoint:
    """Where a provider's API is and how to trust it (from the SourceCodeProviderConfig)."""

    api_url: str
    """Base URL of the REST API, without a trailing slash (https://api.github.com, .../api/v4, .../api/v1)."""
    web_url: str
    """Base URL of the web UI (https://github.com), the prefix of repository URLs."""
    verify: bool | str = True
    """``requests``' ``verify``: True, False (tlsInsecureSkipVerify) or a CA bundle file."""
    timeout: float = 15.0


@dataclass(frozen=True)
class Account:
    """Who a token belongs to."""

    login: str
    display_name: str = ""
    avatar_url: str = ""
    html_url: str = ""


@dataclass(frozen=True)
class Permissions:
    pull: bool = True
    push: bool = False
    admin: bool = False


@dataclass(frozen=True)
class Repository:
    """A repository a token can see."""

    full_name: str
    """``owner/name`` (GitLab: the project's full path, groups included)."""
    clone_url: str
    """git over HTTPS."""
    html_url: str = ""
    default_branch: str = ""
    language: str = ""
    private: bool = False
    permissions: Permissions = field(default_factory=Permissions)


@dataclass(frozen=True)
class HookSpec:
    """The webhook a Pipeline wants at its repository."""

    url: str
    secret: str
    events: frozenset[HookEvent]


@dataclass(frozen=True)
class Hook:
    """A webhook as the provider reports it."""

    id: str
    url: str
    events: frozenset[str]
    """The provider's own event names, normalised by the driver to what :meth:`Driver.events_for`
    produces (e.g. Gitea's ``pull_request_sync`` counts as ``pull_request``)."""
    active: bool = True


class Driver(Protocol):
    provider: Provider
    """The receiver's path segment (``/hooks/<provider>/...``) and the parser of its deliveries."""

    def verify(self, endpoint: Endpoint, token: str) -> Account:
        """The account of ``token``; :class:`ProviderUnauthorized` when the provider refuses it."""
        ...

    def repositories(self, endpoint: Endpoint, token: str) -> Iterator[Repository]:
        """Every repository the token can see, page by page (the caller may stop early)."""
        ...

    def events_for(self, wanted: frozenset[HookEvent]) -> frozenset[str]:
        """The provider's event names that deliver ``wanted`` (GitHub and Gitea send tags as pushes)."""
        ...

    def hooks(self, endpoint: Endpoint, token: str, repo: str) -> list[Hook]:
        """The repository's webhooks (``repo`` is :attr:`Repository.full_name`)."""
        ...

    def create_hook(self, endpoint: Endpoint, token: str, repo: str, spec: HookSpec) -> Hook: ...

    def update_hook(
        self, endpoint: Endpoint, token: str, repo: str, hook_id: str, spec: HookSpec
    ) -> Hook: ...

    def delete_hook(self, endpoint: Endpoint, token: str, repo: str, hook_id: str) -> None:
        """Remove the hook; a hook that is already gone is not an error."""
        ...

    def parse_hook(self, event: str, doc: dict[str, Any]) -> GitHook:
        """One delivery of this provider (the receiver's parser)."""
        ...


def is_current(driver: Driver, hook: Hook, spec: HookSpec) -> bool:
    """Whether ``hook`` already delivers what ``spec`` asks. Providers never return a hook's secret: a
    rotated secret is pushed by an update the caller decides on."""
    return hook.active and hook.url == spec.url and hook.events == driver.events_for(spec.events)


def repository_path(web_url: str, repository_url: str) -> str | None:
    """``owner/name`` of ``repository_url`` when it lives under ``web_url``, else None.

    The scheme may differ (http or https) as long as the effective port is the same, so
    ``http://host/o/r`` matches ``https://host`` only when both name the port; the ``.git`` suffix
    is optional, the host compares without case and credentials in the URL (``https://user@host/...``)
    are ignored.
    """
    from urllib.parse import urlsplit

    base = urlsplit(web_url.rstrip("/"))
    url = urlsplit(repository_url.strip())
    if url.scheme not in ("http", "https") or (url.hostname or "").lower() != (base.hostname or "").lower():
        return None
    if (url.port or _default_port(url.scheme)) != (base.port or _default_port(base.scheme)):
        return None
    prefix = base.path.rstrip("/")
    path = url.path
    if prefix and not path.startswith(prefix + "/"):
        return None
    path = path[len(prefix) :].strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2 or any(p in (".", "..") for p in parts):
        return None
    return "/".join(parts)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


__all__ = [
    "Account",
    "Driver",
    "Endpoint",
    "Hook",
    "HookEvent",
    "HookSpec",
    "Permissions",
    "ProviderError",
    "ProviderForbidden",
    "ProviderNotFound",
    "ProviderRateLimited",
    "ProviderRefused",
    "ProviderUnauthorized",
    "ProviderUnavailable",
    "Repository",
    "is_current",
    "repository_path",
]
