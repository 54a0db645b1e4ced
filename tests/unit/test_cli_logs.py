"""devopsctl logs: one step's log exactly once, in order, across Jenkins and the object store (fakes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from activities.errors import JenkinsPermanentError, JenkinsTransientError
from activities.jenkins import BuildStatus, LogCursor, StepLogChunk
from activities.jenkins import StageStatus as JStage
from activities.jenkins import StepStatus as JStep
from crds.execution import (
    JenkinsBuildRef,
    PipelineExecution,
    PipelineExecutionSpec,
    PipelineExecutionStatus,
    StageStatus,
    StepStatus,
)
from crds.meta import ObjectMeta
from crds.reasons import ExecutionPhase, StageState
from worker import cli


def pe(
    state: StageState, *, log_object: str | None = None, phase: ExecutionPhase = ExecutionPhase.BUILDING
) -> PipelineExecution:
    return PipelineExecution(
        metadata=ObjectMeta(name="demo-1", namespace="ns"),
        spec=PipelineExecutionSpec(pipeline_name="demo", run=1),
        status=PipelineExecutionStatus(
            phase=phase,
            jenkins=JenkinsBuildRef(job="ns-demo-1", build=1),
            stages=[
                StageStatus(
                    name="Clone",
                    state=state,
                    steps=[StepStatus(name="clone", state=state, log_object=log_object)],
                )
            ],
        ),
    )


@dataclass
class FakeEngine:
    chunks: list[str | Exception]
    reads: int = 0

    def describe(self, job: str, number: int) -> BuildStatus:
        step = JStep(
            stage_index=0,
            step_index=0,
            name="step-0-0",
            node_id="7",
            status="IN_PROGRESS",
            state=StageState.BUILDING,
        )
        return BuildStatus(
            job=job,
            number=number,
            building=True,
            result=None,
            status="IN_PROGRESS",
            state=StageState.BUILDING,
            stages=[
                JStage(
                    index=0,
                    name="Clone",
                    node_id="5",
                    status="IN_PROGRESS",
                    state=StageState.BUILDING,
                    steps=[step],
                )
            ],
        )

    def read_step_log(self, job: str, number: int, node: str, cursor: LogCursor | None) -> StepLogChunk:
        assert node == "7"
        offset = cursor.offset(node) if cursor else 0
        item = self.chunks[min(self.reads, len(self.chunks) - 1)]
        self.reads += 1
        if isinstance(item, Exception):
            raise item
        more = self.reads < len(self.chunks)
        return StepLogChunk(item, LogCursor(offsets={node: offset + len(item.encode())}), more)


@dataclass
class FakeStore:
    objects: dict[str, bytes] = field(default_factory=dict)
    gets: int = 0

    def get(self, name: str) -> bytes | None:
        self.gets += 1
        return self.objects.get(name)


@dataclass
class FakeSources:
    engine_: FakeEngine
    store_: FakeStore
    ctx: Any = None

    def __post_init__(self) -> None:
        import io

        self.ctx = type("C", (), {"err": io.StringIO()})()

    def engine(self) -> FakeEngine:
        return self.engine_

    def store(self) -> FakeStore:
        return self.store_


def follower(engine: FakeEngine, store: FakeStore) -> tuple[cli.StepFollower, list[str]]:
    out: list[str] = []
    f = cli.StepFollower(FakeSources(engine, store), 0, 0, out.append)  # type: ignore[arg-type]
    return f, out


def test_live_then_complete_from_jenkins() -> None:
    f, out = follower(FakeEngine(["1\n", "", "2\n3\n"]), FakeStore())
    assert not f.poll(pe(StageState.BUILDING), follow=True)
    assert not f.poll(pe(StageState.BUILDING), follow=True)
    # The log object appears meanwhile: reading continues from Jenkins (no re-read of the object).
    assert f.poll(pe(StageState.SUCCESS, log_object="o"), follow=True)
    assert "".join(out) == "1\n2\n3\n"


def test_switches_to_store_at_the_same_byte_when_jenkins_is_gone() -> None:
    store = FakeStore({"o": "1\n2\n3\né\n".encode()})
    f, out = follower(FakeEngine(["1\n2\n", JenkinsPermanentError("gone", reason="JenkinsNotFound")]), store)
    assert not f.poll(pe(StageState.BUILDING), follow=True)
    assert not f.poll(pe(StageState.BUILDING), follow=True)  # Jenkins 404: wait for the stored object
    assert f.poll(pe(StageState.SUCCESS, log_object="o"), follow=True)
    assert "".join(out) == "1\n2\n3\né\n"


def test_finished_step_reads_only_the_store() -> None:
    engine = FakeEngine(["should not be read"])
    f, out = follower(engine, FakeStore({"o": b"a\nb\n"}))
    assert f.poll(pe(StageState.SUCCESS, log_object="o", phase=ExecutionPhase.SUCCESS), follow=False)
    assert out == ["a\nb\n"] and engine.reads == 0


def test_waiting_step_waits_when_following_and_ends_when_not() -> None:
    f, out = follower(FakeEngine(["x"]), FakeStore())
    assert not f.poll(pe(StageState.WAITING), follow=True)
    f2, _ = follower(FakeEngine(["x"]), FakeStore())
    assert f2.poll(pe(StageState.WAITING), follow=False)
    assert out == []


def test_skipped_step_has_no_log() -> None:
    f, out = follower(FakeEngine(["x"]), FakeStore())
    assert f.poll(pe(StageState.SKIPPED), follow=True) and out == []


def test_transient_jenkins_error_is_retried_when_following() -> None:
    f, out = follower(FakeEngine([JenkinsTransientError("503"), "1\n"]), FakeStore())
    assert not f.poll(pe(StageState.BUILDING), follow=True)
    assert f.poll(pe(StageState.BUILDING), follow=True)
    assert out == ["1\n"] and not f.incomplete


def test_no_log_anywhere_is_incomplete() -> None:
    f, _ = follower(FakeEngine([JenkinsPermanentError("gone")]), FakeStore())
    assert not f.poll(pe(StageState.BUILDING), follow=True)
    assert f.poll(pe(StageState.FAILED, phase=ExecutionPhase.FAILED), follow=True)
    assert f.incomplete


@pytest.mark.parametrize(
    "stage,step,expected",
    [(None, None, [(0, 0)]), ("0", None, [(0, 0)]), ("clone", "clone", [(0, 0)]), ("Clone", "0", [(0, 0)])],
)
def test_select_steps(stage: str | None, step: str | None, expected: list[tuple[int, int]]) -> None:
    assert cli.select_steps(pe(StageState.BUILDING), stage, step) == expected


def test_select_steps_errors() -> None:
    with pytest.raises(cli.CliError) as exc:
        cli.select_steps(pe(StageState.BUILDING), "Deploy", None)
    assert exc.value.code == cli.EXIT_NOT_FOUND and "known: Clone" in exc.value.message
    with pytest.raises(cli.CliError) as exc:
        cli.select_steps(pe(StageState.BUILDING), None, "0")
    assert exc.value.code == cli.EXIT_USAGE
