"""The pipeline-file parser: accepts the documented example, reports every problem with its place."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from crds.parse import FileProblem, PipelineFileError, parse_pipeline_file, parse_pipeline_object
from crds.pipeline_file import EXACTLY_ONE_STEP_TYPE, PipelineConfig, StepType

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline-file.yml"


def problems(text: str) -> list[FileProblem]:
    with pytest.raises(PipelineFileError) as info:
        parse_pipeline_file(text)
    return info.value.errors


def test_issue_example_is_accepted() -> None:
    config = parse_pipeline_file(EXAMPLE.read_text())
    assert [stage.name for stage in config.stages] == ["Build", "Approve and deploy"]
    build, deploy = config.stages
    assert [step.type for step in build.steps] == [StepType.RUN_SCRIPT, StepType.PUBLISH_IMAGE]
    run = build.steps[0]
    assert run.env == {"CGO_ENABLED": "0"}
    assert run.env_from[0].variable == "API_TOKEN"
    assert run.timeout is not None and run.timeout.seconds == 600
    assert run.resources is not None and run.resources.memory_limit == "1Gi"
    assert deploy.approval is True
    assert [step.type for step in deploy.steps] == [
        StepType.APPLY_YAML,
        StepType.APPLY_APP,
        StepType.PUBLISH_CATALOG,
    ]
    assert deploy.steps[1].apply_app_config is not None
    assert deploy.steps[1].apply_app_config.values == {"replicas": 2}
    assert config.timeout_seconds == 3600
    assert config.branch is not None and config.branch.exclude == ["tmp/*"]
    assert config.notification is not None and config.notification.recipients[0].notifier == "slack-webhook"


def test_step_without_type_message_and_position() -> None:
    text = """\
stages:
- name: Build
  steps:
  - runScriptConfig:
      image: golang:1.22
      shellScript: go test ./...
- name: Deploy
  approval: true
  # the next step has no step type
  steps:
  -
    env: {A: b}
"""
    assert [str(p) for p in problems(text)] == [
        f"stages[1].steps[0] (line 12, column 5): {EXACTLY_ONE_STEP_TYPE}",
    ]
    assert EXACTLY_ONE_STEP_TYPE == (
        "exactly one of runScriptConfig, publishImageConfig, applyYamlConfig, applyAppConfig,"
        " publishCatalogConfig is required"
    )


def test_all_errors_at_once_with_lines_and_columns() -> None:
    text = """\
stages:
- name: Build
  steps:
  - runScriptConfig: {image: golang, shellScript: go test}
    timeout: 10
  - runScriptConfig: {image: golang, shellScript: go test}
    envv: {A: b}
- name: step-1-0
  steps:
  - {}
  - runScriptConfig: {image: golang}
    env: {bad-name: x, OK: 1}
timeout: soon
event: pull-request
branch: 3
"""
    found = [(p.path, p.line, p.column) for p in problems(text)]
    assert found == [
        ("stages[0].steps[0].timeout", 5, 14),
        ("stages[0].steps[1].envv", 7, 5),
        ("stages[1].name", 8, 9),
        ("stages[1].steps[0]", 10, 5),
        ("stages[1].steps[1].runScriptConfig.shellScript", 11, 22),
        ("stages[1].steps[1].env.bad-name", 12, 21),
        ("timeout", 13, 10),
        ("event", 14, 8),
        ("branch", 15, 9),
    ]
    by_path = {p.path: p.message for p in problems(text)}
    assert by_path["stages[0].steps[0].timeout"] == (
        "must be a duration like 90s, 10m, 1h or 1h30m (add a unit, e.g. 10m)"
    )
    assert by_path["stages[0].steps[1].envv"] == "unknown field 'envv' (did you mean 'env'?)"
    assert "reserved" in by_path["stages[1].name"]
    assert by_path["stages[1].steps[1].runScriptConfig.shellScript"] == "'shellScript' is required"
    assert by_path["timeout"] == "must be a duration like 90s, 10m, 1h or 1h30m, got 'soon'"
    assert by_path["event"].startswith("'pull-request' matches no event")
    assert by_path["branch"].startswith("must be a string, a list of strings, or a mapping")


def test_str_is_one_line_per_problem() -> None:
    with pytest.raises(PipelineFileError) as info:
        parse_pipeline_file("stages:\n- name: a\n  steps: []\ntimeout: x\n")
    lines = str(info.value).splitlines()
    assert lines == [
        "stages[0].steps (line 3, column 10): must not be empty",
        "timeout (line 4, column 10): must be a duration like 90s, 10m, 1h or 1h30m, got 'x'",
    ]


def test_two_step_types_named() -> None:
    text = (
        "stages:\n- name: a\n  steps:\n"
        "  - runScriptConfig: {image: x, shellScript: y}\n    publishImageConfig: {tag: t}\n"
    )
    (problem,) = problems(text)
    assert problem.message.endswith("got runScriptConfig and publishImageConfig")
    assert (problem.line, problem.column) == (4, 5)


def test_duplicate_stage_names_and_duplicate_keys() -> None:
    text = """\
stages:
- name: A
  steps: [{runScriptConfig: {image: x, shellScript: y}}]
- name: A
  steps: [{runScriptConfig: {image: x, shellScript: y}}]
