"""Signature checks of each provider (pure functions; the GitHub HMAC is also checked against octokit)."""

from __future__ import annotations

import pytest

from worker.webhooks.events import Provider
from worker.webhooks.signatures import bearer_matches, hmac_sha256_hex, sign, verify

pytestmark = pytest.mark.unit

BODY = b'{"ref": "refs/heads/main"}'
SECRET = b"s3cret"


@pytest.mark.parametrize("provider", [Provider.GITHUB, Provider.GITLAB, Provider.BITBUCKET, Provider.GITEA])
def test_each_provider_verifies_what_it_signs_and_nothing_else(provider: Provider) -> None:
    headers = {k.lower(): v for k, v in sign(provider, SECRET, BODY).items()}
    assert verify(provider, headers, SECRET, BODY)
    assert not verify(provider, headers, b"other", BODY)
    assert not verify(provider, {}, SECRET, BODY)
    assert not verify(provider, headers, b"", BODY)  # a Pipeline without a secret accepts nothing
    if provider is not Provider.GITLAB:  # GitLab's token does not cover the body
        assert not verify(provider, headers, SECRET, BODY + b" ")


def test_forgejo_signs_with_its_own_header() -> None:
    assert verify(Provider.GITEA, {"x-forgejo-signature": hmac_sha256_hex(SECRET, BODY)}, SECRET, BODY)


def test_a_github_signature_without_its_algorithm_prefix_or_with_sha1_is_refused() -> None:
    digest = hmac_sha256_hex(SECRET, BODY)
    assert not verify(Provider.GITHUB, {"x-hub-signature-256": digest}, SECRET, BODY)
    assert not verify(Provider.GITHUB, {"x-hub-signature-256": "sha1=" + digest}, SECRET, BODY)
    assert not verify(Provider.GITHUB, {"x-hub-signature": "sha256=" + digest}, SECRET, BODY)


def test_a_gitlab_token_must_match_entirely() -> None:
    assert not verify(Provider.GITLAB, {"x-gitlab-token": "s3cre"}, SECRET, BODY)
    assert not verify(Provider.GITLAB, {"x-gitlab-token": "s3cret "}, SECRET, BODY)


def test_registry_tokens_are_accepted_bare_or_as_bearer_only_when_equal() -> None:
    assert bearer_matches("Bearer tok", b"tok")
    assert bearer_matches("bearer tok", b"tok")
    assert bearer_matches("tok", b"tok")
    assert not bearer_matches("Bearer to", b"tok")
    assert not bearer_matches("", b"tok")
    assert not bearer_matches("tok", b"")
