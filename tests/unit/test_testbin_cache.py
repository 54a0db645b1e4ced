"""A warm testbin cache returns the cached binaries without running `go`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from devstack import testbin


@pytest.mark.unit
def test_populated_cache_builds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kube = tmp_path / f"kube-apiserver-{testbin.KUBE_VERSION}" / "kube-apiserver"
    etcd = tmp_path / f"etcd-{testbin.ETCD_VERSION}" / "etcd"
    for path in (kube, etcd):
        path.parent.mkdir(parents=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    monkeypatch.setenv("CUBEPAAS_TESTBIN_CACHE", str(tmp_path))

    def no_go(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"warm cache must not run anything: {args!r}")

    monkeypatch.setattr(subprocess, "run", no_go)
    logged: list[str] = []

    assert testbin.cache_dir() == tmp_path
    assert testbin.ensure_binaries(log=logged.append) == testbin.Binaries(etcd=etcd, kube_apiserver=kube)
    assert logged == []


@pytest.mark.unit
def test_cache_dir_defaults_to_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBEPAAS_TESTBIN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert testbin.cache_dir() == tmp_path / "cubepaas-devstack" / "bin"