timeout: 10m
timeout: 20m
"""
    found = {(p.path, p.line): p.message for p in problems(text)}
    assert found[("timeout", 7)] == "duplicate key 'timeout'"
    assert found[("stages[1].name", 4)] == "duplicate stage name 'A' (stages[0] and stages[1])"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ('"a\\nb"', "control characters"),
        ('"tab\\there"', "control characters"),
        ('"  "', "must not be empty"),
        ('""', "must not be empty"),
        ("step-0-12", "reserved"),
        ("x" * 101, "at most 100 characters"),
    ],
)
def test_bad_stage_names(name: str, fragment: str) -> None:
    text = f"stages:\n- name: {name}\n  steps: [{{runScriptConfig: {{image: x, shellScript: y}}}}]\n"
    (problem,) = problems(text)
    assert problem.path == "stages[0].name"
    assert fragment in problem.message


def test_hostile_but_legal_stage_names_are_kept_verbatim() -> None:
    name = """it's "$HOME" `rm -rf` \\ ${x} ünïcode step-1"""
    config = parse_pipeline_object(
        {"stages": [{"name": name, "steps": [{"runScriptConfig": {"image": "x", "shellScript": "y"}}]}]}
    )
    assert config.stages[0].name == name


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "empty"),
        ("# only a comment\n", 1, "empty"),
        ("- a\n- b\n", 1, "must be a mapping"),
        ("just a string", 1, "must be a mapping"),
        ("stages: [\n", 2, "invalid YAML"),
        ("stages:\n\t- x\n", 2, "invalid YAML"),
        ("a: 1\n---\nb: 2\n", 2, "single document"),
        ("\x00\x01binary", 1, "unacceptable character"),
        ("stages: !!python/object:os.system x\n", 1, "invalid YAML"),
        ("stages: !!int abc\n", 1, "cannot read a value"),
        ("x: &a [*a]\n", 1, "nested too deeply"),
        ("[" * 3000, 1, "nested too deeply"),
    ],
)
def test_malformed_documents(text: str, line: int, fragment: str) -> None:
    found = problems(text)
    assert any(fragment in p.message and p.line == line for p in found), found


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    (problem,) = problems("\n".join(lines))
    assert "too large" in problem.message


def test_huge_and_non_utf8_input() -> None:
    assert "too large" in problems("#" * 2_000_000)[0].message
    with pytest.raises(PipelineFileError) as info:
        parse_pipeline_file(b"stages: \xff\xfe")
    assert "UTF-8" in info.value.errors[0].message


def test_yaml_12_booleans_and_no_timestamps() -> None:
    config = parse_pipeline_file(
        "stages:\n- name: on\n  steps:\n  - publishCatalogConfig: {path: p, catalogTemplate: t,"
        " version: 2024-01-01, gitUrl: u, gitBranch: no}\n"
    )
    step = config.stages[0].steps[0].publish_catalog_config
    assert config.stages[0].name == "on"
    assert step is not None and (step.version, step.git_branch) == ("2024-01-01", "no")


def test_object_input_has_paths_but_no_positions() -> None:
    with pytest.raises(PipelineFileError) as info:
        parse_pipeline_object({"stages": [{"name": "a", "steps": [{"foo": 1}]}]})
    (problem,) = info.value.errors
    assert (problem.path, problem.line, problem.column) == ("stages[0].steps[0].foo", 0, 0)
    assert str(problem) == "stages[0].steps[0].foo: unknown field 'foo'"
    with pytest.raises(PipelineFileError):
        parse_pipeline_object(["not", "a", "mapping"])


def test_error_pickles_for_activity_boundaries() -> None:
    with pytest.raises(PipelineFileError) as info:
        parse_pipeline_file("stages: []")
    clone = pickle.loads(pickle.dumps(info.value))
    assert clone.errors == info.value.errors
    assert str(clone) == str(info.value)


def test_canonical_round_trip_of_the_example() -> None:
    config = parse_pipeline_file(EXAMPLE.read_text())
    data = config.to_dict()
    assert data["stages"][0]["when"]["event"] == {"include": ["push", "tag"], "exclude": []}
    assert PipelineConfig.model_validate(data) == config
    assert parse_pipeline_object(data) == config


def test_a_nul_in_a_script_is_refused_with_its_place_and_tab_newline_cr_are_kept() -> None:
    text = (
        'stages:\n- name: Build\n  steps:\n  - runScriptConfig: {image: alpine, shellScript: "echo a\\0b"}\n'
    )
    (problem,) = problems(text)
    assert problem.path == "stages[0].steps[0].runScriptConfig.shellScript"
    assert "control characters other than tab, newline and carriage return" in problem.message
    assert "U+0000" in problem.message
    ok = parse_pipeline_file(
        "stages:\n- name: Build\n  steps:\n"
        '  - runScriptConfig: {image: alpine, shellScript: "a\\tb\\r\\nc"}\n'
    )
    step = ok.stages[0].steps[0].run_script_config
    assert step is not None and step.shell_script == "a\tb\r\nc"


@pytest.mark.parametrize(
    ("step", "path"),
    [
        ({"runScriptConfig": {"image": "alp\x1bine", "shellScript": "true"}}, "runScriptConfig.image"),
        ({"applyYamlConfig": {"content": "a: \x00"}}, "applyYamlConfig.content"),
        ({"publishImageConfig": {"tag": "app:\x07"}}, "publishImageConfig.tag"),
        ({"runScriptConfig": {"image": "a", "shellScript": "b"}, "env": {"A": "x\x00"}}, "env.A"),
    ],
)
def test_control_characters_in_other_free_text_step_fields_are_refused(
    step: dict[str, object], path: str
) -> None:
    with pytest.raises(PipelineFileError) as info:
        parse_pipeline_object({"stages": [{"name": "S", "steps": [step]}]})
    (problem,) = info.value.errors
    assert problem.path == f"stages[0].steps[0].{path}"
    assert "control characters" in problem.message
