"""`python -m devstack up` then `down` in a separate state folder leaves none of its processes running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import testbin
from devstack.components import BY_NAME
from devstack.proc import is_running, port_is_free
from devstack.stack import Stack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _devstack(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEVSTACK_DIR=str(state_dir))
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _processes_mentioning(text: str) -> list[int]:
    """Live pids whose command line mentions ``text`` (only used to check nothing is left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def _group_members(pgid: int) -> list[int]:
    members = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(proc.name))
    return members


def test_up_then_down_leaves_none_of_its_processes_running(tmp_path: Path) -> None:
    state_dir = tmp_path / "devstack"
    up = _devstack(state_dir, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((state_dir / "state.json").read_text())["components"]
        assert set(state) >= {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
            "temporal",
            "minio",
            "registry",
        }
        started = {name: (c["pid"], c["start_time"]) for name, c in state.items()}
        assert all(is_running(pid, start) for pid, start in started.values()), started
        env_text = (state_dir / "env").read_text()
        for name in (
            "KUBECONFIG",
            "TEMPORAL_ADDRESS",
            "TEMPORAL_NAMESPACE",
            "TEMPORAL_UI_URL",
            "S3_ENDPOINT",
            "REGISTRY_URL",
            "CUBEPAAS_WEBHOOK_PORT",
            "KUBECTL",
            "HELM",
            "DEVSTACK_BIN",
        ):
            assert f"export {name}=" in env_text

        status = _devstack(state_dir, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
        assert {name for name, line in lines.items() if line.split()[1] == "healthy"} >= set(state)

        again = _devstack(state_dir, "up")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already up" in again.stdout
        assert json.loads((state_dir / "state.json").read_text())["components"] == state  # nothing changed

        # Partially up: only the dead component is started again, on its previous ports.
        assert Stack(state_dir, log=lambda _: None).stop_component("temporal") == "terminated"
        partial = _devstack(state_dir, "up")
        assert partial.returncode == 0, partial.stdout + partial.stderr
        assert "(started temporal)" in partial.stdout
        after = json.loads((state_dir / "state.json").read_text())["components"]
        assert after["temporal"]["ports"] == state["temporal"]["ports"]
        assert after["temporal"]["pid"] != state["temporal"]["pid"]
        assert {n: c for n, c in after.items() if n != "temporal"} == {
            n: c for n, c in state.items() if n != "temporal"
        }
        started = {name: (c["pid"], c["start_time"]) for name, c in after.items()}
    finally:
        down = _devstack(state_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [name for name, (pid, start) in started.items() if is_running(pid, start)]
    assert not [pid for pid, _ in started.values() if _group_members(pid)]  # no children left either
    assert _processes_mentioning(str(state_dir)) == []
    listened = {
        port
        for name, c in after.items()
        for port_name, port in c["ports"].items()
        if port_name not in BY_NAME[name].target_ports
    }
    assert [port for port in sorted(listened) if not port_is_free(port)] == []

    status = _devstack(state_dir, "status")
    assert status.returncode == 1  # everything is down now
    assert (state_dir / "temporal.db").exists()  # data stays; --purge removes it
    purge = _devstack(state_dir, "down", "--purge")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert not state_dir.exists()


def test_a_component_that_fails_to_start_shows_its_log_and_up_stops_what_it_started(tmp_path: Path) -> None:
    cache = tmp_path / "testbin-cache"
    for tool in testbin.TOOLS:
        fake = tool.path(cache)
        fake.parent.mkdir(parents=True)
        fake.write_text(f"#!/bin/sh\necho '{tool.name}: simulated start-up failure' >&2\nexit 3\n")
        fake.chmod(0o755)
    state_dir = tmp_path / "devstack"
    env = dict(os.environ, CUBEPAAS_TESTBIN_CACHE=str(cache))

    up = subprocess.run(
        [sys.executable, "-m", "devstack", "--dir", str(state_dir), "up"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert up.returncode == 1
    assert "etcd: simulated start-up failure" in up.stderr  # the failing component's last log lines
    assert "kube-apiserver: not started because etcd failed" in up.stderr
    state = json.loads((state_dir / "state.json").read_text())["components"]
    assert not [name for name, c in state.items() if is_running(c["pid"], c["start_time"])]
    assert _processes_mentioning(str(state_dir)) == []
