"""The SourceCodeRepository objects a credential's listing asks for, and what to change (pure functions).

Each repository the provider lists becomes one object named ``<credential>-<slug>-<hash>`` (the slug
keeps it readable, the hash of the full name keeps two repositories whose slugs collide apart), labelled
with the credential and owned by it: deleting the credential deletes its repositories (the garbage
collector does). Repositories vanish only after a *complete* listing: a listing cut short by a rate limit
or an outage deletes nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from crds.meta import API_VERSION
from crds.sourcecode import SourceCodeCredential
from worker.scm.driver import Repository

CREDENTIAL_LABEL: Final = "devops.cubepaas.io/source-code-credential"
NAME_LIMIT: Final = 120

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def object_name(credential: str, full_name: str) -> str:
    digest = hashlib.sha256(full_name.encode()).hexdigest()[:8]
    slug = _NOT_DNS.sub("-", full_name.lower()).strip("-") or "repo"
    head = f"{credential}-{slug}"[: NAME_LIMIT - 9].rstrip("-")
    return f"{head}-{digest}"


def manifest(credential: SourceCodeCredential, repo: Repository) -> dict[str, Any]:
    """The object mirroring ``repo``; only fields the provider gave are set (an empty one is omitted)."""
    spec: dict[str, Any] = {
        "providerType": credential.spec.provider_type.value,
        "fullName": repo.full_name,
        "url": repo.clone_url,
        "private": repo.private,
        "permissions": {
            "pull": repo.permissions.pull,
            "push": repo.permissions.push,
            "admin": repo.permissions.admin,
        },
        "sourceCodeCredentialName": credential.name,
    }
    for key, value in (
        ("htmlUrl", repo.html_url),
        ("defaultBranch", repo.default_branch),
        ("language", repo.language),
        ("userName", credential.spec.user_name or ""),
    ):
        if value:
            spec[key] = value
    return {
        "apiVersion": API_VERSION,
        "kind": "SourceCodeRepository",
        "metadata": {
            "name": object_name(credential.name, repo.full_name),
            "namespace": credential.namespace,
            "labels": {CREDENTIAL_LABEL: credential.name},
            "ownerReferences": [
                {
                    "apiVersion": credential.api_version,
                    "kind": credential.kind,
                    "name": credential.name,
                    "uid": credential.metadata.uid or "",
                }
            ],
        },
        "spec": spec,
    }


@dataclass
class Plan:
    create: list[dict[str, Any]] = field(default_factory=list)
    update: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    """(desired, live) pairs whose spec differs."""
    delete: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0


def plan(desired: Iterable[dict[str, Any]], live: Iterable[Mapping[str, Any]], *, complete: bool) -> Plan:
    """What to write so the live objects match ``desired``; deletions only when ``complete``."""
    wanted = {m["metadata"]["name"]: m for m in desired}
    existing = {str((o.get("metadata") or {}).get("name")): dict(o) for o in live}
    out = Plan()
    for name, m in wanted.items():
        current = existing.get(name)
        if current is None:
            out.create.append(m)
        elif (current.get("spec") or {}) != m["spec"] or _labels_differ(current, m):
            out.update.append((m, current))
        else:
            out.unchanged += 1
    if complete:
        out.delete = [o for name, o in existing.items() if name not in wanted]
    return out


def _labels_differ(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    have = (live.get("metadata") or {}).get("labels") or {}
    return any(have.get(k) != v for k, v in desired["metadata"]["labels"].items())


__all__ = ["CREDENTIAL_LABEL", "Plan", "manifest", "object_name", "plan"]
