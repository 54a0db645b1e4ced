"""Image-push notifications through the real receiver: the distribution registry's envelope, Harbor's and
Docker Hub's payloads (tests/contract/payloads/registry, sources in the README), each authenticated by the
project's token, start the Pipelines whose ``triggers.imagePush`` matches, with CICD_IMAGE_* variables."""

from __future__ import annotations

import copy
import json
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from webhook_client import NOT_RUN, post

from activities.kube import Kube, encode_secret_data
from crds.execution import PipelineExecution
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec, Triggers
from crds.setting import PipelineSetting, PipelineSettingSpec

pytestmark = pytest.mark.integration

PAYLOADS = Path(__file__).resolve().parent / "payloads" / "registry"
MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


def load(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_bytes())


def tagged_distribution_push(tag: str = "v1.2.3") -> dict[str, Any]:
    """The documented envelope, its manifest push given the tag a `docker push repo:tag` carries."""
    doc = copy.deepcopy(load("distribution-push.json"))
    doc["events"][0]["target"]["tag"] = tag
    doc["events"][0]["id"] = str(uuid.uuid4())
    return doc


@pytest.fixture
def project(kube: Kube, namespace: str) -> Callable[..., tuple[str, str]]:
    """``make(image_push, token=True) -> (namespace, token)``: a project with a Pipeline ``deploy``."""

    def make(image_push: dict[str, Any] | None, *, token: bool = True) -> tuple[str, str]:
        value = secrets.token_hex(16)
        spec = PipelineSettingSpec()
        if token:
            kube.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "registry-hook", "namespace": namespace},
                    "data": encode_secret_data({"token": value}),
                }
            )
            spec = PipelineSettingSpec.model_validate(
                {"webhook": {"imageTokenSecretRef": {"name": "registry-hook"}}}
            )
        kube.create(PipelineSetting(metadata=ObjectMeta(name="default", namespace=namespace), spec=spec))
        kube.create(
            Pipeline(
                metadata=ObjectMeta(name="deploy", namespace=namespace, annotations=NOT_RUN),
                spec=PipelineSpec(
                    repository_url="https://git.example/deploy.git",
                    triggers=Triggers.model_validate({"imagePush": image_push} if image_push else {}),
                ),
            )
        )
        return namespace, value

    return make


def send(receiver: Any, path: str, doc: dict[str, Any], token: str | None, **headers: str) -> tuple[int, Any]:
    auth = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return post(
        receiver.port, path, json.dumps(doc).encode(), {"Content-Type": MEDIA_TYPE, **auth, **headers}
    )


def runs(kube: Kube, ns: str) -> list[PipelineExecution]:
    return kube.list_resources(PipelineExecution, ns)


def test_a_tagged_manifest_push_runs_the_matching_pipeline_with_the_image_in_its_variables(
    webhook_receiver, kube, project
) -> None:
    ns, token = project({"repository": "library/test", "tag": "v*"})
    status, answer = send(webhook_receiver, f"/hooks/registry/{ns}", tagged_distribution_push(), token)
    assert status == 201, answer
    [run] = runs(kube, ns)
    assert answer["runs"][0]["run"] == run.name
    assert (run.spec.event, run.spec.triggered_by) == ("image", "image")
    assert run.spec.variables == {
        "CICD_IMAGE_REPO": "library/test",
        "CICD_IMAGE_TAG": "v1.2.3",
        "CICD_IMAGE_DIGEST": "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf",
    }


def test_the_documented_envelope_of_an_untagged_manifest_and_blobs_starts_nothing(
    webhook_receiver, kube, project
) -> None:
    ns, token = project({"repository": "library/test"})
    status, answer = send(webhook_receiver, f"/hooks/registry/{ns}", load("distribution-push.json"), token)
    assert (status, answer["outcome"]) == (200, "skipped")
    assert "3 other events" in answer["reason"]
    assert runs(kube, ns) == []


