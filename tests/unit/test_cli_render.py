"""devopsctl rendering: tables, describe, the live progress view (no server)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from crds.execution import (
    JenkinsBuildRef,
    PipelineExecution,
    PipelineExecutionSpec,
    PipelineExecutionStatus,
    StageStatus,
    StepStatus,
    WorkflowRef,
)
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec, PipelineStatus
from crds.reasons import ExecutionPhase, StageState
from worker import cli_render as r

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def execution(
    phase: ExecutionPhase | None = ExecutionPhase.BUILDING,
    *,
    build_state: StageState = StageState.BUILDING,
    paused: bool = False,
    pending_gate: int | None = None,
) -> PipelineExecution:
    t0 = NOW - timedelta(seconds=95)
    stages = [
        StageStatus(
            name="Clone",
            state=StageState.SUCCESS,
            started=t0,
            ended=t0 + timedelta(seconds=2),
            steps=[
                StepStatus(
                    name="clone",
                    state=StageState.SUCCESS,
                    started=t0,
                    ended=t0 + timedelta(seconds=2),
                    log_object="ns/demo/3/0-0.log",
                )
            ],
        ),
        StageStatus(
            name="Build",
            state=build_state,
            started=t0 + timedelta(seconds=3),
            steps=[
                StepStatus(name="compile", state=build_state, started=t0 + timedelta(seconds=3)),
                StepStatus(name="lint", state=StageState.WAITING),
            ],
        ),
    ]
    status = PipelineExecutionStatus(
        phase=phase,
        started=t0,
        stages=stages,
        message="Running stage 'Build'",
        paused=paused,
        pending_gate=pending_gate,
        jenkins=JenkinsBuildRef(job="ns-demo-3", build=1),
        workflow=WorkflowRef(id="pe/ns/demo-3/u1", run_id="r1", ui_url="http://ui/x"),
    )
    return PipelineExecution(
        metadata=ObjectMeta(
            name="demo-3", namespace="ns", uid="u1", creation_timestamp=NOW - timedelta(minutes=5)
        ),
        spec=PipelineExecutionSpec(pipeline_name="demo", run=3, branch="main"),
        status=status,
    )


def test_human_durations_and_age() -> None:
    assert r.human_seconds(5) == "5s"
    assert r.human_seconds(185) == "3m05s"
    assert r.human_seconds(7500) == "2h05m"
    assert r.age(NOW - timedelta(minutes=5), NOW) == "5m"
    assert r.age(None, NOW) == "<unknown>"
    assert r.elapsed(NOW - timedelta(seconds=3), None, NOW) == "3s"
    assert r.elapsed(None, None, NOW) == ""


def test_executions_table() -> None:
    text = r.executions_table([execution()], wide=False, all_namespaces=False, now=NOW)
    header, row = text.splitlines()
    assert header.split() == ["NAME", "PIPELINE", "RUN", "PHASE", "BRANCH", "AGE"]
    assert row.split() == ["demo-3", "demo", "3", "Building", "main", "5m"]
    wide = r.executions_table([execution()], wide=True, all_namespaces=True, now=NOW)
    assert wide.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert "ns-demo-3#1" in wide and "1m35s" in wide


def test_phase_shows_pending_and_paused() -> None:
    assert r.phase_of(execution(None)) == "Pending"
    assert r.phase_of(execution(ExecutionPhase.PAUSED, paused=True)) == "Paused"
    assert r.phase_of(execution(ExecutionPhase.BUILDING, paused=True)) == "Building (paused)"


def test_pipelines_table() -> None:
    created = NOW - timedelta(hours=3)
    pl = Pipeline(
        metadata=ObjectMeta(name="demo", namespace="ns", creation_timestamp=created),
        spec=PipelineSpec(repository_url="file:///repo.git"),
        status=PipelineStatus(
            next_run=4, last_execution_name="demo-3", last_run_state=ExecutionPhase.SUCCESS
        ),
    )
    header, row = r.pipelines_table([pl], wide=False, all_namespaces=False, now=NOW).splitlines()
    assert header.split() == ["NAME", "REPOSITORY", "LAST", "RUN", "STATE", "AGE"]
    assert row.split() == ["demo", "file:///repo.git", "demo-3", "Success", "3h"]


def test_describe_execution() -> None:
    text = r.describe_execution(execution(pending_gate=1), now=NOW, ui_url="http://ui/x")
    assert "Pipeline:      demo" in text
    assert "Jenkins:       job ns-demo-3, build 1" in text
    assert "Workflow:      pe/ns/demo-3/u1 (run r1)" in text
    assert "Temporal UI:   http://ui/x" in text
    assert "Approval:      stage 1 (Build) is waiting" in text
    assert "ns/demo/3/0-0.log" in text
    assert "1.1" in text and "lint" in text


def test_progress_view_plain_appends_changes_only() -> None:
    out = io.StringIO()
    view = r.ProgressView(out, tty=False)
    view.update(execution(), NOW)
    first = out.getvalue()
    assert "phase Building: Running stage 'Build'" in first
    assert "step 1.0 'compile' of 'Build': Building" in first
    assert "lint" not in first  # Waiting at the start is not news
    view.update(execution(), NOW)
    assert out.getvalue() == first  # nothing changed, nothing printed
    view.update(execution(ExecutionPhase.SUCCESS, build_state=StageState.SUCCESS), NOW)
    added = out.getvalue()[len(first) :]
    assert "phase Success" in added and "step 1.0 'compile' of 'Build': Success" in added
    assert "\x1b" not in out.getvalue()


def test_progress_view_tty_redraws_in_place() -> None:
    out = io.StringIO()
    view = r.ProgressView(out, tty=True, color=True)
    view.update(execution(), NOW)
    lines = len(r.progress_lines(execution(), now=NOW, color=True))
    view.update(execution(ExecutionPhase.SUCCESS, build_state=StageState.SUCCESS), NOW)
    text = out.getvalue()
    assert f"\x1b[{lines}F\x1b[J" in text  # cursor up over the previous table, erase, redraw
    plain = r.strip_ansi(text)
    assert "Success" in plain and "compile" in plain


def test_transitions_report_gate() -> None:
    lines = r.transitions(execution(), execution(pending_gate=1))
    assert "stage 1 'Build' waits for approval" in lines
