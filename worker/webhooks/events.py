"""What a delivery means, independent of the provider that sent it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Provider(StrEnum):
    """The provider named by the URL (``/hooks/<provider>/...``)."""

    GITHUB = "github"
    GITLAB = "gitlab"
    BITBUCKET = "bitbucket"
    GITEA = "gitea"
    REGISTRY = "registry"


class HookKind(StrEnum):
    """What a source-code delivery asks for."""

    PUSH = "push"
    TAG = "tag"
    PULL_REQUEST = "pull_request"
    PING = "ping"
    IGNORED = "ignored"
    """An event or action that starts nothing (e.g. a pull request closed)."""


class Outcome(StrEnum):
    """How a delivery was answered (the ``outcome`` label of the metrics and the JSON answer)."""

    CREATED = "created"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    IGNORED = "ignored"
    PONG = "pong"
    UNAUTHORIZED = "unauthorized"
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    ERROR = "error"


ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class GitHook:
    """One source-code delivery, mapped from the provider's payload."""

    kind: HookKind
    event: str
    """The provider's event name (``push``, ``Merge Request Hook``, ``repo:refs_changed``...), for metrics."""
    ref: str = ""
    branch: str = ""
    """The branch pushed, or a pull request's target branch."""
    commit: str = ""
    author: str = ""
    sender: str = ""
    message: str = ""
    link: str = ""
    deleted: bool = False
    """The push deleted the branch or tag (``after`` all zeros)."""
    without_commits: bool = False
    """A branch push that carries no commit."""
    from_fork: bool = False
    """A pull request whose head lives in another repository."""
    note: str = ""
    """Why an IGNORED event starts nothing."""


@dataclass(frozen=True)
class ImagePush:
    """One pushed image tag."""

    repository: str
    """Repository path without the registry host, e.g. ``library/app``."""
    tag: str
    digest: str
    event_id: str
    """The registry's id of this event (de-duplicated)."""


@dataclass(frozen=True)
class ImageHook:
    """An image-push delivery: zero or more pushed tags (blob and pull events are dropped)."""

    event: str
    pushes: list[ImagePush] = field(default_factory=list)
    ignored: int = 0
    """Events that were not tag pushes of a manifest."""


class MalformedPayload(ValueError):
    """The body is not the JSON this provider sends (a 400)."""


def branch_of(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


__all__ = [
    "ZERO_SHA",
    "GitHook",
    "HookKind",
    "ImageHook",
    "ImagePush",
    "MalformedPayload",
    "Outcome",
    "Provider",
    "branch_of",
]
