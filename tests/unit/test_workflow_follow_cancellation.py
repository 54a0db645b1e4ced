"""While the follow activity is being cancelled, Temporal's own cancellation of the workflow goes on up.

The window is too narrow to hit through a server (the activity's cancellation resolves in the same
workflow task), so this drives ``_next_snapshot`` alone, with the two SDK calls it makes replaced: the
old code suppressed ``asyncio.CancelledError`` around ``await handle`` and returned "cancelled by the
user", so a ``temporal workflow cancel`` arriving then ended the run as if only the signal had come.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any

import pytest
from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError, RetryState

from crds.messages import BuildRef, ControlInput
from workflows import execution
from workflows.execution import PipelineExecutionWorkflow

pytestmark = pytest.mark.unit


class FollowHandle:
    """An activity handle that, once cancelled, raises ``error`` when awaited."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.cancelled = False

    def done(self) -> bool:
        return False

    def cancel(self) -> None:
        self.cancelled = True

    def __await__(self) -> Generator[Any, None, Any]:
        assert self.cancelled, "awaited before it was cancelled"
        raise self.error
        yield  # a generator, as __await__ must be


def _workflow_cancelled_while_following(
    monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> tuple[PipelineExecutionWorkflow, FollowHandle]:
    handle = FollowHandle(error)

    async def condition_met(predicate: Callable[[], bool], **_: Any) -> None:
        assert predicate()

    monkeypatch.setattr(workflow, "start_activity", lambda *a, **k: handle)
    monkeypatch.setattr(workflow, "wait_condition", condition_met)
    monkeypatch.setattr(execution, "FollowInput", lambda **_: None)
    wf = PipelineExecutionWorkflow()
    monkeypatch.setattr(wf, "_target", lambda: None)
    wf._s.build = BuildRef(job="app", number=1)
    wf._s.cancel = ControlInput(reason="cancel signal")
    return wf, handle


def test_temporals_cancellation_during_the_activity_cancel_is_raised_not_swallowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wf, handle = _workflow_cancelled_while_following(monkeypatch, asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(wf._next_snapshot(2.0))
    assert handle.cancelled


def test_the_follow_activitys_own_cancellation_means_cancelled_by_the_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = ActivityError(
        "activity cancelled",
        scheduled_event_id=1,
        started_event_id=2,
        identity="",
        activity_type="devops.jenkins.follow",
        activity_id="9",
        retry_state=RetryState.CANCEL_REQUESTED,
    )
    own.__cause__ = CancelledError("cancelled")
    wf, handle = _workflow_cancelled_while_following(monkeypatch, own)
    assert asyncio.run(wf._next_snapshot(2.0)) is None
    assert handle.cancelled
