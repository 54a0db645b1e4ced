"""KeyedLocks: callers of one key take turns, of different keys do not wait, and nothing is kept after."""

from __future__ import annotations

import threading
import time

import pytest

from activities.locks import KeyedLocks

pytestmark = pytest.mark.unit


def _overlap(locks: KeyedLocks, keys: list[str]) -> int:
    """The most callers inside ``hold`` at once, one thread per key of ``keys``."""
    inside, most = 0, 0
    guard = threading.Lock()

    def work(key: str) -> None:
        nonlocal inside, most
        with locks.hold(key):
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.05)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=work, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    return most


def test_callers_of_one_key_take_turns_and_nothing_is_kept_once_they_are_done() -> None:
    locks = KeyedLocks()
    assert _overlap(locks, ["p"] * 6) == 1
    assert len(locks) == 0


def test_callers_of_different_keys_do_not_wait_for_each_other() -> None:
    locks = KeyedLocks()
    assert _overlap(locks, ["a", "b", "c"]) == 3
    assert len(locks) == 0


def test_a_caller_that_raises_releases_its_key() -> None:
    locks = KeyedLocks()
    with pytest.raises(RuntimeError), locks.hold("p"):
        raise RuntimeError("boom")
    assert len(locks) == 0
    with locks.hold("p"):
        assert len(locks) == 1
