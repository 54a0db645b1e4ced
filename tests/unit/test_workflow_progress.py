"""How build snapshots become the execution's status (pure functions, no server)."""

from __future__ import annotations

import pytest

from crds import build_status
from crds.execution import PipelineExecutionStatus
from crds.messages import BuildSnapshot, StepSnapshot
from crds.parse import parse_pipeline_file
from crds.pipeline_file import PipelineConfig
from crds.reasons import ExecutionPhase, Reason, StageState
from workflows import endings, progress

pytestmark = pytest.mark.unit

FILE = """
stages:
- name: Test
  steps:
  - runScriptConfig: {image: alpine, shellScript: "true"}
  - runScriptConfig: {image: alpine, shellScript: "true"}
- name: Release
  when: {branch: {include: ["release/*"]}}
  steps:
  - runScriptConfig: {image: alpine, shellScript: "true"}
- name: Deploy
  approval: true
  steps:
  - runScriptConfig: {image: alpine, shellScript: "true"}
"""


def status_for(branch: str = "main") -> tuple[PipelineExecutionStatus, PipelineConfig]:
    config = parse_pipeline_file(FILE)
    status = PipelineExecutionStatus()
    progress.init_stages(status, config, branch, "push")
    return status, config


def test_stages_start_waiting_with_the_clone_stage_first_and_unmatched_stages_skipped() -> None:
    status, _ = status_for()
    assert [s.name for s in status.stages] == ["Clone", "Test", "Release", "Deploy"]
    assert [s.state for s in status.stages] == [
        StageState.WAITING,
        StageState.WAITING,
        StageState.SKIPPED,
        StageState.WAITING,
    ]
    assert [st.state for st in status.stages[2].steps] == [StageState.SKIPPED]


def test_a_stage_is_building_while_one_step_runs_and_failed_once_all_ended_with_a_failure() -> None:
    status, config = status_for()
    snap = BuildSnapshot(
        steps=[
            StepSnapshot(stage=1, step=0, state="Failed", started_ms=1000, ended_ms=2000),
            StepSnapshot(stage=1, step=1, state="Building", started_ms=1000),
        ]
    )
    build_status.apply_snapshot(status, snap, config)
    assert status.stages[1].state == StageState.BUILDING
    snap.steps[1] = StepSnapshot(stage=1, step=1, state="Success", started_ms=1000, ended_ms=3000)
    build_status.apply_snapshot(status, snap, config)
    assert status.stages[1].state == StageState.FAILED
    assert status.stages[1].ended is not None and status.stages[1].ended.timestamp() == 3.0


def test_the_outcome_names_the_failed_step_and_stage() -> None:
    status, config = status_for()
    snap = BuildSnapshot(
        building=False,
        result="FAILURE",
        steps=[StepSnapshot(stage=1, step=1, state="Failed", started_ms=1, ended_ms=2)],
    )
    build_status.apply_snapshot(status, snap, config)
    ending = endings.for_build(status, snap, rejected=False, stop_requested=False)
    phase, message = ending.phase, ending.message
    assert phase == ExecutionPhase.FAILED
    assert "Test" in message and status.stages[1].steps[1].name in message


def test_a_build_reported_success_with_a_failed_step_is_a_failed_run_not_a_success() -> None:
    status, config = status_for()
    snap = BuildSnapshot(
        building=False,
        result="SUCCESS",
        steps=[
            StepSnapshot(stage=1, step=0, state="Success", started_ms=1, ended_ms=2),
            StepSnapshot(stage=1, step=1, state="Failed", started_ms=1, ended_ms=2),
        ],
    )
    build_status.apply_snapshot(status, snap, config)
    ending = endings.for_build(status, snap, rejected=False, stop_requested=False)
    phase, reason, message = ending.phase, ending.reason, ending.message
    assert (phase, reason) == (ExecutionPhase.FAILED, Reason.STEP_FAILED)
    assert "Test" in message


def test_closing_marks_never_started_steps_skipped_and_running_ones_aborted() -> None:
    status, config = status_for()
    snap = BuildSnapshot(steps=[StepSnapshot(stage=1, step=0, state="Building", started_ms=1)])
    build_status.apply_snapshot(status, snap, config)
    progress.close_steps(status, aborted=True)
    assert status.stages[1].steps[0].state == StageState.ABORTED
    assert status.stages[1].steps[1].state == StageState.SKIPPED
    assert status.stages[3].state == StageState.SKIPPED


def test_only_matching_approval_stages_need_approval() -> None:
    status, config = status_for()
    assert progress.needs_approval(config, status, 3)
    assert not progress.needs_approval(config, status, 1)
    assert not progress.needs_approval(config, status, 0)


def test_the_markdown_table_escapes_pipes_in_names() -> None:
    status, _ = status_for()
    status.stages[1].name = "a|b"
    md = progress.markdown(status)
    assert "| 1 | a\\|b |" in md
    assert md.count("\n|") >= 1 + 4 + 5


def test_durations_in_the_table_keep_tenths_under_a_minute_and_minutes_above() -> None:
    status, config = status_for()
    snap = BuildSnapshot(
        steps=[
            StepSnapshot(stage=1, step=0, state="Success", started_ms=1_000, ended_ms=1_400),
            StepSnapshot(stage=1, step=1, state="Success", started_ms=1_000, ended_ms=93_000),
        ]
    )
    build_status.apply_snapshot(status, snap, config)
    md = progress.markdown(status)
    assert "| Success | 0.4s |" in md
    assert "| Success | 1m32s |" in md


def test_the_markdown_table_escapes_control_characters_in_names_and_the_message() -> None:
    status, _ = status_for()
    status.stages[1].steps[0].name = "Run script (alp\x1bine)"
    status.message = "Pipeline 'a\x00b' not found"
    text = progress.markdown(status)
    assert "alp\\x1bine" in text and "a\\x00b" in text
    assert "\x1b" not in text and "\x00" not in text
