"""What makes two deliveries the same one: a redelivery must create no second run."""

from __future__ import annotations

import pytest

from worker.webhooks.events import Provider
from worker.webhooks.protocol import delivery_id

pytestmark = pytest.mark.unit

PUSH = b'{"ref":"refs/heads/main","before":"1111","after":"2222"}'


def test_a_gitea_replay_under_a_new_delivery_header_is_the_same_delivery() -> None:
    first = delivery_id(Provider.GITEA, {"x-gitea-event": "push", "x-gitea-delivery": "a-1"}, PUSH)
    replay = delivery_id(Provider.GITEA, {"x-gitea-event": "push", "x-gitea-delivery": "b-2"}, PUSH)
    assert first == replay


def test_two_gitea_pushes_with_different_commits_are_two_deliveries() -> None:
    headers = {"x-gitea-event": "push", "x-gitea-delivery": "a-1"}
    later = PUSH.replace(b'"after":"2222"', b'"after":"3333"')
    assert delivery_id(Provider.GITEA, headers, PUSH) != delivery_id(Provider.GITEA, headers, later)


def test_the_same_gitea_body_under_another_event_is_another_delivery() -> None:
    push = delivery_id(Provider.GITEA, {"x-gitea-event": "push"}, PUSH)
    create = delivery_id(Provider.GITEA, {"x-gitea-event": "create"}, PUSH)
    assert push != create


def test_a_forgejo_replay_is_recognised_like_giteas() -> None:
    first = delivery_id(Provider.GITEA, {"x-forgejo-event": "push", "x-forgejo-delivery": "1"}, PUSH)
    replay = delivery_id(Provider.GITEA, {"x-forgejo-event": "push", "x-forgejo-delivery": "2"}, PUSH)
    assert first == replay


def test_github_keeps_its_delivery_header_as_the_identity() -> None:
    one = delivery_id(Provider.GITHUB, {"x-github-delivery": "d-1"}, PUSH)
    other = delivery_id(Provider.GITHUB, {"x-github-delivery": "d-2"}, PUSH)
    assert one == "d-1"
    assert one != other


def test_gitlab_without_a_uuid_falls_back_to_the_body() -> None:
    assert delivery_id(Provider.GITLAB, {}, PUSH) == delivery_id(Provider.GITLAB, {}, PUSH)
    assert delivery_id(Provider.GITLAB, {}, PUSH).startswith("body:")
