"""Typed gate ids and the console line quoted when Jenkins aborts a build on its own (pure)."""

from __future__ import annotations

import pytest

from activities.jenkins.logs import MAX_QUOTED_LINE, last_line
from crds.messages import BuildSnapshot, gate_input_id, gate_stage

pytestmark = pytest.mark.unit


def test_a_gate_input_id_names_its_stage_and_reads_back_as_the_stage_index() -> None:
    assert gate_input_id(3) == "Gate3" and gate_stage("Gate3") == 3
    assert gate_stage("Gate") is None and gate_stage("Approve1") is None and gate_stage("3") is None


def test_a_snapshot_holds_pending_gates_as_stage_indexes() -> None:
    assert BuildSnapshot(pending_gates=[2]).pending_gates == [2]
    assert BuildSnapshot.model_validate({"pending_gates": ["Gate1", "Other"]}).pending_gates == [1]


def test_the_quoted_line_is_the_one_before_jenkins_closing_finished_line() -> None:
    console = "Started\n+ make\njenkins-lite: the server restarted\n\nFinished: ABORTED\n"
    assert last_line(console) == "jenkins-lite: the server restarted"
    assert last_line("Finished: ABORTED\n") == "Finished: ABORTED"
    assert last_line("") == ""
    long = last_line("x" * 1000)
    assert len(long) == MAX_QUOTED_LINE and long.endswith("…")
