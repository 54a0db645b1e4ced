"""How build snapshots become the execution's status (pure functions, no server)."""

from __future__ import annotations

import pytest

from crds.execution import PipelineExecutionStatus
from crds.messages import BuildSnapshot, StepSnapshot
from crds.parse import parse_pipeline_file
from crds.pipeline_file import PipelineConfig
from crds.reasons import StageState
from workflows import progress

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
    progress.apply_snapshot(status, snap, config)
    assert status.stages[1].state == StageState.BUILDING
    snap.steps[1] = StepSnapshot(stage=1, step=1, state="Success", started_ms=1000, ended_ms=3000)
    progress.apply_snapshot(status, snap, config)
    assert status.stages[1].state == StageState.FAILED
    assert status.stages[1].ended is not None and status.stages[1].ended.timestamp() == 3.0


def test_closing_marks_never_started_steps_skipped_and_running_ones_aborted() -> None:
    status, config = status_for()
    snap = BuildSnapshot(steps=[StepSnapshot(stage=1, step=0, state="Building", started_ms=1)])
    progress.apply_snapshot(status, snap, config)
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
    progress.apply_snapshot(status, snap, config)
    md = progress.markdown(status)
    assert "| Success | 0.4s |" in md
    assert "| Success | 1m32s |" in md
