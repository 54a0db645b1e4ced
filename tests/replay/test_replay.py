"""Safe upgrades: histories recorded from a previous version replay with the current workflow code.

Temporal replays a running workflow's history on every worker that picks it up; a change to a
workflow's commands (an activity added, removed or reordered, a timer, a different branch) makes the
runs the previous version started fail with a non-determinism error after an upgrade. These histories
(``python -m devstack.record_histories``) are such runs; a change that breaks them fails here, and
needs ``workflow.patched`` (README, "Safe upgrades").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker.main import workflow_classes

pytestmark = pytest.mark.unit

HERE = Path(__file__).resolve().parent
#: tests/replay/*.json: runs started before the ``coarse-run`` change (they replay its old commands);
#: tests/replay/coarse-run/*.json: runs started after it; tests/replay/lean-run/*.json: after ``lean-run``;
#: tests/replay/quiet-provision/*.json: after ``quiet-provision``.
FILES = sorted(HERE.rglob("*.json"))
FOLDERS = sorted({path.parent for path in FILES})
SCENARIOS = {"success", "failure", "paused-resumed", "cancelled", "approval", "continued-as-new", "quota"}


def load(path: Path) -> WorkflowHistory:
    record: dict[str, Any] = json.loads(path.read_text())
    return WorkflowHistory.from_json(record["workflowId"], record["history"])


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_every_scenario_has_a_recorded_history(folder: Path) -> None:
    files = sorted(folder.glob("*.json"))
    recorded = {json.loads(path.read_text())["scenario"] for path in files}
    assert recorded == SCENARIOS
    chain = [p for p in files if p.name.startswith("continued-as-new-")]
    assert len(chain) >= 2, "the continued-as-new scenario holds every run of the chain"


def test_runs_of_every_version_of_the_execution_workflow_are_recorded() -> None:
    assert {f.name for f in FOLDERS} == {HERE.name, "coarse-run", "lean-run", "quiet-provision"}


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(HERE)) for p in FILES])
async def test_a_recorded_history_replays_with_the_current_code(path: Path) -> None:
    replayer = Replayer(workflows=workflow_classes(), data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


@workflow.defn(name="PipelineExecutionWorkflow", sandboxed=False)
class ChangedCommands:
    """A workflow of the same name whose first command differs: what a careless edit looks like."""

    @workflow.run
    async def run(self, _input: Any) -> None:
        await workflow.sleep(1)


async def test_a_changed_workflow_fails_the_replay() -> None:
    replayer = Replayer(workflows=[ChangedCommands], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(load(HERE / "success.json"), raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()
