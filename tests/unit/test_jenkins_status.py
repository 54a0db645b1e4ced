"""The status table, job names, error classification, job config and log decoding of the Jenkins engine."""

from __future__ import annotations

import itertools
import re

import jenkins
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from activities.errors import JenkinsPermanentError, JenkinsTransientError
from activities.jenkins.client import MAX_JOB_NAME, classify, job_name
from activities.jenkins.jobconfig import (
    EXECUTION_ID_PARAM,
    config_matches,
    parse_job_config,
    pipeline_job_config,
)
from activities.jenkins.logs import ProgressiveAnswer, complete_utf8_prefix, read_nodes, read_until_idle
from activities.jenkins.status import STATUS_TABLE, StepState, map_result, map_status

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("SUCCESS", StepState.SUCCESS),
        ("FAILED", StepState.FAILED),
        ("FAILURE", StepState.FAILED),
        ("ABORTED", StepState.ABORTED),
        ("IN_PROGRESS", StepState.BUILDING),
        ("PAUSED_PENDING_INPUT", StepState.WAITING),
        ("NOT_EXECUTED", StepState.SKIPPED),
        ("NOT_BUILT", StepState.SKIPPED),
        ("UNSTABLE", StepState.FAILED),
        (None, StepState.WAITING),
        ("SOMETHING_NEW", StepState.WAITING),
    ],
)
def test_status_table(status: str | None, state: StepState) -> None:
    assert map_status(status) is state


def test_every_jenkins_status_is_in_the_table() -> None:
    wfapi = {
        "NOT_EXECUTED",
        "ABORTED",
        "SUCCESS",
        "IN_PROGRESS",
        "PAUSED_PENDING_INPUT",
        "FAILED",
        "UNSTABLE",
    }
    results = {"SUCCESS", "FAILURE", "ABORTED", "UNSTABLE", "NOT_BUILT"}
    assert wfapi | results <= set(STATUS_TABLE)


def test_build_result_while_building() -> None:
    assert map_result(None, building=True) is StepState.BUILDING
    assert map_result(None, building=False) is StepState.WAITING
    assert map_result("FAILURE", building=False) is StepState.FAILED


def test_job_name_plain() -> None:
    assert job_name("team-a", "web", 7) == "team-a-web-7"


@given(st.text(), st.text(), st.integers(min_value=0, max_value=10**9))
def test_job_name_is_safe_and_bounded(ns: str, pipeline: str, run: int) -> None:
    name = job_name(ns, pipeline, run)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", name)
    assert len(name) <= MAX_JOB_NAME
    assert name not in (".", "..")


def test_job_name_long_and_unsafe_names_stay_distinct() -> None:
    long_a = job_name("ns", "p" * 200 + "a", 1)
    long_b = job_name("ns", "p" * 200 + "b", 1)
    assert long_a != long_b and len(long_a) <= MAX_JOB_NAME
    assert job_name("ns", "a/b", 1) != job_name("ns", "a:b", 1)


def _http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status}", response=response)


def _wrapped(status: int) -> Exception:
    """What python-jenkins raises for 401/403/500: a JenkinsException with the HTTPError as context."""
    try:
        try:
            raise _http_error(status)
        except requests.HTTPError as e:
            raise jenkins.JenkinsException(
                f"Error in request. Possibly authentication failed [{status}]: x"
            ) from e
    except jenkins.JenkinsException as exc:
        wrapped: Exception = exc
        return wrapped


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_http_error(502), JenkinsTransientError),
        (_http_error(503), JenkinsTransientError),
        (_wrapped(500), JenkinsTransientError),
        (_wrapped(401), JenkinsPermanentError),
        (_wrapped(403), JenkinsPermanentError),
        (jenkins.NotFoundException("Requested item could not be found"), JenkinsPermanentError),
        (jenkins.TimeoutException("timed out"), JenkinsTransientError),
        (requests.ConnectionError("refused"), JenkinsTransientError),
        (requests.exceptions.ChunkedEncodingError("cut"), JenkinsTransientError),
        (_http_error(400), JenkinsPermanentError),
    ],
)
def test_classify(exc: Exception, kind: type) -> None:
    assert isinstance(classify(exc, "op"), kind)


def test_invalid_config_is_permanent_on_config_writes_only() -> None:
    assert isinstance(classify(_http_error(400), "create", config_write=True), JenkinsPermanentError)
    assert classify(_http_error(400), "create", config_write=True).reason == "JenkinsInvalidConfig"
    bad = jenkins.JenkinsException(
        "Error in request [500]: com.thoughtworks.xstream.io.StreamException: ParseError"
    )
    assert isinstance(classify(bad, "create", config_write=True), JenkinsPermanentError)
    assert isinstance(classify(bad, "read"), JenkinsTransientError)


def test_job_config_round_trip() -> None:
    script = "// cubepaas-plan: {}\nnode { sh('echo <&> \"x\"') }\n"
    xml = pipeline_job_config(script, "desc & more")
    parsed, params = parse_job_config(xml)
    assert parsed == script
    assert EXECUTION_ID_PARAM in params
    assert config_matches(xml, script.replace("\n", "\r\n") + "   \n")
    assert not config_matches(xml, script + "echo 1\n")
    assert not config_matches(xml.replace(EXECUTION_ID_PARAM, "OTHER"), script)


@given(st.text())
def test_utf8_prefix_never_splits_a_character(text: str) -> None:
    data = text.encode()
    for cut in range(len(data) + 1):
        keep = complete_utf8_prefix(data[:cut], final=False)
        data[:keep].decode("utf-8")  # must not raise
        assert cut - keep <= 3


@given(st.text(min_size=1), st.lists(st.integers(min_value=1, max_value=7), min_size=1))
def test_progressive_reading_reassembles_the_log(text: str, sizes: list[int]) -> None:
    """A log written in pieces of arbitrary byte sizes (possibly splitting characters) and read while it
    grows concatenates to the exact log."""
    data = text.encode()
    growth = itertools.cycle(sizes)
    written = 0

    def fetch(start: int) -> ProgressiveAnswer:
        nonlocal written
        written = min(len(data), written + next(growth))
        return ProgressiveAnswer(data[start:written], written, written < len(data))

    parts, offset, more = [], 0, True
    while more:
        chunk = read_until_idle(fetch, offset)
        parts.append(chunk.text)
        offset, more = chunk.next_offset, chunk.more
    assert "".join(parts) == text


def test_step_log_reads_nodes_in_order_and_resumes() -> None:
    logs = {"5": b"first\n", "7": b"second\n"}
    growing = {"5": True}

    def fetch_node(node: str):  # type: ignore[no-untyped-def]
        def fetch(start: int) -> ProgressiveAnswer:
            data = logs[node]
            return ProgressiveAnswer(data[start:], len(data), growing.get(node, False))

        return fetch

    chunk = read_nodes(["5", "7"], {"5": False, "7": True}, fetch_node, None)
    assert chunk.text == "first\n" and chunk.more
    logs["5"] += b"more\n"
    growing["5"] = False
    resumed = read_nodes(
        ["5", "7"],
        {"5": True, "7": True},
        fetch_node,
        chunk.cursor.model_validate_json(chunk.cursor.model_dump_json()),
    )
    assert resumed.text == "more\nsecond\n" and not resumed.more
