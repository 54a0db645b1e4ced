"""A warm testbin cache returns the cached binaries without running `go`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from devstack import testbin


@pytest.mark.unit
def test_populated_cache_builds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = {tool.name: tmp_path / f"{tool.name}-{tool.version}" / tool.name for tool in testbin.TOOLS}
    for path in paths.values():
        path.parent.mkdir(parents=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    monkeypatch.setenv("CUBEPAAS_TESTBIN_CACHE", str(tmp_path))

    def no_go(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"warm cache must not run anything: {args!r}")

    monkeypatch.setattr(subprocess, "run", no_go)
    logged: list[str] = []

    assert testbin.cache_dir() == tmp_path
    binaries = testbin.ensure_binaries(log=logged.append)
    assert binaries.kube_apiserver == paths["kube-apiserver"] and binaries.minio == paths["minio"]
    assert binaries == testbin.Binaries(**{name.replace("-", "_"): path for name, path in paths.items()})
    assert logged == []


@pytest.mark.unit
def test_cache_dir_defaults_to_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBEPAAS_TESTBIN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert testbin.cache_dir() == tmp_path / "cubepaas-devstack" / "bin"


@pytest.mark.unit
def test_one_go_build_per_module_carries_every_tools_package_and_version_stamp() -> None:
    stack = [tool for tool in testbin.TOOLS if tool.module == "stack"]
    cmd = testbin.build_command("go", stack, Path("/out"))

    assert cmd[:2] == ["go", "build"] and cmd[cmd.index("-o") + 1] == "/out/"
    assert cmd[-len(stack) :] == [tool.package for tool in stack]
    ldflags = cmd[cmd.index("-ldflags") + 1]
    for tool in stack:
        for flag in testbin._split_ldflags(tool.ldflags):
            assert flag in ldflags, (tool.name, flag)
    assert ldflags.count("-s ") == 1  # shared flags once
    assert f"version.gitVersion={testbin.KUBE_VERSION}" in ldflags
    assert f"internal/version.version={testbin.HELM_VERSION}" in ldflags
    # Every module dir named by a tool exists, and every binary is found under the name go build gives it.
    modules = {tool.module for tool in testbin.TOOLS}
    assert modules == {"stack", "kwok", "gitea"}
    assert all((Path(testbin.__file__).parent / "testbin" / m / "go.mod").is_file() for m in modules)
    assert testbin.ETCD.output_name() == "server" and testbin.HELM.output_name() == "helm"


@pytest.mark.unit
def test_gitea_builds_without_tags_or_cgo_and_brings_its_options_and_templates() -> None:
    cmd = testbin.build_command("go", [testbin.GITEA], Path("/out"))
    assert "-tags" not in cmd  # SQLite is modernc's pure-Go driver in v1.27: no sqlite tags, no cgo
    assert cmd[-1] == "gitea.dev" and testbin.GITEA.output_name() == "gitea.dev"
    assert f"main.Version={testbin.GITEA_VERSION.removeprefix('v')}" in cmd[cmd.index("-ldflags") + 1]
    assert testbin.GITEA.assets == ("options", "templates")
    cache = Path("/cache")
    assert testbin.GITEA.assets_dir(cache) == testbin.GITEA.path(cache).parent == cache / "gitea-v1.27.3"
    go_mod = (Path(testbin.__file__).parent / "testbin" / "gitea" / "go.mod").read_text()
    assert f"gitea.dev => code.gitea.io/gitea {testbin.GITEA_VERSION}" in go_mod
    for replaced in ("go.yaml.in/yaml/v4", "sdk/azcore", "sdk/storage/azblob", "go-mssqldb"):
        assert replaced in go_mod  # Gitea's own replace directives, repeated
