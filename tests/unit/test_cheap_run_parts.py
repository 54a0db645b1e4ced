"""The pure parts of a cheap run: the namespace verified a moment ago, the follow's poll intervals, which
step logs are due."""

from __future__ import annotations

import itertools

import pytest

from activities.bootstrap import VerifiedRecently
from activities.build import FIRST_POLL_SECONDS, _FastFirst, logs_due
from crds.messages import BootstrapInput, BuildSnapshot, RoleBindingInput, StepKey, StepSnapshot

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_reconcile_vouches_for_its_exact_input_until_the_ttl_ends() -> None:
    clock = Clock()
    verified = VerifiedRecently(ttl=60, clock=clock)
    boot = BootstrapInput(project_namespace="p", pipeline_namespace="p-pipeline")
    assert verified.age(boot) is None
    verified.record(boot)
    clock.now += 59
    assert verified.age(boot) == 59
    assert verified.age(boot.model_copy(update={"persistent_volumes": True})) is None, "a changed setting"
    assert verified.age(RoleBindingInput(project_namespace="p", pipeline_namespace="p-pipeline")) is None
    clock.now += 1
    assert verified.age(boot) is None


def test_a_ttl_of_zero_never_vouches() -> None:
    verified = VerifiedRecently(ttl=0)
    boot = BootstrapInput(project_namespace="p", pipeline_namespace="p-pipeline")
    verified.record(boot)
    assert verified.age(boot) is None


def test_the_remembered_reconciles_are_bounded_oldest_first() -> None:
    verified = VerifiedRecently(ttl=60)
    inputs = [
        BootstrapInput(project_namespace=f"p{i}", pipeline_namespace="x")
        for i in range(VerifiedRecently.MAX_ENTRIES + 1)
    ]
    for inp in inputs:
        verified.record(inp)
    assert verified.age(inputs[0]) is None and verified.age(inputs[-1]) is not None


def test_polls_start_short_after_a_change_and_double_up_to_the_interval() -> None:
    poll = _FastFirst(1.0)
    waits = [poll.next() for _ in range(7)]
    assert waits[0] == FIRST_POLL_SECONDS and waits[1] == 2 * FIRST_POLL_SECONDS
    assert waits[-1] == 1.0 and all(a <= b for a, b in itertools.pairwise(waits))
    poll.changed()
    assert poll.next() == FIRST_POLL_SECONDS


def test_ended_steps_logs_are_due_once_and_at_the_end_every_started_ones() -> None:
    snap = BuildSnapshot(
        steps=[
            StepSnapshot(stage=0, step=0, state="Success", node_id="5"),
            StepSnapshot(stage=1, step=0, state="Building", node_id="9"),
            StepSnapshot(stage=1, step=1, state="Skipped"),
        ]
    )
    assert logs_due(snap, set()) == [(StepKey(0, 0), "5")]
    assert logs_due(snap, {StepKey(0, 0)}) == []
    ended = snap.model_copy(update={"building": False})
    assert logs_due(ended, {StepKey(0, 0)}) == [(StepKey(1, 0), "9")]
