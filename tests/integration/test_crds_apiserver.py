"""The generated CRDs against the real kube-apiserver: installed, validating, subresources, Table."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from crds.execution import (
    JenkinsBuildRef,
    PipelineExecution,
    PipelineExecutionStatus,
    StageStatus,
    StepStatus,
    WorkflowRef,
)
from crds.generate import all_crds
from crds.install import install_crds
from crds.kinds import ALL_KINDS, kind_by_name
from crds.meta import GROUP, VERSION, CustomResource
from crds.reasons import ConditionStatus, ConditionType, ExecutionPhase, StageState

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STRICT = "Strict"  # what kubectl sends: unknown fields are errors, not silently pruned


@pytest.fixture(scope="module")
def custom(kube_api_client: k8s.ApiClient, crds_installed: None) -> Any:
    return k8s.CustomObjectsApi(kube_api_client)


@pytest.fixture
def namespace(kube_api_client: k8s.ApiClient, crds_installed: None) -> Iterator[str]:
    core: Any = k8s.CoreV1Api(kube_api_client)
    name = f"crds-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    custom = k8s.CustomObjectsApi(kube_api_client)
    for kind in ALL_KINDS:
        custom.delete_collection_namespaced_custom_object(GROUP, VERSION, name, kind.plural())
    core.delete_namespace(name)


def _create(custom: Any, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    plural = kind_by_name(body["kind"]).plural()
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body, field_validation=STRICT
    )
    return created


def _rejected(custom: Any, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as info:
        _create(custom, namespace, body)
    assert info.value.status in (400, 422), info.value.body
    return _message(info.value)


def _message(error: ApiException) -> str:
    """The apiserver's Status message."""
    return str(json.loads(error.body or "{}").get("message", ""))


# A worker running in the same session (the end-to-end tests') would pick up every PipelineExecution
# and write its status. Routed to a task queue no worker serves, these objects are left to this module.
NO_WORKER = {"devops.cubepaas.io/task-queue": "crd-tests-no-worker"}


def _execution(name: str = "app-1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PipelineExecution",
        "metadata": {"name": name, "annotations": dict(NO_WORKER)},
        "spec": {"pipelineName": "app", "run": 1, "branch": "main", **spec},
    }


def _config(step: dict[str, Any], name: str = "Build") -> dict[str, Any]:
    return {"stages": [{"name": name, "steps": [step]}]}


def _examples() -> list[dict[str, Any]]:
    docs = [doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]
    for doc in docs:
        if doc["kind"] == "PipelineExecution":
            doc.setdefault("metadata", {}).setdefault("annotations", {}).update(NO_WORKER)
    return docs


def test_every_crd_is_established(kube_api_client: k8s.ApiClient, crds_installed: None) -> None:
    api: Any = k8s.ApiextensionsV1Api(kube_api_client)
    for crd in all_crds():
        live = api.read_custom_resource_definition(crd["metadata"]["name"])
        conditions = {c.type: c.status for c in live.status.conditions}
        assert conditions.get("Established") == "True", conditions
        assert conditions.get("NonStructuralSchema") is None, conditions
        assert live.spec.names.categories == ["cubepaas"]
    install_crds(kube_api_client)  # idempotent: a second install replaces in place


@pytest.mark.parametrize("doc", _examples(), ids=lambda d: d["kind"])
def test_examples_are_accepted_and_round_trip_losslessly(
    custom: Any, namespace: str, doc: dict[str, Any]
) -> None:
    model_cls = kind_by_name(doc["kind"])
    model = model_cls.model_validate(doc)
    sent = model.to_dict()
    created = _create(custom, namespace, yaml.safe_load(yaml.safe_dump(sent)))
    back = model_cls.model_validate(created)
    _assert_same(model, back)
    read = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, model_cls.plural(), model.name)
    _assert_same(model, model_cls.model_validate(read))


def _assert_same(sent: CustomResource, back: CustomResource) -> None:
    assert back.metadata.name == sent.metadata.name
    assert back.metadata.labels == sent.metadata.labels
    assert back.metadata.annotations == sent.metadata.annotations
    assert back.metadata.uid and back.metadata.creation_timestamp
    assert getattr(back, "spec", None) == getattr(sent, "spec", None)
    assert getattr(back, "status", None) == getattr(sent, "status", None)


