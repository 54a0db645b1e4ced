"""Which header names the event and which one the delivery, per provider."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from worker.webhooks.events import Provider

EVENT_HEADERS: dict[Provider, tuple[str, ...]] = {
    Provider.GITHUB: ("x-github-event",),
    Provider.GITLAB: ("x-gitlab-event",),
    Provider.BITBUCKET: ("x-event-key",),
    Provider.GITEA: ("x-forgejo-event", "x-gitea-event"),
}

DELIVERY_HEADERS: dict[Provider, tuple[str, ...]] = {
    Provider.GITHUB: ("x-github-delivery",),
    Provider.GITLAB: ("x-gitlab-event-uuid",),
    # Cloud sends X-Request-UUID, Server/Data Center X-Request-Id.
    Provider.BITBUCKET: ("x-request-uuid", "x-request-id"),
    Provider.GITEA: ("x-forgejo-delivery", "x-gitea-delivery"),
}

#: What ``devopsctl webhook`` tells the user to subscribe to at each provider.
EVENTS_TO_CONFIGURE: dict[Provider, tuple[str, ...]] = {
    Provider.GITHUB: ("push", "pull_request"),
    Provider.GITLAB: ("Push events", "Tag push events", "Merge request events"),
    Provider.BITBUCKET: (
        "repo:push",
        "pullrequest:created",
        "pullrequest:updated",
        "repo:refs_changed",
        "pr:opened",
        "pr:modified",
        "pr:from_ref_updated",
    ),
    Provider.GITEA: ("push", "pull_request"),
}


#: Event names counted in metrics as themselves; any other (verified) event is counted as "other", so a
#: sender cannot grow the metrics' label set.
KNOWN_EVENTS: frozenset[str] = frozenset(
    {
        "push",
        "pull_request",
        "ping",
        "create",
        "Push Hook",
        "Tag Push Hook",
        "Merge Request Hook",
        "repo:push",
        "pullrequest:created",
        "pullrequest:updated",
        "repo:refs_changed",
        "pr:opened",
        "pr:modified",
        "pr:from_ref_updated",
        "diagnostics:ping",
        "distribution",
        "dockerhub",
        "harbor:PUSH_ARTIFACT",
    }
)


def metric_event(event: str) -> str:
    return event if event in KNOWN_EVENTS else ("-" if not event else "other")


def first(headers: Mapping[str, str], names: tuple[str, ...]) -> str:
    return next((headers[n].strip() for n in names if headers.get(n, "").strip()), "")


def event_name(provider: Provider, headers: Mapping[str, str]) -> str:
    return first(headers, EVENT_HEADERS[provider])


def delivery_id(provider: Provider, headers: Mapping[str, str], body: bytes) -> str:
    """What identifies one delivery across the provider's redeliveries of it.

    GitHub, GitLab and Bitbucket repeat their delivery header when asked to redeliver. Gitea and
    Forgejo do not: a replay from the hook's page is sent again with the same body and signature under
    a new ``X-Gitea-Delivery``, so for them the event and the body's sha256 are the identity (two real
    pushes differ in ``before``/``after`` at least). Without a header (old GitLab) the body is too.
    """
    if provider is Provider.GITEA:
        return f"body:{event_name(provider, headers)}:" + hashlib.sha256(body).hexdigest()
    return first(headers, DELIVERY_HEADERS[provider]) or "body:" + hashlib.sha256(body).hexdigest()


__all__ = [
    "DELIVERY_HEADERS",
    "EVENTS_TO_CONFIGURE",
    "EVENT_HEADERS",
    "KNOWN_EVENTS",
    "delivery_id",
    "event_name",
    "first",
    "metric_event",
]
