"""The bridge's watch loop: resume from the last version, list again on 410 Gone (a scripted apiserver)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from worker.bridge.watch import Watcher

pytestmark = pytest.mark.unit


def pe(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": version}}


class FakeResponse:
    """A watch response as urllib3 gives it with ``_preload_content=False``: JSON events, one per line."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        self.closed = False

    def stream(self, amt: int | None = None, decode_content: bool = False) -> Iterator[bytes]:
        # Split mid-line on purpose: events must be reassembled across chunks.
        for i in range(0, len(self.data), 7):
            yield self.data[i : i + 7]

    def release_conn(self) -> None:
        self.closed = True

    def shutdown(self) -> None:
        self.closed = True


def gone() -> dict[str, Any]:
    return {
        "type": "ERROR",
        "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
    }


def test_a_410_gone_lists_again_and_an_ordinary_end_resumes_from_the_last_version_seen() -> None:
    lists: list[int] = []
    watches: list[str | None] = []
    emitted: list[tuple[str, Any]] = []
    scripts: list[list[dict[str, Any]]] = [
        [{"type": "ADDED", "object": pe("b", "11")}, {"type": "MODIFIED", "object": pe("b", "12")}],
        [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}],  # ends normally: resume
        [gone()],  # too old: list again (version 30), then watch from it
        [{"type": "DELETED", "object": pe("a", "31")}],
    ]
    done = threading.Event()
    watcher: Watcher

    def call(*args: Any, watch: bool = False, resource_version: str | None = None, **kw: Any) -> Any:
        if not watch:
            lists.append(1)
            return {"metadata": {"resourceVersion": ("10", "30")[len(lists) - 1]}, "items": [pe("a", "5")]}
        watches.append(resource_version)
        if not scripts:
            watcher.stop()
            done.set()
            return FakeResponse([])
        return FakeResponse(scripts.pop(0))

    watcher = Watcher(k8s.ApiClient(), [None], lambda k, t, p: emitted.append((k, p)), Counter())
    watcher.list_call = lambda api, target: (call, ())  # type: ignore[method-assign]
    thread = threading.Thread(target=watcher.loop, args=(None,), daemon=True)
    thread.start()
    assert done.wait(10), watches
    thread.join(5)
    assert watches[:4] == ["10", "12", "15", "30"]
    assert len(lists) == 2
    assert watcher.stats["watch_gone"] == 1
    assert [k for k, _ in emitted] == ["LISTED", "ADDED", "MODIFIED", "LISTED", "DELETED"]


def test_stop_closes_the_stream_being_read_at_once() -> None:
    class Endless(FakeResponse):
        def stream(self, amt: int | None = None, decode_content: bool = False) -> Iterator[bytes]:
            while not self.closed:
                yield b""
            raise ConnectionError("closed")

    reading = threading.Event()
    response = Endless([])

    def call(*args: Any, watch: bool = False, **kw: Any) -> Any:
        if not watch:
            return {"metadata": {"resourceVersion": "1"}, "items": []}
        reading.set()
        return response

    watcher = Watcher(k8s.ApiClient(), ["ns"], lambda k, t, p: None, Counter())
    watcher.list_call = lambda api, target: (call, ())  # type: ignore[method-assign]
    watcher.start()
    assert reading.wait(10)
    watcher.stop()
    watcher.join(5)
    assert response.closed
    assert not any(t.is_alive() for t in watcher._threads)
    assert watcher.watching == {"ns": False}
