"""Behaviour on the types: constraints, durations, stage selection, conditions, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from crds.execution import PipelineExecution, PipelineExecutionSpec, PipelineExecutionStatus
from crds.meta import ObjectMeta
from crds.parse import parse_pipeline_object
from crds.pipeline_file import Constraint, Duration, EventConstraint, PipelineConfig, Step
from crds.reasons import ConditionStatus, ConditionType, ExecutionPhase, StageState
from crds.setting import PipelineSettingSpec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "value", "expected"),
    [
        ("main", "main", True),
        ("main", "dev", False),
        (["main", "release/*"], "release/1.0", True),
        (["main", "release/*"], "feature/x", False),
        ({"include": [], "exclude": ["tmp/*"]}, "anything", True),
        ({"exclude": ["tmp/*"]}, "tmp/x", False),
        ({"include": ["*"], "exclude": ["main"]}, "main", False),  # exclude wins
        ({"include": ["release/*"], "exclude": ["release/old*"]}, "release/old-1", False),
        ({}, "x", True),
        ("Main", "main", False),  # case-sensitive
        ("main", None, True),  # no value (the branch of a tag): the constraint does not apply
    ],
)
def test_constraint_matching(raw: object, value: str | None, expected: bool) -> None:
    assert Constraint.model_validate(raw).matches(value) is expected


def test_constraint_canonical_form() -> None:
    assert Constraint.model_validate("main").to_dict() == {"include": ["main"], "exclude": []}
    assert Constraint.model_validate(["a", "b"]).to_dict() == {"include": ["a", "b"], "exclude": []}
    with pytest.raises(ValidationError):
        Constraint.model_validate(3)
    with pytest.raises(ValidationError):
        Constraint.model_validate({"include": ["a"], "other": 1})
    with pytest.raises(ValidationError):
        Constraint.model_validate("")


def test_event_constraint_knows_the_events() -> None:
    assert EventConstraint.model_validate(["push", "pull_*"]).matches("pull_request")
    with pytest.raises(ValidationError, match="matches no event"):
        EventConstraint.model_validate("pull-request")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("2h0m5s", 7205), (" 5m ", 300)],
)
def test_durations(text: str, seconds: int) -> None:
    assert Duration.parse(text).seconds == seconds


@pytest.mark.parametrize("junk", ["", "10", "1d", "m", "10 m", "1m1h", "-5m", "0s", "0h0m", "1.5h", "h1"])
def test_duration_junk_is_rejected(junk: str) -> None:
    with pytest.raises(ValueError):
        Duration.parse(junk)


@pytest.mark.parametrize("junk", [10, 1.5, True, None, [], {}])
def test_duration_non_strings_are_rejected(junk: object) -> None:
    with pytest.raises(ValueError):
        Duration.parse(junk)


def test_duration_canonical_from_seconds() -> None:
    assert Duration.from_seconds(5400) == "1h30m"
    assert Duration.from_seconds(61) == "1m1s"
    assert Duration.from_seconds(0) == "0s"
    assert Duration.parse(Duration.from_seconds(3725)).seconds == 3725


def _config(**top: object) -> PipelineConfig:
    return parse_pipeline_object(
        {
            "stages": [
                {"name": "always", "steps": [{"runScriptConfig": {"image": "a", "shellScript": "b"}}]},
                {
                    "name": "release only",
                    "when": {"branch": "release/*", "event": ["push", "tag"]},
                    "steps": [{"publishImageConfig": {"tag": "x"}}],
                },
            ],
            **top,
        }
    )


def test_stage_applies_combines_pipeline_and_stage_constraints() -> None:
    config = _config(branch={"exclude": ["tmp/*"]})
    assert config.stage_applies(0, "main", "push")
    assert not config.stage_applies(1, "main", "push")
    assert config.stage_applies(1, "release/2", "push")
    assert not config.stage_applies(1, "release/2", "pull_request")
    assert not config.stage_applies(0, "tmp/x", "push")  # pipeline-level exclude
    assert config.stage_applies(config.stages[1], None, "tag")  # tags have no branch
    assert config.timeout == "60m" and config.timeout_seconds == 3600


def test_step_helpers() -> None:
    config = _config()
    step = config.stages[1].steps[0]
    assert step.type == "publishImage"
    assert step.display_name() == "Publish image (x)"
    assert step.config.dockerfile_path == "./Dockerfile"  # type: ignore[union-attr]
    assert [(i, j) for i, j, _, _ in config.iter_steps()] == [(0, 0), (1, 0)]
    with pytest.raises(ValidationError, match="exactly one of path and content"):
        Step.model_validate({"applyYamlConfig": {"path": "a", "content": "b"}})


def test_env_values_and_quantities_accept_yaml_scalars() -> None:
    step = Step.model_validate(
        {
            "runScriptConfig": {"image": "a", "shellScript": "b"},
            "env": {"A": 0, "B": True, "C": 1.5},
            "resources": {"cpuLimit": 1, "memoryLimit": "1Gi", "cpuRequest": 0.5},
        }
    )
    assert step.env == {"A": "0", "B": "true", "C": "1.5"}
    assert step.resources is not None and (step.resources.cpu_limit, step.resources.cpu_request) == (
        "1",
        "0.5",
    )
    with pytest.raises(ValidationError, match="quantity"):
        Step.model_validate(
            {"runScriptConfig": {"image": "a", "shellScript": "b"}, "resources": {"cpuLimit": "1 core"}}
        )


def test_conditions_move_transition_time_only_on_status_change() -> None:
    status = PipelineExecutionStatus()
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    assert status.set_condition(ConditionType.BUILT, ConditionStatus.UNKNOWN, "BuildStarted", "go", t0)
    assert not status.set_condition(ConditionType.BUILT, ConditionStatus.UNKNOWN, "BuildStarted", "go", t0)
    status.set_condition(
        ConditionType.BUILT, "Unknown", "BuildStarted", "still going", t0 + timedelta(seconds=5)
    )
    built = status.condition(ConditionType.BUILT)
    assert built is not None and built.last_transition_time == t0 and built.message == "still going"
    status.set_condition(
        ConditionType.BUILT, ConditionStatus.TRUE, "BuildSucceeded", "ok", t0 + timedelta(seconds=9)
    )
    assert status.is_condition_true(ConditionType.BUILT)
    assert status.condition(ConditionType.BUILT).last_transition_time == t0 + timedelta(seconds=9)  # type: ignore[union-attr]
    assert len(status.conditions) == 1


def test_execution_helpers() -> None:
    execution = PipelineExecution(
        metadata=ObjectMeta(name="hello-3", namespace="team", uid="abc"),
        spec=PipelineExecutionSpec(pipeline_name="hello", run=3),
    )
    assert execution.workflow_id() == "pe-team-hello-3-abc"
    assert PipelineExecution.default_name("hello", 3) == "hello-3"
    assert not execution.is_finished
    status = PipelineExecutionStatus(phase=ExecutionPhase.BUILDING, started=datetime(2024, 5, 1, tzinfo=UTC))
    status.finish(ExecutionPhase.SUCCESS, datetime(2024, 5, 1, 0, 1, 32, tzinfo=UTC))
    assert status.duration == "1m32s" and status.is_finished
    assert StageState.SKIPPED.is_terminal and not StageState.BUILDING.is_terminal


def test_setting_helpers() -> None:
    spec = PipelineSettingSpec()
    assert spec.effective_quota() == 2 and spec.jenkins_mode() == "Managed"
    assert spec.poll_interval_seconds() == 2.0 and spec.role_binding_cluster_role() == "admin"
    assert spec.pipeline_namespace("team") == "team-pipeline"
    spec = PipelineSettingSpec.model_validate(
        {
            "executorQuota": 0,
            "jenkins": {"mode": "External", "url": "http://j"},
            "roleBindingClusterRole": "edit",
        }
    )
    assert spec.effective_quota() == 0 and spec.jenkins_mode() == "External"
    assert spec.role_binding_cluster_role() == "edit"
    assert spec.to_dict()["roleBindingClusterRole"] == "edit"
    with pytest.raises(ValidationError):
        PipelineSettingSpec.model_validate({"executorQuota": -1})
