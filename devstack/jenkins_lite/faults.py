"""Fault injection: 5xx answers, dropped connections, lost answers and latency."""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal

FaultAction = Literal["none", "error", "drop", "drop_after"]


@dataclass
class FaultSettings:
    failRate: float = 0.0  # answer 500/503 before doing any work
    latencyMs: int = 0  # sleep before handling every request
    dropRate: float = 0.0  # close the connection before doing any work
    dropAfterRate: float = 0.0  # do the work, then close the connection without answering


class Faults:
    """Thread-safe fault settings and the dice that apply them."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = FaultSettings()
        self._random = random.Random(seed)

    def set(
        self,
        fail_rate: float | None = None,
        latency_ms: int | None = None,
        drop_rate: float | None = None,
        drop_after_rate: float | None = None,
    ) -> FaultSettings:
        with self._lock:
            s = self._settings
            if fail_rate is not None:
                s.failRate = _rate(fail_rate)
            if latency_ms is not None:
                s.latencyMs = max(0, int(latency_ms))
            if drop_rate is not None:
                s.dropRate = _rate(drop_rate)
            if drop_after_rate is not None:
                s.dropAfterRate = _rate(drop_after_rate)
            return FaultSettings(**asdict(s))

    def update_from_json(self, data: dict[str, Any]) -> FaultSettings:
        known = {"failRate", "latencyMs", "dropRate", "dropAfterRate"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        return self.set(
            fail_rate=_num(data.get("failRate")),
            latency_ms=None if data.get("latencyMs") is None else int(_num(data["latencyMs"]) or 0),
            drop_rate=_num(data.get("dropRate")),
            drop_after_rate=_num(data.get("dropAfterRate")),
        )

    def get(self) -> FaultSettings:
        with self._lock:
            return FaultSettings(**asdict(self._settings))

    def roll(self) -> tuple[FaultAction, int, int]:
        """Decide the fate of one request: (action, latency ms, 5xx status)."""
        with self._lock:
            s = self._settings
            status = 503 if self._random.random() < 0.5 else 500
            r = self._random.random()
            if r < s.failRate:
                return "error", s.latencyMs, status
            r -= s.failRate
            if r < s.dropRate:
                return "drop", s.latencyMs, status
            r -= s.dropRate
            if r < s.dropAfterRate:
                return "drop_after", s.latencyMs, status
            return "none", s.latencyMs, status


def _num(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"not a number: {v!r}")
    return float(v)


def _rate(v: float) -> float:
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"rate must be within [0, 1]: {v}")
    return float(v)
