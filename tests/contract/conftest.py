"""Fixtures for the jenkins-lite contract tests: an in-process server per session, private ones on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jenkins_lite_helpers import TOKEN, USER, Lite

from devstack.jenkins_lite import LiteServer, serve


def _start(tmp: Path, **kw: Any) -> LiteServer:
    return serve(tmp, user=USER, token=TOKEN, **kw)


@pytest.fixture(scope="session")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lite]:
    server = _start(tmp_path_factory.mktemp("jenkins-lite-home"))
    try:
        yield Lite(server)
    finally:
        server.shutdown()


@pytest.fixture
def make_lite(tmp_path: Path) -> Iterator[Callable[..., Lite]]:
    """A private jenkins-lite with custom settings (executors, queue item TTL, faults...)."""
    servers: list[LiteServer] = []

    def make(**kw: Any) -> Lite:
        s = _start(tmp_path / f"home{len(servers)}", **kw)
        servers.append(s)
        return Lite(s)

    yield make
    for s in servers:
        s.shutdown()
