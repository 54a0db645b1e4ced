"""Property tests: whatever the input, the parser answers a config or its own error, never anything else,
and every problem carries a path and (for file input) a line."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crds.parse import PipelineFileError, parse_pipeline_file, parse_pipeline_object
from crds.pipeline_file import PipelineConfig

pytestmark = pytest.mark.unit

EXAMPLE_TEXT = (Path(__file__).resolve().parents[2] / "examples" / "pipeline-file.yml").read_text()
EXAMPLE_DATA: dict[str, Any] = yaml.safe_load(EXAMPLE_TEXT)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

YAML_TOKENS = [
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "!!str ",
    "!foo ",
    "? ",
    "|",
    ">",
    "'",
    '"',
    "#",
    "\t",
    "\n",
    "  ",
    "---\n",
    "...\n",
    "null",
    "~",
    "true",
    "yes",
    "0x1F",
    "1e9",
    "<<: *a",
    "%YAML 1.2\n",
    "runScriptConfig: {}",
    "stages:",
    "name: step-1-1",
    "timeout: 5",
    "\x00",
    "\ufeff",
    "\u2028",
]


def check_file(text: str) -> None:
    try:
        config = parse_pipeline_file(text)
    except PipelineFileError as err:
        assert err.errors
        for problem in err.errors:
            assert problem.path, problem
            assert problem.line >= 1 and problem.column >= 1, problem
            assert problem.message, problem
        assert len(str(err).splitlines()) >= len(err.errors)
    else:
        assert isinstance(config, PipelineConfig)
        # Anything accepted re-validates from its canonical form.
        assert parse_pipeline_object(config.to_dict()) == config


def check_object(data: Any) -> None:
    try:
        config = parse_pipeline_object(data)
    except PipelineFileError as err:
        assert err.errors
        assert all(problem.path and problem.message for problem in err.errors)
    else:
        assert isinstance(config, PipelineConfig)


@SETTINGS
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    check_file(text)


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    try:
        parse_pipeline_file(data)
    except PipelineFileError as err:
        assert all(p.path and p.line >= 1 for p in err.errors)


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    text = EXAMPLE_TEXT
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace_line", "swap_lines", "indent"]))
        if action == "insert":
            token = draw(st.sampled_from(YAML_TOKENS) | st.text(max_size=5))
            text = text[:position] + token + text[position:]
        elif action == "delete":
            length = draw(st.integers(1, 30))
            text = text[:position] + text[position + length :]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if action == "replace_line":
                lines[i] = draw(st.sampled_from(YAML_TOKENS) | st.text(max_size=20))
            elif action == "swap_lines":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines[i] = " " * draw(st.integers(0, 6)) + lines[i].lstrip()
            text = "\n".join(lines)
    return text


@SETTINGS
@given(mutated_text())
def test_mutated_example_text(text: str) -> None:
    check_file(text)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def _containers(node: Any, out: list[Any]) -> list[Any]:
    if isinstance(node, dict | list):
        out.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            _containers(child, out)
    return out


@st.composite
def mutated_data(draw: st.DrawFn) -> Any:
    data = copy.deepcopy(EXAMPLE_DATA)
    for _ in range(draw(st.integers(1, 3))):
        containers = _containers(data, [])
        target = draw(st.sampled_from(containers))
        action = draw(st.sampled_from(["delete", "replace", "add"]))
        if isinstance(target, dict):
            keys = list(target)
            if action == "add" or not keys:
                target[draw(st.sampled_from([*keys, "extra", "runScriptConfig", "name", "when"]))] = draw(
                    JSONISH
                )
            elif action == "delete":
                del target[draw(st.sampled_from(keys))]
            else:
                target[draw(st.sampled_from(keys))] = draw(JSONISH)
        elif isinstance(target, list):
            if action == "add" or not target:
                target.append(draw(JSONISH))
            elif action == "delete":
                target.pop(draw(st.integers(0, len(target) - 1)))
            else:
                target[draw(st.integers(0, len(target) - 1))] = draw(JSONISH)
    return data


@SETTINGS
@given(mutated_data())
def test_mutated_example_structure(data: Any) -> None:
    check_object(data)
    check_file(yaml.safe_dump(data, allow_unicode=True))
