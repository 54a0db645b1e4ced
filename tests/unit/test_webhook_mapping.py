"""Which image pushes a Pipeline's ``triggers.imagePush`` covers (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec, Triggers
from worker.webhooks.events import ImagePush
from worker.webhooks.mapping import image_matches

pytestmark = pytest.mark.unit


def pipeline(image_push: dict[str, Any] | None) -> Pipeline:
    return Pipeline(
        metadata=ObjectMeta(name="deploy", namespace="team"),
        spec=PipelineSpec(
            repository_url="https://git.example/d.git",
            triggers=Triggers.model_validate({"imagePush": image_push} if image_push else {}),
        ),
    )


def push(repository: str, tag: str = "v1") -> ImagePush:
    return ImagePush(repository=repository, tag=tag, digest="sha256:0", event_id="e")


@pytest.mark.parametrize(
    ("wanted", "pushed", "matches"),
    [
        ("team/app", "team/app", True),
        ("registry.example:5000/team/app", "team/app", True),  # the registry sends paths without its host
        ("localhost/team/app", "team/app", True),
        ("team/app", "app", False),  # not a suffix match
        ("team/app", "other/team/app", False),
        ("team/*", "team/web", True),
        ("team/app", "team/application", False),
    ],
)
def test_the_repository_is_matched_without_the_registry_host(wanted: str, pushed: str, matches: bool) -> None:
    assert image_matches(pipeline({"repository": wanted}), push(pushed)) is matches


def test_tag_globs_include_and_exclude() -> None:
    p = pipeline({"repository": "team/app", "tag": {"include": ["v*"], "exclude": ["*-rc*"]}})
    assert image_matches(p, push("team/app", "v1.2"))
    assert not image_matches(p, push("team/app", "v2.0-rc1"))
    assert not image_matches(p, push("team/app", "latest"))


def test_a_pipeline_without_image_push_matches_nothing() -> None:
    assert not image_matches(pipeline(None), push("team/app"))
