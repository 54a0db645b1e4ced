"""How the worker runs workflows: directly by default, in the SDK's sandbox when asked.

The sandbox's run-time checks are kept where they find bugs: the workflow tests (tests/unit's harness and
tests/replay) and the e2e session worker run every workflow in it.
"""

from __future__ import annotations

import pytest
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import _Definition

from worker.main import workflow_classes, workflow_runner
from worker.settings import WorkerSettings

pytestmark = pytest.mark.unit


def test_the_worker_runs_workflows_outside_the_sandbox_unless_the_setting_asks_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUBEPAAS_WORKFLOW_SANDBOX", raising=False)
    assert WorkerSettings().workflow_sandbox is False
    assert isinstance(workflow_runner(WorkerSettings().workflow_sandbox), UnsandboxedWorkflowRunner)
    monkeypatch.setenv("CUBEPAAS_WORKFLOW_SANDBOX", "true")
    assert isinstance(workflow_runner(WorkerSettings().workflow_sandbox), SandboxedWorkflowRunner)


async def test_every_workflow_is_accepted_by_the_sandbox_the_setting_turns_on() -> None:
    runner = workflow_runner(True)
    for cls in workflow_classes():
        # Imports each workflow's module inside the sandbox, as a sandboxed worker does at start-up: a
        # module that touches something restricted at import fails here.
        runner.prepare_workflow(_Definition.must_from_class(cls))