def test_missing_pipeline_name_is_rejected(custom: Any, namespace: str) -> None:
    body = _execution()
    del body["spec"]["pipelineName"]
    assert "spec.pipelineName: Required value" in _rejected(custom, namespace, body)


def test_unknown_step_field_is_rejected(custom: Any, namespace: str) -> None:
    step = {"runScriptConfig": {"image": "alpine", "shellScript": "true"}, "shellScirpt": "typo"}
    message = _rejected(custom, namespace, _execution(pipelineConfig=_config(step)))
    assert "unknown field" in message
    assert "spec.pipelineConfig.stages[0].steps[0].shellScirpt" in message


def test_step_needs_exactly_one_type(custom: Any, namespace: str) -> None:
    two = {"runScriptConfig": {"image": "a", "shellScript": "b"}, "publishImageConfig": {"tag": "t"}}
    message = _rejected(custom, namespace, _execution(pipelineConfig=_config(two)))
    assert "spec.pipelineConfig.stages[0].steps[0]" in message and "exactly one of runScriptConfig" in message
    message = _rejected(custom, namespace, _execution(pipelineConfig=_config({"env": {"A": "b"}})))
    assert "exactly one of runScriptConfig" in message


def test_stage_rules_are_enforced_by_the_server(custom: Any, namespace: str) -> None:
    step = {"runScriptConfig": {"image": "a", "shellScript": "b"}}
    message = _rejected(custom, namespace, _execution(pipelineConfig=_config(step, name="step-1-2")))
    assert "spec.pipelineConfig.stages[0].name" in message and "reserved" in message
    message = _rejected(custom, namespace, _execution(pipelineConfig=_config(step, name="two\nlines")))
    assert "spec.pipelineConfig.stages[0].name" in message
    duplicate = {"stages": [{"name": "A", "steps": [step]}, {"name": "A", "steps": [step]}]}
    message = _rejected(custom, namespace, _execution(pipelineConfig=duplicate))
    assert "spec.pipelineConfig.stages[1]" in message and "Duplicate value" in message
    message = _rejected(custom, namespace, _execution(pipelineConfig={**_config(step), "timeout": "soon"}))
    assert "spec.pipelineConfig.timeout" in message
    message = _rejected(custom, namespace, _execution(event="pull-request"))
    assert "spec.event" in message and "Unsupported value" in message


def test_a_control_character_in_a_script_is_rejected_by_the_server_with_its_field_path(
    custom: Any, namespace: str
) -> None:
    nul = {"runScriptConfig": {"image": "alpine", "shellScript": "echo a\x00b"}}
    message = _rejected(custom, namespace, _execution(pipelineConfig=_config(nul)))
    assert "spec.pipelineConfig.stages[0].steps[0].runScriptConfig.shellScript" in message
    escape = {"runScriptConfig": {"image": "alp\x1bine", "shellScript": "true"}}
    message = _rejected(custom, namespace, _execution(pipelineConfig=_config(escape)))
    assert "spec.pipelineConfig.stages[0].steps[0].runScriptConfig.image" in message
    fine = {"runScriptConfig": {"image": "alpine", "shellScript": "a\tb\r\nc"}}
    _create(custom, namespace, _execution(pipelineConfig=_config(fine)))


def test_wrong_phase_is_rejected(custom: Any, namespace: str) -> None:
    _create(custom, namespace, _execution())
    with pytest.raises(ApiException) as info:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "pipelineexecutions", "app-1", {"status": {"phase": "Running"}}
        )
    assert info.value.status == 422
    message = _message(info.value)
    assert "status.phase" in message and "Unsupported value" in message


