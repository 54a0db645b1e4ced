"""The bridge's watch loop: resume from the last version, list again on 410 Gone (fakes for the apiserver)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

import worker.bridge as bridge_mod
from worker.bridge import Bridge
from worker.settings import WorkerSettings

pytestmark = pytest.mark.unit


def pe(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": version}}


class FakeWatch:
    """Scripted watch streams: each call of ``stream`` plays the next script (events, or an exception)."""

    scripts: ClassVar[list[Any]] = []
    calls: ClassVar[list[str | None]] = []

    def stream(self, func: Any, *args: Any, resource_version: str | None = None, **kw: Any) -> Iterator[Any]:
        FakeWatch.calls.append(resource_version)
        script = FakeWatch.scripts.pop(0) if FakeWatch.scripts else []
        if isinstance(script, Exception):
            raise script
        yield from script

    def stop(self) -> None:
        pass


@pytest.fixture
def bridge(monkeypatch: pytest.MonkeyPatch) -> Bridge:
    monkeypatch.setattr(bridge_mod, "_WATCH", FakeWatch)
    b = Bridge(k8s.ApiClient(), client=None, settings=WorkerSettings.load(KUBECONFIG=""))  # type: ignore[arg-type]
    return b


def test_a_410_gone_lists_again_and_an_ordinary_end_resumes_from_the_last_version_seen(
    bridge: Bridge,
) -> None:
    lists: list[int] = []
    emitted: list[tuple[str, Any]] = []

    def list_call(*args: Any, **kw: Any) -> dict[str, Any]:
        lists.append(1)
        return {"metadata": {"resourceVersion": str(10 * len(lists))}, "items": [pe("a", "5")]}

    bridge._list_call = lambda api, target: (list_call, ())  # type: ignore[method-assign]
    bridge._emit = lambda kind, target, payload: emitted.append((kind, payload))  # type: ignore[method-assign]
    FakeWatch.calls = []
    FakeWatch.scripts = [
        [{"type": "ADDED", "object": pe("b", "11")}, {"type": "MODIFIED", "object": pe("b", "12")}],
        [],  # the watch timed out normally: resume from 12
        ApiException(status=410, reason="Gone"),  # too old: list again (version 20), then watch from it
        [{"type": "DELETED", "object": pe("a", "21")}],
    ]
    done = threading.Event()
    original = FakeWatch.stream

    def stream(self: FakeWatch, func: Any, *args: Any, **kw: Any) -> Iterator[Any]:
        if not FakeWatch.scripts and len(FakeWatch.calls) >= 4:
            bridge._stop_thread.set()
            done.set()
            return iter(())
        return original(self, func, *args, **kw)

    FakeWatch.stream = stream  # type: ignore[method-assign]
    try:
        thread = threading.Thread(target=bridge._watch_loop, args=(None,), daemon=True)
        thread.start()
        assert done.wait(10), FakeWatch.calls
        thread.join(5)
    finally:
        FakeWatch.stream = original  # type: ignore[method-assign]
    assert FakeWatch.calls[:4] == ["10", "12", "12", "20"]
    assert len(lists) == 2
    assert bridge.stats["watch_gone"] == 1
    kinds = [k for k, _ in emitted]
    assert kinds == ["LISTED", "ADDED", "MODIFIED", "LISTED", "DELETED"]
