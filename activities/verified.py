"""A namespace this worker verified a moment ago, or is verifying right now, is not verified again.

A burst of runs of one project asks for the same bootstrap and RoleBinding reconcile at once, and a
project that runs often asks for them again within seconds. :class:`VerifiedRecently` remembers when
this worker last completed each reconcile, by its exact input (a changed PipelineSetting is a new
input), and what it returned; :class:`Flights` makes the calls that arrive while the same one is in
flight wait for its outcome instead of repeating it. Both are per process: another worker verifies
for itself, and a restarted worker starts with nothing remembered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from pydantic import BaseModel

R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)

#: How long a completed bootstrap (or RoleBinding reconcile) vouches for its namespace: runs started within
#: it skip both. A change of the PipelineSetting changes the inputs, so it is never covered; what is not
#: seen is an object deleted by hand meanwhile, or a namespace labelled into the project meanwhile, which
#: the first run after the window repairs.
VERIFIED_TTL_SECONDS = 60.0
#: How long the first run to find its namespace unverified may take to verify it while the runs that ask
#: meanwhile wait for it, instead of each verifying the same namespace (a burst of runs started together,
#: or arriving as the TTL ends, asks for one verification, not dozens). Within the check's own timeout.
CLAIM_SECONDS = 5.0


def input_key(inp: BaseModel) -> str:
    return f"{type(inp).__name__}:{inp.model_dump_json()}"


class VerifiedRecently:
    """When this worker last completed a reconcile, by its exact input, with its result (bounded: oldest
    dropped first), and which checks found theirs unverified a moment ago (their run verifies it now)."""

    MAX_ENTRIES = 4096

    def __init__(
        self,
        ttl: float = VERIFIED_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        claim_seconds: float = CLAIM_SECONDS,
        max_waiting: int = 32,
    ) -> None:
        self.ttl = ttl
        self.claim_seconds = claim_seconds
        # Each waiting check holds one of the worker's local activity slots; the run that verifies needs
        # one too (its RoleBinding reconcile is local), so waiting must never take them all.
        self.max_waiting = max_waiting
        self._waiting = 0
        self._clock = clock
        self._done: dict[str, tuple[float, BaseModel | None]] = {}
        self._claims: dict[str, float] = {}
        self._changed = threading.Condition()

    def record(self, inp: BaseModel, result: BaseModel | None = None) -> None:
        with self._changed:
            key = input_key(inp)
            self._done.pop(key, None)
            self._done[key] = (self._clock(), result)
            while len(self._done) > self.MAX_ENTRIES:
                del self._done[next(iter(self._done))]
            self._changed.notify_all()

    def age(self, inp: BaseModel) -> float | None:
        """Seconds since ``inp`` was last completed, or None when never or longer than the TTL ago."""
        with self._changed:
            return self._age(input_key(inp))

    def result(self, inp: BaseModel, kind: type[M]) -> M | None:
        """What the completion of ``inp`` within the TTL returned (None: none within it, or no result)."""
        with self._changed:
            key = input_key(inp)
            if self._age(key) is None:
                return None
            result = self._done[key][1]
            return result if isinstance(result, kind) else None

    def _age(self, key: str) -> float | None:
        done = self._done.get(key)
        if done is None:
            return None
        age = self._clock() - done[0]
        return age if age < self.ttl else None

    def oldest_or_claim(self, *inputs: BaseModel) -> float | None:
        """The oldest age of ``inputs`` when all were completed within the TTL; otherwise None, and the
        caller's run is to complete them. When another caller was told so less than ``claim_seconds``
        ago, this waits (up to the rest of that time) for that run to complete them first, unless
        ``max_waiting`` callers wait already."""
        keys = [input_key(inp) for inp in inputs]
        claim = "|".join(keys)
        with self._changed:
            while True:
                ages = [self._age(key) for key in keys]
                if all(age is not None for age in ages):
                    self._claims.pop(claim, None)
                    return max(age for age in ages if age is not None)
                now = self._clock()
                left = self._claims.get(claim, now - self.claim_seconds) + self.claim_seconds - now
                if self.ttl <= 0 or left <= 0 or self._waiting >= self.max_waiting:
                    self._claims.pop(claim, None)
                    self._claims[claim] = now
                    while len(self._claims) > self.MAX_ENTRIES:
                        del self._claims[next(iter(self._claims))]
                    return None
                self._waiting += 1
                try:
                    self._changed.wait(left)
                finally:
                    self._waiting -= 1


@dataclass
class _Flight(Generic[R]):
    landed: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    result: R | None = None


class Flights:
    """One call per key at a time: a caller that finds the same key's call in flight waits for it and
    shares its result instead of making the call too. A call that fails is not shared: each of its
    waiters then makes the call itself (the first of them in flight again, the others waiting for it),
    so a transient fault costs what it would have cost anyway and a lasting one reaches every caller."""

    def __init__(self, poll_seconds: float = 0.5) -> None:
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight[object]] = {}

    def in_flight(self) -> int:
        with self._lock:
            return len(self._flights)

    def run(
        self, key: str, call: Callable[[], R], *, stop: Callable[[], None] = lambda: None
    ) -> tuple[R, bool]:
        """``(result, shared)``: the result of ``call()``, or of the call of ``key`` that was in flight
        (``shared``). ``stop`` is called while waiting and raises to give up (the activity's cancel)."""
        while True:
            with self._lock:
                flight = self._flights.get(key)
                leads = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
            if leads:
                return self._lead(key, flight, call), False
            while not flight.landed.wait(self.poll_seconds):
                stop()
            if flight.ok:
                return cast(R, flight.result), True  # the same key's call returns an R

    def _lead(self, key: str, flight: _Flight[object], call: Callable[[], R]) -> R:
        try:
            result = call()
            flight.result, flight.ok = result, True
            return result
        finally:
            with self._lock:
                del self._flights[key]
            flight.landed.set()


__all__ = ["CLAIM_SECONDS", "VERIFIED_TTL_SECONDS", "Flights", "VerifiedRecently", "input_key"]