def test_cancelled_cannot_be_set_back_to_false(custom: Any, namespace: str) -> None:
    _create(custom, namespace, _execution())
    patch = custom.patch_namespaced_custom_object
    patch(GROUP, VERSION, namespace, "pipelineexecutions", "app-1", {"spec": {"cancelled": True}})
    with pytest.raises(ApiException) as info:
        patch(GROUP, VERSION, namespace, "pipelineexecutions", "app-1", {"spec": {"cancelled": False}})
    assert info.value.status == 422
    message = _message(info.value)
    assert "spec.cancelled" in message and "cancelled cannot be set back to false" in message
    with pytest.raises(ApiException) as info:
        patch(GROUP, VERSION, namespace, "pipelineexecutions", "app-1", {"spec": {"pipelineName": "other"}})
    assert "pipelineName is immutable" in _message(info.value)


def _full_status() -> PipelineExecutionStatus:
    t0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    t1 = datetime(2024, 5, 1, 12, 1, 32, 250000, tzinfo=UTC)
    status = PipelineExecutionStatus(
        phase=ExecutionPhase.BUILDING,
        started=t0,
        stages=[
            StageStatus(
                name="Clone",
                state=StageState.SUCCESS,
                started=t0,
                ended=t1,
                steps=[StepStatus(name="clone", state=StageState.SUCCESS, log_object="ns/app-1/0-0.log")],
            ),
            StageStatus(name="Deploy", state=StageState.WAITING, steps=[StepStatus(name="Apply YAML (x)")]),
        ],
        workflow=WorkflowRef(id="pe-ns-app-1-uid", run_id="r1", namespace="default", ui_url="http://ui/x"),
        jenkins=JenkinsBuildRef(job="ns-app-1", build=7),
        message="Waiting for approval of stage 'Deploy'",
        observed_generation=1,
        pending_gate=1,
    )
    status.set_condition(ConditionType.INITIALIZED, ConditionStatus.TRUE, "ConfigLoaded", "2 stages", t0)
    status.set_condition(ConditionType.SUCCEEDED, ConditionStatus.UNKNOWN, "ConfigLoaded", "Running", t0)
    return status


def test_status_subresource_separates_spec_and_status(custom: Any, namespace: str) -> None:
    created = _create(custom, namespace, _execution())
    status = _full_status()
    # A status write carrying a changed spec: the spec part is ignored.
    body = {**created, "spec": {**created["spec"], "branch": "evil"}, "status": status.to_dict()}
    written = custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "pipelineexecutions", "app-1", body
    )
    assert written["spec"]["branch"] == "main"
    assert written["metadata"]["generation"] == created["metadata"]["generation"]
    model = PipelineExecution.model_validate(written)
    assert model.status == status  # lossless, including microseconds and nulls left out

    # A spec write carrying a changed status: the status part is ignored.
    body = {**written, "spec": {**written["spec"], "paused": True}, "status": {"phase": "Failed"}}
    updated = custom.replace_namespaced_custom_object(
        GROUP, VERSION, namespace, "pipelineexecutions", "app-1", body
    )
    assert updated["spec"]["paused"] is True
    assert PipelineExecution.model_validate(updated).status == status
    assert updated["metadata"]["generation"] == created["metadata"]["generation"] + 1


def test_table_answer_shows_printer_columns(custom: Any, namespace: str) -> None:
    created = _create(custom, namespace, _execution(branch="release/1"))
    status = _full_status()
    status.finish(ExecutionPhase.SUCCESS, datetime(2024, 5, 1, 12, 1, 32, tzinfo=UTC))
    custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "pipelineexecutions", "app-1", {**created, "status": status.to_dict()}
    )
    response = custom.list_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "pipelineexecutions",
        _headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        _preload_content=False,
    )
    table = json.loads(response.read())
    assert table["kind"] == "Table"
    columns = [(c["name"], c.get("priority", 0)) for c in table["columnDefinitions"]]
    assert columns[:7] == [
        ("Name", 0),
        ("Pipeline", 0),
        ("Run", 0),
        ("Phase", 0),
        ("Branch", 0),
        ("Age", 0),
        ("Duration", 1),
    ]
    (row,) = table["rows"]
    assert row["cells"][:5] == ["app-1", "app", 1, "Success", "release/1"]
    assert row["cells"][6] == "1m32s"
