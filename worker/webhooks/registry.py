"""Image-push notifications -> :class:`ImageHook`: the distribution registry, Harbor and Docker Hub.

- distribution (``application/vnd.docker.distribution.events.v1+json`` / ``v2``): ``{"events": [...]}``;
  blob uploads arrive as ``push`` events too, so only a ``push`` whose target is a manifest and carries a
  tag counts. Each event's ``id`` is its delivery id (delivery is at least once).
- Harbor (default payload): ``type: PUSH_ARTIFACT``, ``event_data.resources[] {digest, tag}``,
  ``event_data.repository.repo_full_name``.
- Docker Hub: ``push_data.tag``, ``repository.repo_name``; it sends no digest.
"""

from __future__ import annotations

import hashlib
from typing import Any

from worker.webhooks.events import ImageHook, ImagePush, MalformedPayload
from worker.webhooks.payload import get, items, text

MANIFEST_MEDIA_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    }
)


def parse(doc: dict[str, Any]) -> ImageHook:
    if isinstance(doc.get("events"), list):
        return _distribution(doc)
    if text(doc, "type") and isinstance(get(doc, "event_data"), dict):
        return _harbor(doc)
    if isinstance(get(doc, "push_data"), dict):
        return _docker_hub(doc)
    raise MalformedPayload("not a distribution, Harbor or Docker Hub notification")


def _distribution(doc: dict[str, Any]) -> ImageHook:
    pushes: list[ImagePush] = []
    ignored = 0
    for event in items(doc, "events"):
        target = get(event, "target")
        if (
            text(event, "action") != "push"
            or text(target, "mediaType") not in MANIFEST_MEDIA_TYPES
            or not text(target, "tag")
            or not text(event, "id")
        ):
            ignored += 1
            continue
        pushes.append(
            ImagePush(
                repository=text(target, "repository"),
                tag=text(target, "tag"),
                digest=text(target, "digest"),
                event_id=text(event, "id"),
            )
        )
    return ImageHook(event="distribution", pushes=pushes, ignored=ignored)


def _harbor(doc: dict[str, Any]) -> ImageHook:
    kind = text(doc, "type")
    if kind != "PUSH_ARTIFACT":
        return ImageHook(event=f"harbor:{kind}", ignored=1)
    repository = text(doc, "event_data", "repository", "repo_full_name")
    occurred = text(doc, "occur_at")
    pushes = [
        ImagePush(
            repository=repository,
            tag=text(resource, "tag"),
            digest=text(resource, "digest"),
            event_id=f"{occurred}:{text(resource, 'digest')}:{text(resource, 'tag')}",
        )
        for resource in items(doc, "event_data", "resources")
        if text(resource, "tag")
    ]
    return ImageHook(event="harbor:PUSH_ARTIFACT", pushes=pushes)


def _docker_hub(doc: dict[str, Any]) -> ImageHook:
    repository = text(doc, "repository", "repo_name")
    tag = text(doc, "push_data", "tag")
    if not repository or not tag:
        return ImageHook(event="dockerhub", ignored=1)
    # Docker Hub sends no event id: its callback_url is unique per push.
    seed = text(doc, "callback_url") or f"{repository}:{tag}:{text(doc, 'push_data', 'pushed_at')}"
    return ImageHook(
        event="dockerhub",
        pushes=[
            ImagePush(
                repository=repository, tag=tag, digest="", event_id=hashlib.sha256(seed.encode()).hexdigest()
            )
        ],
    )


__all__ = ["MANIFEST_MEDIA_TYPES", "parse"]