def test_a_redelivered_registry_event_creates_no_second_run(webhook_receiver, kube, project) -> None:
    ns, token = project({"repository": "library/test"})
    doc = tagged_distribution_push()
    first = send(webhook_receiver, f"/hooks/registry/{ns}", doc, token)
    again = send(webhook_receiver, f"/hooks/registry/{ns}", doc, token)
    assert (first[1]["outcome"], again[1]["outcome"]) == ("created", "duplicate")
    assert again[1]["runs"][0]["run"] == first[1]["runs"][0]["run"]
    assert len(runs(kube, ns)) == 1


def test_a_tag_outside_the_pipelines_globs_starts_nothing(webhook_receiver, kube, project) -> None:
    ns, token = project({"repository": "library/test", "tag": {"include": ["v*"], "exclude": ["*-rc*"]}})
    status, answer = send(
        webhook_receiver, f"/hooks/registry/{ns}", tagged_distribution_push("v2.0.0-rc1"), token
    )
    assert (status, answer["outcome"]) == (200, "skipped")
    assert runs(kube, ns) == []


def test_a_harbor_push_artifact_runs_the_matching_pipeline(webhook_receiver, kube, project) -> None:
    ns, token = project({"repository": "library/rumput"})
    # Harbor sends its configured auth header verbatim (no "Bearer").
    status, answer = post(
        webhook_receiver.port,
        f"/hooks/registry/{ns}",
        (PAYLOADS / "harbor-push-artifact.json").read_bytes(),
        {"Authorization": token},
    )
    assert status == 201, answer
    [run] = runs(kube, ns)
    assert run.spec.variables["CICD_IMAGE_TAG"] == "v1"
    assert run.spec.variables["CICD_IMAGE_DIGEST"].startswith("sha256:76525f02")


def test_a_docker_hub_push_authenticated_by_the_url_token_runs_the_matching_pipeline(
    webhook_receiver, kube, project
) -> None:
    ns, token = project({"repository": "svendowideit/testhook", "tag": "latest"})
    status, answer = post(
        webhook_receiver.port,
        f"/hooks/registry/{ns}?token={token}",
        (PAYLOADS / "dockerhub-push.json").read_bytes(),
        {},
    )
    assert status == 201, answer
    [run] = runs(kube, ns)
    assert run.spec.variables == {
        "CICD_IMAGE_REPO": "svendowideit/testhook",
        "CICD_IMAGE_TAG": "latest",
        "CICD_IMAGE_DIGEST": "",
    }


@pytest.mark.parametrize("presented", ["wrong-token", None])
def test_a_wrong_or_missing_token_is_401_and_starts_nothing(
    webhook_receiver, kube, project, presented
) -> None:
    ns, _ = project({"repository": "library/test"})
    status, answer = send(webhook_receiver, f"/hooks/registry/{ns}", tagged_distribution_push(), presented)
    assert (status, answer["outcome"]) == (401, "unauthorized")
    assert runs(kube, ns) == []


def test_a_project_without_an_image_token_accepts_no_notification(webhook_receiver, kube, project) -> None:
    ns, _ = project({"repository": "library/test"}, token=False)
    status, _ = send(webhook_receiver, f"/hooks/registry/{ns}", tagged_distribution_push(), "")
    assert status == 401
    assert runs(kube, ns) == []


def test_the_namespace_less_url_reaches_the_project_whose_token_was_presented(
    webhook_receiver, kube, project
) -> None:
    ns, token = project({"repository": "library/test"})
    status, answer = send(webhook_receiver, "/hooks/registry", tagged_distribution_push(), token)
    assert status == 201, answer
    assert [r["namespace"] for r in answer["runs"]] == [ns]


def test_a_signed_but_unknown_notification_shape_is_400(webhook_receiver, project) -> None:
    ns, token = project({"repository": "library/test"})
    status, answer = send(webhook_receiver, f"/hooks/registry/{ns}", {"hello": "world"}, token)
    assert (status, answer["outcome"]) == (400, "malformed")
