"""worker.leader.LeaderElector against an in-memory Lease with the apiserver's conditional writes."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

import pytest

from activities.kube import KubeTransientError
from worker.leader import LeaderElector, LeaseConflict, LeaseRecord, LeaseTiming

pytestmark = pytest.mark.unit

FAST = LeaseTiming(lease_duration=0.6, renew_deadline=0.4, retry_period=0.05)


class MemoryLease:
    """One Lease: writes must carry the resourceVersion last read (409 otherwise), as on the apiserver."""

    namespace = "ns"
    name = "leader"

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.versions = itertools.count(1)
        self.down = False
        self.holders: list[str | None] = []

    def read(self) -> LeaseRecord | None:
        if self.down:
            raise KubeTransientError("read lease ns/leader: connection refused")
        return self.record

    def write(self, record: LeaseRecord, *, create: bool) -> LeaseRecord:
        if self.down:
            raise KubeTransientError("write lease ns/leader: connection refused")
        if create and self.record is not None:
            raise LeaseConflict("already exists")
        if not create and (self.record is None or record.resource_version != self.record.resource_version):
            raise LeaseConflict("the object has been modified")
        self.record = replace(record, resource_version=str(next(self.versions)))
        if not self.holders or self.holders[-1] != record.holder:
            self.holders.append(record.holder)
        return self.record


class Ledger:
    """Who is doing leader work right now, and every moment two did."""

    def __init__(self) -> None:
        self.active: set[str] = set()
        self.overlaps: list[set[str]] = []

    def reset(self) -> None:
        self.active.clear()
        self.overlaps.clear()


LEDGER = Ledger()


class Replica:
    """An elector whose ``lead`` records in the ledger whether two replicas ever lead at once."""

    def __init__(self, store: MemoryLease, identity: str) -> None:
        self.identity = identity
        self.elector = LeaderElector(store, identity, FAST)
        self.stop = asyncio.Event()
        self.terms = 0
        self.task: asyncio.Task[None] | None = None

    async def lead(self, lost: asyncio.Event) -> None:
        self.terms += 1
        LEDGER.active.add(self.identity)
        if len(LEDGER.active) > 1:
            LEDGER.overlaps.append(set(LEDGER.active))
        try:
            await lost.wait()
        finally:
            LEDGER.active.discard(self.identity)

    def start(self) -> Replica:
        self.task = asyncio.create_task(self.elector.run(self.lead, self.stop))
        return self

    async def stopped(self) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)


async def until(predicate: object, what: str) -> None:
    for _ in range(400):
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"never: {what}")


@pytest.fixture(autouse=True)
def fresh_ledger() -> None:
    LEDGER.reset()


async def test_of_two_replicas_one_leads_and_the_other_takes_over_when_it_stops() -> None:
    store = MemoryLease()
    a = Replica(store, "a").start()
    await until(lambda: a.elector.is_leader, "a leads")
    b = Replica(store, "b").start()
    await asyncio.sleep(FAST.lease_duration * 2)  # renewals keep b out
    assert not b.elector.is_leader and b.terms == 0
    await a.stopped()  # releases the lease
    assert store.record is not None and store.record.holder is None
    await until(lambda: b.elector.is_leader, "b takes over")
    await b.stopped()
    assert store.holders == ["a", None, "b", None]
    assert LEDGER.overlaps == []


async def test_a_leader_that_cannot_renew_stops_leading_and_leads_again_when_the_apiserver_is_back() -> None:
    store = MemoryLease()
    a = Replica(store, "a").start()
    await until(lambda: a.elector.is_leader, "a leads")
    store.down = True
    await until(lambda: not a.elector.is_leader, "a steps down")
    assert a.identity not in LEDGER.active  # its work was stopped before it stopped counting as leader
    store.down = False
    await until(lambda: a.elector.is_leader, "a leads again")
    assert a.terms == 2
    await a.stopped()


async def test_a_leader_whose_lease_was_taken_steps_down_at_its_next_renewal() -> None:
    store = MemoryLease()
    a = Replica(store, "a").start()
    await until(lambda: a.elector.is_leader, "a leads")
    assert store.record is not None
    store.record = replace(store.record, holder="intruder", resource_version="999")
    await until(lambda: not a.elector.is_leader, "a steps down")
    await a.stopped()
    assert store.record.holder == "intruder"  # a releases only a lease it still holds


async def test_racing_candidates_for_a_free_lease_never_lead_together() -> None:
    store = MemoryLease()
    replicas = [Replica(store, name).start() for name in "abcd"]
    await until(lambda: any(r.elector.is_leader for r in replicas), "someone leads")
    await asyncio.sleep(FAST.lease_duration)
    assert sum(r.elector.is_leader for r in replicas) == 1
    for replica in replicas:
        await replica.stopped()
    assert LEDGER.overlaps == []
