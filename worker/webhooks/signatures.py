"""Is this body from whoever holds the Pipeline's secret? One check per provider, all constant-time.

Every comparison goes through :func:`hmac.compare_digest`; a missing header, a malformed one, a wrong
algorithm prefix and a wrong value are all the same answer: not verified. Nothing here logs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from worker.webhooks.events import Provider


def hmac_sha256_hex(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def _prefixed_sha256(header: str | None, secret: bytes, body: bytes) -> bool:
    """``sha256=<hex>`` (GitHub's X-Hub-Signature-256, Bitbucket's X-Hub-Signature)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac_sha256_hex(secret, body)
    return hmac.compare_digest(header.strip().lower().encode(), expected.encode())


def _bare_sha256(header: str | None, secret: bytes, body: bytes) -> bool:
    """``<hex>`` (Gitea's X-Gitea-Signature, Forgejo's X-Forgejo-Signature)."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().lower().encode(), hmac_sha256_hex(secret, body).encode())


def _token(header: str | None, secret: bytes) -> bool:
    """The secret itself (GitLab's X-Gitlab-Token)."""
    if not header:
        return False
    return hmac.compare_digest(header.encode(), secret)


def verify(provider: Provider, headers: Mapping[str, str], secret: bytes, body: bytes) -> bool:
    """Whether the request is signed with ``secret``; ``headers`` have lower-case names."""
    if not secret:
        return False
    if provider is Provider.GITHUB:
        return _prefixed_sha256(headers.get("x-hub-signature-256"), secret, body)
    if provider is Provider.BITBUCKET:
        return _prefixed_sha256(headers.get("x-hub-signature"), secret, body)
    if provider is Provider.GITLAB:
        return _token(headers.get("x-gitlab-token"), secret)
    if provider is Provider.GITEA:
        return _bare_sha256(
            headers.get("x-forgejo-signature") or headers.get("x-gitea-signature"), secret, body
        )
    return False


def bearer_matches(presented: str | None, token: bytes) -> bool:
    """``Authorization: Bearer <token>`` or the bare token (Harbor sends its auth header verbatim)."""
    if not presented or not token:
        return False
    value = presented.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return hmac.compare_digest(value.encode(), token)


def sign(provider: Provider, secret: bytes, body: bytes) -> dict[str, str]:
    """The headers a provider would send for ``body`` (tests and ``devopsctl webhook`` examples)."""
    digest = hmac_sha256_hex(secret, body)
    if provider is Provider.GITHUB:
        return {"X-Hub-Signature-256": f"sha256={digest}"}
    if provider is Provider.BITBUCKET:
        return {"X-Hub-Signature": f"sha256={digest}"}
    if provider is Provider.GITLAB:
        return {"X-Gitlab-Token": secret.decode()}
    if provider is Provider.GITEA:
        return {"X-Gitea-Signature": digest}
    raise ValueError(f"{provider} is not signed with a shared secret")


__all__ = ["bearer_matches", "hmac_sha256_hex", "sign", "verify"]
