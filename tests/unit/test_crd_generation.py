"""The generated CRDs and JSON Schema: in sync with the models, structural, and complete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crds.generate import GENERATED_DIR, SCHEMA_FILE, all_crds, crd_for, main, render_all, stale_files
from crds.kinds import ALL_KINDS, kind_by_name
from crds.meta import CATEGORY, GROUP, CustomResource
from crds.parse import parse_pipeline_file

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_committed_files_are_in_sync_with_the_models() -> None:
    expected = render_all()
    for name, content in expected.items():
        path = GENERATED_DIR / name
        assert path.is_file(), f"{path} is missing: run `make generate-crd`"
        assert path.read_text(encoding="utf-8") == content, f"{path} is stale: run `make generate-crd`"
    assert stale_files() == []
    assert main(["--check"]) == 0


def test_check_names_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, content in render_all().items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    (tmp_path / "pipelines.yaml").write_text("# edited by hand\n", encoding="utf-8")
    (tmp_path / "leftover.yaml").write_text("{}\n", encoding="utf-8")
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "pipelines.yaml" in err and "leftover.yaml" in err and "pipelineexecutions.yaml" not in err
    assert main(["--dir", str(tmp_path)]) == 0
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    assert not (tmp_path / "leftover.yaml").exists()


def _walk(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    assert isinstance(node, dict), path
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}.*")


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind_name())
def test_schema_is_structural(kind: type[CustomResource]) -> None:
    schema = crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = json.dumps(schema)
    assert "$ref" not in text and "anyOf" not in text and "oneOf" not in text and "allOf" not in text
    assert '"title"' not in text and '"type": "null"' not in text
    for path, node in _walk(schema, kind.kind_name()):
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"} or node.get(
            "x-kubernetes-int-or-string"
        ), f"{path} has no type"
        if node.get("additionalProperties") is not None:
            assert "properties" not in node, f"{path}: properties and additionalProperties"
            assert node["additionalProperties"] is not False, path
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert node["type"] == "object" and "properties" not in node, path
        for required in node.get("required", []):
            assert required in node["properties"], f"{path}: required {required} is not a property"
        if "default" in node:
            assert node["default"] is not None and not isinstance(node["default"], dict), path


def test_crd_facts() -> None:
    crds = {crd["spec"]["names"]["kind"]: crd for crd in all_crds()}
    assert set(crds) == {
        "PipelineSetting",
        "Pipeline",
        "PipelineExecution",
        "SourceCodeProviderConfig",
        "SourceCodeCredential",
        "SourceCodeRepository",
    }
    short = {kind: crd["spec"]["names"]["shortNames"] for kind, crd in crds.items()}
    assert short == {
        "PipelineSetting": ["ps"],
        "Pipeline": ["pl"],
        "PipelineExecution": ["pe"],
        "SourceCodeProviderConfig": ["scp"],
        "SourceCodeCredential": ["scc"],
        "SourceCodeRepository": ["scr"],
    }
    for kind, crd in crds.items():
        assert crd["spec"]["group"] == GROUP and crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["categories"] == [CATEGORY]
        version = crd["spec"]["versions"][0]
        has_status = "status" in version["schema"]["openAPIV3Schema"]["properties"]
        assert ("subresources" in version) is has_status, kind
        assert version["schema"]["openAPIV3Schema"]["description"], kind

    pe = crds["PipelineExecution"]["spec"]["versions"][0]
    columns = [(c["name"], c["jsonPath"], c.get("priority", 0)) for c in pe["additionalPrinterColumns"]]
    assert columns[:6] == [
        ("Pipeline", ".spec.pipelineName", 0),
        ("Run", ".spec.run", 0),
        ("Phase", ".status.phase", 0),
        ("Branch", ".spec.branch", 0),
        ("Age", ".metadata.creationTimestamp", 0),
        ("Duration", ".status.duration", 1),
    ]
    root = pe["schema"]["openAPIV3Schema"]
    spec = root["properties"]["spec"]
    assert root["required"] == ["spec"]
    assert spec["required"] == ["pipelineName", "run"]
    assert spec["properties"]["cancelled"]["x-kubernetes-validations"] == [
        {"rule": "self || !oldSelf", "message": "cancelled cannot be set back to false"}
    ]
    assert spec["properties"]["cancelled"]["default"] is False
    status = root["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == [
        "Waiting",
        "Queueing",
        "Provisioning",
        "Building",
        "Paused",
        "Success",
        "Failed",
        "Aborted",
        "Denied",
    ]
    assert status["stages"]["items"]["properties"]["state"]["enum"] == [
        "Waiting",
        "Building",
        "Success",
        "Failed",
        "Skipped",
        "Aborted",
        "Denied",
    ]
    assert status["pendingGate"]["nullable"] is True
    step = spec["properties"]["pipelineConfig"]["properties"]["stages"]["items"]["properties"]["steps"][
        "items"
    ]
    assert "has(self.runScriptConfig)" in step["x-kubernetes-validations"][0]["rule"]
    assert step["properties"]["applyAppConfig"]["properties"]["values"] == {
        "description": "Values passed to the chart (free-form).",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    # The pipeline's inline config embeds the same schema.
    pipeline_spec = crds["Pipeline"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert (
        pipeline_spec["properties"]["config"]["properties"]["stages"]
        == spec["properties"]["pipelineConfig"]["properties"]["stages"]
    )


def test_editor_schema_accepts_the_shorthands() -> None:
    schema = json.loads((GENERATED_DIR / SCHEMA_FILE).read_text())
    assert schema["$schema"].endswith("2020-12/schema")
    assert "x-kubernetes" not in json.dumps(schema)
    constraint = schema["$defs"]["Constraint"]
    assert [v.get("type") for v in constraint["anyOf"]] == ["string", "array", "object"]
    assert schema["$defs"]["Step"]["additionalProperties"] is False
    assert len(schema["$defs"]["Step"]["oneOf"]) == 5


def _example_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found.append((f"{path.name}:{doc['kind']}", doc))
    return found


@pytest.mark.parametrize(("where", "doc"), _example_documents(), ids=[w for w, _ in _example_documents()])
def test_examples_round_trip_through_the_models(where: str, doc: dict[str, Any]) -> None:
    model = kind_by_name(doc["kind"]).model_validate(doc)
    data = model.to_dict()
    again = type(model).model_validate(yaml.safe_load(yaml.safe_dump(data)))
    assert again == model, where
    assert again.to_dict() == data


def test_every_kind_has_an_example() -> None:
    kinds = {doc["kind"] for _, doc in _example_documents()}
    assert kinds == {kind.kind_name() for kind in ALL_KINDS}
    parse_pipeline_file((EXAMPLES / "pipeline-file.yml").read_text())
