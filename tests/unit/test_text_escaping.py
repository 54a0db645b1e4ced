"""Control characters from user input are escaped wherever a message leaves the product (defect 7)."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime

import pytest

from activities.errors import GitError, to_application_error
from crds.execution import PipelineExecutionStatus, StepStatus
from crds.text import escape_controls, first_control_character
from worker.logfmt import FORMAT, EscapingFormatter

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_control_characters_are_written_as_escapes_and_printable_text_is_unchanged() -> None:
    assert escape_controls("a\x00b\x1b[2Jc\x7f\x85") == "a\\x00b\\x1b[2Jc\\x7f\\x85"
    assert escape_controls("line\nnext\ttab\rcr") == "line\\nnext\\ttab\\rcr"
    assert escape_controls("ünïcödé — 日本 ✓") == "ünïcödé — 日本 ✓"


def test_escaping_twice_changes_nothing_more() -> None:
    once = escape_controls("x\x00y\nz")
    assert escape_controls(once) == once


def test_keep_newlines_keeps_tab_newline_and_carriage_return_only() -> None:
    assert escape_controls("a\n\tb\r\x00", keep_newlines=True) == "a\n\tb\r\\x00"


def test_the_first_control_character_is_found_with_its_index() -> None:
    assert first_control_character("ok\tok\nok") is None
    assert first_control_character("ab\x00") == (2, "\x00")
    assert first_control_character("a\tb", allow_whitespace=False) == (1, "\t")


def test_the_status_sent_to_the_apiserver_carries_escaped_messages_however_they_were_assigned() -> None:
    status = PipelineExecutionStatus()
    status.message = "Pipeline 'a\x00b' not found"
    status.stages = []
    status.set_condition("Succeeded", "False", "ConfigInvalid", "bad\x1b[31m name", NOW)
    step = StepStatus(name="s", message="exit\x07")
    data = status.to_dict()
    assert data["message"] == "Pipeline 'a\\x00b' not found"
    assert data["conditions"][0]["message"] == "bad\\x1b[31m name"
    assert step.to_dict()["message"] == "exit\\x07"
    # JSON mode too (the workflow's data converter and the status patch use it).
    assert "\x00" not in status.model_dump_json()


def test_an_escaped_condition_message_never_exceeds_the_crd_limit() -> None:
    status = PipelineExecutionStatus()
    status.set_condition("Succeeded", "False", "X", "\x00" * 32768, NOW)
    assert len(status.to_dict()["conditions"][0]["message"]) == 32768


def test_activity_errors_reach_the_workflow_with_escaped_messages() -> None:
    err = to_application_error(GitError("cannot read file:///r\x00epo: fatal\x1b"))
    assert err.message == "cannot read file:///r\\x00epo: fatal\\x1b"


def test_the_worker_log_line_escapes_the_message_and_keeps_the_traceback_readable() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(EscapingFormatter(FORMAT))
    log = logging.getLogger("test-escaping")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("pipeline %s not found", "a\x00b\nFAKE line")
        try:
            raise ValueError("bad\x00value")
        except ValueError:
            log.exception("failed for %s", "x\x1by")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    lines = text.splitlines()
    assert "pipeline a\\x00b\\nFAKE line not found" in lines[0]
    assert "\x00" not in text and "\x1b" not in text
    assert "failed for x\\x1by" in text
    assert "Traceback (most recent call last):" in lines  # the traceback keeps its own lines
    assert "ValueError: bad\\x00value" in text
