"""Leader election with a ``coordination.k8s.io/v1`` Lease: one replica at a time runs the bridge.

Every replica runs workflows and activities (Temporal spreads them over the task queue); what acts on
the cluster by itself -- the CR bridge and its orphan sweep -- runs only on the holder of the Lease.
The pattern is client-go's ``leaderelection``:

- A candidate takes the Lease when it is free (no holder) or when its record has not changed for a
  whole ``lease_duration`` *as observed on the candidate's own clock* (so clock skew between nodes
  does not matter). Every write carries the ``resourceVersion`` read before it: two candidates
  racing for an expired Lease are serialised by the apiserver, and the loser gets 409 Conflict.
- The leader renews every ``retry_period``. When it has not renewed successfully for
  ``renew_deadline`` (shorter than ``lease_duration``), it steps down *before* anyone else may take
  over, so two leaders never act at the same time.
- On SIGTERM the leader stops its work first and then releases the Lease (empty holder), so the
  next replica takes over at its next retry instead of after a full lease duration.

The timing decisions are the pure functions at the top (unit-tested); :class:`LeaderElector` does
the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import Gauge

from activities.errors import DevopsError
from activities.kube import classify

logger = logging.getLogger("worker.leader")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
LEADER = Gauge("cubepaas_worker_leader", "1 while this replica holds the Lease (and runs the bridge).")


# --------------------------------------------------------------------------------------------------
# Timing: pure


@dataclass(frozen=True)
class LeaseTiming:
    """client-go's three durations, in seconds: ``renew_deadline < lease_duration``."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period}s, {self.renew_deadline}s, {self.lease_duration}s"
            )

    @classmethod
    def for_lease_duration(cls, lease_duration: float) -> LeaseTiming:
        """client-go's defaults (15 s, 10 s, 2 s) scaled to ``lease_duration``."""
        return cls(lease_duration, lease_duration * 2 / 3, lease_duration * 2 / 15)

    @property
    def lease_duration_seconds(self) -> int:
        """The Lease's integer field: rounded up, so no one takes over earlier than we assume."""
        return max(1, int(-(-self.lease_duration // 1)))


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease's spec that leader election reads and writes."""

    holder: str | None = None
    lease_duration_seconds: int = 0
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0
    resource_version: str | None = None

    @property
    def version(self) -> tuple[str | None, datetime | None, int]:
        """What changes on every renewal or hand-over (a follower's "has it moved?")."""
        return (self.holder, self.renew_time, self.transitions)


def may_acquire(record: LeaseRecord | None, identity: str, observed_at: float, now: float) -> bool:
    """Whether ``identity`` may write itself as holder of ``record``.

    ``observed_at`` is the local monotonic time at which this candidate last saw ``record`` change;
    the record's own duration (written by its holder) decides when it has expired.
    """
    if record is None or not record.holder or record.holder == identity:
        return True
    return now >= observed_at + record.lease_duration_seconds


def must_step_down(last_renewed: float, now: float, timing: LeaseTiming) -> bool:
    """Whether a leader that last renewed at ``last_renewed`` (monotonic) must stop acting."""
    return now - last_renewed >= timing.renew_deadline


def claimed(record: LeaseRecord | None, identity: str, timing: LeaseTiming, wall: datetime) -> LeaseRecord:
    """The record that makes (or keeps) ``identity`` the holder at wall-clock time ``wall``."""
    if record is not None and record.holder == identity:
        return replace(record, renew_time=wall, lease_duration_seconds=timing.lease_duration_seconds)
    previous = record or LeaseRecord()
    return replace(
        previous,
        holder=identity,
        lease_duration_seconds=timing.lease_duration_seconds,
        acquire_time=wall,
        renew_time=wall,
        transitions=previous.transitions + (1 if previous.holder else 0),
    )


def released(record: LeaseRecord, wall: datetime) -> LeaseRecord:
    """The record a leader leaves behind on shutdown: no holder, so the next candidate need not wait."""
    return replace(record, holder=None, lease_duration_seconds=1, renew_time=wall)


def own_namespace() -> str:
    """The pod's own namespace (in-cluster), else ``default``: where the Lease lives unless configured."""
    with contextlib.suppress(OSError):
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    return "default"


def default_identity() -> str:
    """Unique per process: the pod's host name (its name in a Deployment) and the process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


# --------------------------------------------------------------------------------------------------
# The Lease object


def record_of(lease: Any) -> LeaseRecord:
    """A ``V1Lease`` -> :class:`LeaseRecord`."""
    spec = lease.spec
    return LeaseRecord(
        holder=spec.holder_identity or None,
        lease_duration_seconds=int(spec.lease_duration_seconds or 0),
        acquire_time=spec.acquire_time,
        renew_time=spec.renew_time,
        transitions=int(spec.lease_transitions or 0),
        resource_version=lease.metadata.resource_version,
    )


def lease_body(name: str, namespace: str, record: LeaseRecord) -> Any:
    """The ``V1Lease`` to write for ``record`` (its ``resourceVersion`` makes the write conditional)."""
    from kubernetes import client

    return client.V1Lease(
        api_version="coordination.k8s.io/v1",
        kind="Lease",
        metadata=client.V1ObjectMeta(
            name=name, namespace=namespace, resource_version=record.resource_version
        ),
        spec=client.V1LeaseSpec(
            holder_identity=record.holder,
            lease_duration_seconds=record.lease_duration_seconds,
            acquire_time=record.acquire_time,
            renew_time=record.renew_time,
            lease_transitions=record.transitions,
        ),
    )


class LeaseConflict(Exception):
    """Someone else wrote the Lease since we read it (409), or created it first."""


class LeaseBackend(Protocol):
    """Where the Lease lives: :class:`LeaseStore` on the apiserver (or an in-memory one in tests)."""

    namespace: str
    name: str

    def read(self) -> LeaseRecord | None: ...

    def write(self, record: LeaseRecord, *, create: bool) -> LeaseRecord: ...


class LeaseStore:
    """Reads and conditionally writes one Lease (blocking; the elector calls it in a thread)."""

    def __init__(self, api_client: Any, namespace: str, name: str, *, timeout: float = 5.0) -> None:
        from kubernetes import client

        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.timeout = timeout

    def read(self) -> LeaseRecord | None:
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.timeout)
        except ApiException as err:
            if err.status == 404:
                return None
            raise classify(err, f"read lease {self.namespace}/{self.name}") from err
        except Exception as err:  # unreachable apiserver: classify() names it transient (or re-raises)
            raise classify(err, f"read lease {self.namespace}/{self.name}") from err
        return record_of(lease)

    def write(self, record: LeaseRecord, *, create: bool) -> LeaseRecord:
        from kubernetes.client.exceptions import ApiException

        body = lease_body(self.name, self.namespace, record)
        try:
            if create:
                lease = self.api.create_namespaced_lease(self.namespace, body, _request_timeout=self.timeout)
            else:
                lease = self.api.replace_namespaced_lease(
                    self.name, self.namespace, body, _request_timeout=self.timeout
                )
        except ApiException as err:
            if err.status == 409:
                raise LeaseConflict(str(err.reason)) from err
            raise classify(err, f"write lease {self.namespace}/{self.name}") from err
        except Exception as err:
            raise classify(err, f"write lease {self.namespace}/{self.name}") from err
        return record_of(lease)


# --------------------------------------------------------------------------------------------------
# The elector


class LeaderElector:
    """Campaigns for the Lease and runs ``lead`` while holding it; see the module doc.

    ``lead(lost)`` is started when this replica becomes leader and must return soon after the
    ``lost`` event is set (leadership lost, or shutdown). ``run`` loops campaign -> lead -> campaign
    until ``stop`` is set, then releases the Lease if it holds it.
    """

    def __init__(
        self,
        store: LeaseBackend,
        identity: str,
        timing: LeaseTiming,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.identity = identity
        self.timing = timing
        self.clock = clock
        self.wall_clock = wall_clock
        self.is_leader = False
        self._record: LeaseRecord | None = None
        self._observed: tuple[str | None, datetime | None, int] | None = None
        self._observed_at = clock()

    async def run(
        self, lead: Callable[[asyncio.Event], Coroutine[Any, Any, None]], stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            if not await self._campaign(stop):
                break
            lost = asyncio.Event()
            work = asyncio.create_task(lead(lost), name="leader-work")
            try:
                await self._hold(stop, work)
            finally:
                lost.set()
                with contextlib.suppress(Exception):
                    await work
                self.is_leader = False
                LEADER.set(0)
            # Work has stopped: only now may the Lease go to someone else.
            logger.info("leader election: %s stepped down", self.identity)
            if stop.is_set():
                await self._release()
        logger.debug("leader election: %s stopped campaigning", self.identity)

    # -- steps -----------------------------------------------------------------------------------

    async def _campaign(self, stop: asyncio.Event) -> bool:
        """Until this replica holds the Lease (True) or ``stop`` (False)."""
        while not stop.is_set():
            if await self._try_acquire_or_renew():
                self.is_leader = True
                LEADER.set(1)
                logger.info(
                    "leader election: %s is the leader of %s/%s",
                    self.identity,
                    self.store.namespace,
                    self.store.name,
                )
                return True
            await _sleep_unless(stop, self.timing.retry_period)
        return False

    async def _hold(self, stop: asyncio.Event, work: asyncio.Task[None]) -> None:
        """Renew every retry period; return when a renewal misses the deadline, work ends or ``stop``."""
        last_renewed = self.clock()
        while not stop.is_set() and not work.done():
            await _sleep_unless(stop, self.timing.retry_period, work)
            if stop.is_set() or work.done():
                return
            if await self._try_acquire_or_renew():
                last_renewed = self.clock()
            elif self._observed is not None and self._observed[0] not in (None, self.identity):
                logger.warning("leader election: %s lost the lease to %s", self.identity, self._observed[0])
                return
            elif must_step_down(last_renewed, self.clock(), self.timing):
                logger.warning(
                    "leader election: %s could not renew for %.1fs: stepping down",
                    self.identity,
                    self.timing.renew_deadline,
                )
                return

    async def _try_acquire_or_renew(self) -> bool:
        try:
            record = await asyncio.to_thread(self.store.read)
        except DevopsError as err:
            logger.warning("leader election: cannot read the lease: %s", err)
            return False
        now = self.clock()
        if record is None or record.version != self._observed:
            self._observed = record.version if record else None
            self._observed_at = now
        if not may_acquire(record, self.identity, self._observed_at, now):
            return False
        desired = claimed(record, self.identity, self.timing, self.wall_clock())
        try:
            self._record = await asyncio.to_thread(self.store.write, desired, create=record is None)
        except LeaseConflict:
            return False
        except DevopsError as err:
            logger.warning("leader election: cannot write the lease: %s", err)
            return False
        self._observed = self._record.version
        self._observed_at = self.clock()
        return True

    async def _release(self) -> None:
        """Hand the Lease over at once (only if we still hold it, which the resourceVersion ensures)."""
        if self._record is None or self._record.holder != self.identity:
            return
        try:
            await asyncio.to_thread(self.store.write, released(self._record, self.wall_clock()), create=False)
            logger.info("leader election: %s released the lease", self.identity)
        except (LeaseConflict, DevopsError) as err:
            logger.warning("leader election: could not release the lease (%s); it expires by itself", err)


async def _sleep_unless(stop: asyncio.Event, seconds: float, work: asyncio.Task[None] | None = None) -> None:
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
    if work is not None:
        waiters.add(work)
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            if waiter is not work and not waiter.done():
                waiter.cancel()


__all__ = [
    "LeaderElector",
    "LeaseBackend",
    "LeaseConflict",
    "LeaseRecord",
    "LeaseStore",
    "LeaseTiming",
    "claimed",
    "default_identity",
    "lease_body",
    "may_acquire",
    "must_step_down",
    "own_namespace",
    "record_of",
    "released",
]
