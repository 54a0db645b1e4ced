"""What the bridge knows about one execution, and the backoff its failed steps wait."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

#: Temporal RPCs of the bridge give up after this (then the step is retried with backoff).
RPC_TIMEOUT = timedelta(seconds=10)
MAX_BACKOFF = 30.0


@dataclass
class Tracked:
    """What the bridge knows about one execution (by uid)."""

    namespace: str
    name: str
    uid: str
    latest: dict[str, Any]
    workflow_id: str
    run_id: str | None = None
    started: bool = False  # start requested successfully (or found closed / terminal)
    closed: bool = False  # the workflow is known to be closed: no signals
    links_itself: bool = False  # started by this bridge: the workflow writes its own status.workflow
    paused: bool | None = None  # last value forwarded (None: none yet in this process)
    cancelled: bool = False  # cancel forwarded
    deleted: bool = False
    dirty: bool = False
    failures: int = 0
    bad_version: str | None = None  # resourceVersion that failed to parse (logged once)
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def backoff(failures: int) -> float:
    return min(MAX_BACKOFF, 0.5 * 2.0 ** max(0, failures - 1)) * random.uniform(0.8, 1.2)


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


__all__ = ["MAX_BACKOFF", "RPC_TIMEOUT", "Tracked", "backoff", "meta"]
