"""worker.leader: the pure decisions of leader election (who may take the Lease, when to step down)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.leader import LeaseRecord, LeaseTiming, claimed, lease_body, may_acquire, must_step_down, released

pytestmark = pytest.mark.unit

WALL = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
TIMING = LeaseTiming(lease_duration=15, renew_deadline=10, retry_period=2)


def held_by(holder: str, *, duration: int = 15, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(
        holder=holder,
        lease_duration_seconds=duration,
        acquire_time=WALL,
        renew_time=WALL,
        transitions=transitions,
        resource_version="41",
    )


def test_a_missing_or_released_lease_may_be_taken_at_once() -> None:
    assert may_acquire(None, "b", observed_at=100.0, now=100.0)
    assert may_acquire(LeaseRecord(holder=None, lease_duration_seconds=1), "b", observed_at=100.0, now=100.0)


def test_the_holder_may_always_renew_its_own_lease() -> None:
    assert may_acquire(held_by("a"), "a", observed_at=100.0, now=100.0)


def test_another_holders_lease_is_respected_until_a_whole_duration_passes_unchanged_on_our_clock() -> None:
    record = held_by("a", duration=15)
    assert not may_acquire(record, "b", observed_at=100.0, now=114.9)
    assert may_acquire(record, "b", observed_at=100.0, now=115.0)


def test_expiry_uses_the_duration_the_holder_wrote_not_our_own() -> None:
    record = held_by("a", duration=30)
    assert not may_acquire(record, "b", observed_at=100.0, now=120.0)
    assert may_acquire(record, "b", observed_at=100.0, now=130.0)


def test_a_leader_steps_down_when_renewals_fail_for_the_renew_deadline() -> None:
    assert not must_step_down(last_renewed=100.0, now=109.9, timing=TIMING)
    assert must_step_down(last_renewed=100.0, now=110.0, timing=TIMING)


def test_the_leader_steps_down_before_any_follower_may_take_over() -> None:
    # A follower that observed the last renewal at the same moment may take over only at
    # +lease_duration; the leader has stopped at +renew_deadline.
    record = held_by("a")
    step_down_at = next(t / 10 for t in range(1000, 2000) if must_step_down(100.0, t / 10, TIMING))
    take_over_at = next(t / 10 for t in range(1000, 2000) if may_acquire(record, "b", 100.0, t / 10))
    assert step_down_at < take_over_at


def test_timing_must_order_retry_below_renew_deadline_below_lease_duration() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaseTiming(lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError):
        LeaseTiming(lease_duration=15, renew_deadline=10, retry_period=0)


def test_timing_for_a_lease_duration_scales_client_gos_defaults() -> None:
    timing = LeaseTiming.for_lease_duration(15)
    assert (timing.lease_duration, timing.renew_deadline, timing.retry_period) == pytest.approx((15, 10, 2))
    assert LeaseTiming.for_lease_duration(4.2).lease_duration_seconds == 5  # rounded up, never shorter


def test_taking_over_from_another_holder_counts_a_transition_and_sets_acquire_time() -> None:
    later = WALL + timedelta(seconds=20)
    record = claimed(held_by("a", transitions=3), "b", TIMING, later)
    assert record.holder == "b"
    assert record.transitions == 4
    assert record.acquire_time == later and record.renew_time == later
    assert record.resource_version == "41"  # the write is conditional on what was read


def test_renewing_keeps_acquire_time_and_transitions() -> None:
    later = WALL + timedelta(seconds=2)
    record = claimed(held_by("a", transitions=3), "a", TIMING, later)
    assert (record.holder, record.transitions, record.acquire_time, record.renew_time) == (
        "a",
        3,
        WALL,
        later,
    )


def test_a_first_claim_is_no_transition() -> None:
    record = claimed(None, "a", TIMING, WALL)
    assert (record.holder, record.transitions, record.lease_duration_seconds) == ("a", 0, 15)
    assert record.resource_version is None


def test_releasing_empties_the_holder_so_the_next_candidate_need_not_wait() -> None:
    later = WALL + timedelta(seconds=5)
    record = released(held_by("a", transitions=2), later)
    assert record.holder is None and record.transitions == 2 and record.renew_time == later
    assert may_acquire(record, "b", observed_at=200.0, now=200.0)


def test_the_lease_body_carries_the_resource_version_read() -> None:
    body = lease_body("leader", "cubepaas-system", held_by("a"))
    assert body.metadata.resource_version == "41"
    assert body.spec.holder_identity == "a"
    assert body.spec.lease_duration_seconds == 15
    assert body.spec.renew_time == WALL
