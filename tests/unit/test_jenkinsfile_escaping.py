"""Groovy string escaping and the plan comment of the Jenkinsfile generator (pure Python, no JVM).

The Groovy side of the same claims (a real Groovy 2.4 reads the literals back exactly) is in
test_jenkinsfile_groovy.py.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activities.jenkins.jenkinsfile import (
    PLAN_PREFIX,
    JenkinsfileInput,
    build_plan,
    cicd_variables,
    groovy_string,
    parse_plan,
    render_jenkinsfile,
    substitute,
)
from crds.pipeline_file import PipelineConfig

pytestmark = pytest.mark.unit

_ESC = {"\\": "\\", "'": "'", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


def decode_literal(src: str) -> str:
    """Decode what groovy_string produces: ``'...'`` or ``('...' + '...')`` (our format only)."""
    if src.startswith("("):
        assert src.endswith(")")
        parts = re.findall(r"'(?:[^'\\]|\\.)*'", src[1:-1])
        assert " + ".join(parts) == src[1:-1], "only literals joined by ' + '"
        return "".join(decode_literal(p) for p in parts)
    assert src[0] == "'" and src[-1] == "'"
    body = src[1:-1]
    units: list[int] = []
    i = 0
    while i < len(body):
        ch = body[i]
        assert ch != "'", "unescaped quote inside the literal"
        if ch != "\\":
            units.append(ord(ch))
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "u":
            units.append(int(body[i + 2 : i + 6], 16))
            i += 6
        else:
            units.append(ord(_ESC[nxt]))
            i += 2
    return (
        "".join(chr(u) for u in units).encode("utf-16", "surrogatepass").decode("utf-16")
        if any(0xD800 <= u <= 0xDFFF for u in units)
        else "".join(chr(u) for u in units)
    )


@given(st.text())
def test_literal_round_trips(value: str) -> None:
    literal = groovy_string(value)
    assert decode_literal(literal) == value


@given(st.text())
def test_literal_is_printable_ascii_on_one_line(value: str) -> None:
    literal = groovy_string(value)
    assert all(0x20 <= ord(c) < 0x7F for c in literal)
    # Groovy 2.4 translates \uXXXX before lexing: never emit one that becomes a quote, backslash or EOL.
    for code in re.findall(r"(?<!\\)(?:\\\\)*\\u([0-9a-fA-F]{4})", literal):
        assert int(code, 16) not in (0x27, 0x5C, 0x0A, 0x0D)


def test_long_literals_are_split_below_the_class_file_limit() -> None:
    value = "é" * 25_000 + "😀" * 12_000
    literal = groovy_string(value)
    assert literal.startswith("(") and decode_literal(literal) == value
    for part in re.findall(r"'(?:[^'\\]|\\.)*'", literal[1:-1]):
        decoded = decode_literal(part)
        # modified UTF-8: at most 3 bytes per UTF-16 unit
        assert len(decoded.encode("utf-16-le", "surrogatepass")) // 2 * 3 <= 65535


def test_dollar_is_not_special() -> None:
    assert groovy_string("${env.X} $Y") == "'${env.X} $Y'"
    assert groovy_string("'''\"\"\"") == "'\\'\\'\\'\"\"\"'"


def _input(**overrides: object) -> JenkinsfileInput:
    config = PipelineConfig.model_validate(
        {
            "stages": [
                {
                    "name": "Build",
                    "steps": [
                        {
                            "runScriptConfig": {
                                "image": "golang:${CICD_GIT_COMMIT}",
                                "shellScript": "echo $HOME",
                            },
                            "env": {"A": "${CICD_EVENT}/${NOT_CICD}/$CICD_EVENT/${CICD_UNKNOWN}"},
                        }
                    ],
                }
            ]
        }
    )
    fields: dict[str, object] = {
        "config": config,
        "namespace": "ns",
        "pipeline": "web",
        "run": 4,
        "execution_id": "ns/web-4/uid",
        "git_url": "https://git.example/org/web.git",
        "commit": "0123abc",
        "branch": "main",
        "event": "push",
    }
    fields.update(overrides)
    return JenkinsfileInput.model_validate(fields)


def test_substitution_touches_only_known_cicd_variables() -> None:
    variables = cicd_variables(_input())
    assert substitute("${CICD_EVENT}/${NOT_CICD}/$CICD_EVENT/${CICD_UNKNOWN}", variables) == (
        "push/${NOT_CICD}/$CICD_EVENT/${CICD_UNKNOWN}"
    )
    plan = build_plan(_input())
    step = plan["stages"][1]["steps"][0]
    assert step["image"] == "golang:0123abc"
    assert step["env"] == {"A": "push/${NOT_CICD}/$CICD_EVENT/${CICD_UNKNOWN}"}
    assert step["script"].endswith("echo $HOME\n")  # scripts see the variables at run time instead
    assert plan["env"]["CICD_EXECUTION_SEQUENCE"] == "4"
    assert plan["env"]["CICD_GIT_REPO_NAME"] == "web"


@given(st.text(min_size=1, max_size=60).filter(lambda s: s.strip()))
def test_plan_comment_is_one_line_and_exact(name: str) -> None:
    """Whatever the input, line 1 is the plan exactly as docs/jenkins-plan.md writes it."""
    inp = _input(branch=name, execution_id=name)
    script = render_jenkinsfile(inp)
    first, rest = script.split("\n", 1)
    plan = build_plan(inp)
    assert first == PLAN_PREFIX + json.dumps(plan, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    assert parse_plan(script) == plan
    # Groovy translates \uXXXX even inside comments: a \u000a would end the comment early.
    assert "\\u000a" not in first.lower() and "\\u000d" not in first.lower()
    assert all(0x20 <= ord(c) < 0x7F for c in first)
    assert all(0x20 <= ord(c) < 0x7F or c == "\n" for c in rest)
