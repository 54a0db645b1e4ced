"""The pure parts of a cheap run: the namespace verified a moment ago, the follow's poll intervals, which
step logs are due."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pytest

from activities.build import AGENT_CHECK_EVERY_SECONDS, FIRST_POLL_SECONDS, _FastFirst, _Watch, logs_due
from activities.verified import Flights, VerifiedRecently
from crds.messages import (
    BootstrapInput,
    BootstrapResult,
    BuildSnapshot,
    RoleBindingInput,
    RoleBindingResult,
    StepKey,
    StepSnapshot,
)

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


def test_the_first_check_of_an_unverified_namespace_claims_it_and_a_second_waits_for_its_run() -> None:
    verified = VerifiedRecently(ttl=60, claim_seconds=10)
    boot = BootstrapInput(project_namespace="p", pipeline_namespace="p-pipeline")
    rbs = RoleBindingInput(project_namespace="p", pipeline_namespace="p-pipeline")
    assert verified.oldest_or_claim(boot, rbs) is None, "the first check: its run verifies"
    answers: list[float | None] = []
    second = threading.Thread(target=lambda: answers.append(verified.oldest_or_claim(boot, rbs)))
    second.start()
    time.sleep(0.05)
    verified.record(boot)
    time.sleep(0.05)
    assert second.is_alive(), "half verified is not verified: the second check still waits"
    verified.record(rbs)
    second.join(timeout=5)
    assert answers and answers[0] is not None and answers[0] < 1, "the second run skips the bootstrap"


def test_a_claim_whose_run_never_verifies_lapses_and_the_next_check_claims_again() -> None:
    clock = Clock()
    verified = VerifiedRecently(ttl=60, clock=clock, claim_seconds=5)
    boot = BootstrapInput(project_namespace="p", pipeline_namespace="p-pipeline")
    assert verified.oldest_or_claim(boot) is None
    clock.now += 5  # the claiming run failed: nobody records
    assert verified.oldest_or_claim(boot) is None, "lapsed: this run verifies, without waiting"


def test_checks_stop_waiting_beyond_the_limit_and_verify_themselves() -> None:
    verified = VerifiedRecently(ttl=60, claim_seconds=30, max_waiting=1)
    boot = BootstrapInput(project_namespace="p", pipeline_namespace="p-pipeline")
    assert verified.oldest_or_claim(boot) is None
    waiter = threading.Thread(target=verified.oldest_or_claim, args=(boot,), daemon=True)
    waiter.start()
    time.sleep(0.05)
    began = time.monotonic()
    assert verified.oldest_or_claim(boot) is None, "one waits already: this one verifies itself"
    assert time.monotonic() - began < 1
    verified.record(boot)
    waiter.join(timeout=5)
    assert not waiter.is_alive()


def test_a_completed_reconcile_keeps_its_result_for_the_ttl_and_only_under_its_own_type() -> None:
    clock = Clock()
    verified = VerifiedRecently(ttl=60, clock=clock)
    boot = BootstrapInput(project_namespace="p", pipeline_namespace="p-pipeline")
    done = BootstrapResult(
        pipeline_namespace="p-pipeline", writes=3, applied=3, applied_objects=["a", "b", "c"]
    )
    verified.record(boot, done)
    assert verified.result(boot, BootstrapResult) == done
    assert verified.result(boot, RoleBindingResult) is None, "a result of another kind is not this one's"
    shared = done.as_shared()
    assert (shared.shared, shared.writes, shared.applied, shared.applied_objects) == (True, 0, 0, [])
    assert shared.pipeline_namespace == "p-pipeline", "where the services are stays"
    clock.now += 60
    assert verified.result(boot, BootstrapResult) is None


def _together(flights: Flights, n: int, call: Callable[[], int]) -> list[tuple[int, bool] | BaseException]:
    """``n`` threads that ask ``flights`` for key "k" while the first call is still running."""
    answers: list[tuple[int, bool] | BaseException] = []
    lock = threading.Lock()

    def ask() -> None:
        try:
            answer: tuple[int, bool] | BaseException = flights.run("k", call)
        except RuntimeError as err:
            answer = err
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=ask) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    return answers


def test_calls_of_one_key_made_together_are_made_once_and_the_others_share_its_result() -> None:
    calls = itertools.count(1)
    release = threading.Event()

    def slow() -> int:
        n = next(calls)
        release.wait(5)
        return n

    flights = Flights(poll_seconds=0.01)
    threading.Timer(0.2, release.set).start()
    answers = _together(flights, 8, slow)
    assert (
        sorted(answers, key=lambda a: a[1] if isinstance(a, tuple) else True)
        == [(1, False)] + [(1, True)] * 7
    )
    assert flights.in_flight() == 0
    assert flights.run("k", lambda: 42) == (42, False), "landed: the next call is made again"


def test_a_failed_call_is_not_shared_and_each_waiter_makes_it_again_one_at_a_time() -> None:
    calls = itertools.count(1)
    running = threading.Lock()
    release = threading.Event()

    def flaky() -> int:
        n = next(calls)
        assert running.acquire(blocking=False), "two calls of one key at once"
        try:
            release.wait(5)
            if n == 1:
                raise RuntimeError("the API hiccuped")
            return n
        finally:
            running.release()

    flights = Flights(poll_seconds=0.01)
    threading.Timer(0.2, release.set).start()
    answers = _together(flights, 4, flaky)
    failures = [a for a in answers if isinstance(a, BaseException)]
    assert [str(f) for f in failures] == ["the API hiccuped"], "only the call that failed fails"
    succeeded = [a for a in answers if isinstance(a, tuple)]
    assert len(succeeded) == 3 and all(n >= 2 for n, _ in succeeded), "the waiters made it again and got it"
    assert any(not shared for _, shared in succeeded), "not shared from the failed call"


def test_a_waiter_gives_up_when_its_stop_raises() -> None:
    flights = Flights(poll_seconds=0.01)
    release = threading.Event()
    leader = threading.Thread(target=flights.run, args=("k", lambda: release.wait(5)))
    leader.start()
    while flights.in_flight() == 0:
        time.sleep(0.01)

    def stop() -> None:
        raise TimeoutError("cancelled")

    with pytest.raises(TimeoutError):
        flights.run("k", lambda: True, stop=stop)
    release.set()
    leader.join(timeout=5)


def test_the_agent_pod_is_asked_for_after_the_wait_and_then_at_most_every_few_seconds() -> None:
    watch = _Watch(engine=None, node_pending=False, agent_check_after=1.0, started=100.0)  # type: ignore[arg-type]
    every = AGENT_CHECK_EVERY_SECONDS
    looks = [100.5, 101.0, 101.05, 101.1, 101 + every - 0.1, 101 + every, 101 + every + 0.2, 101 + 2 * every]
    asked = [t for t in looks if watch.agent_check_due(t)]
    assert asked == [101.0, 101 + every, 101 + 2 * every], f"one LIST per {every}s, not one per 50 ms poll"


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
