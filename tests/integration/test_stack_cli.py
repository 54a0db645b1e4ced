"""`python -m devstack up` then `down` in a separate state folder leaves none of its processes running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from devstack_cli import REPO, group_members, ports_still_bound, processes_mentioning, run_devstack

from devstack import testbin
from devstack.proc import is_running
from devstack.stack import Stack

pytestmark = pytest.mark.integration


def test_up_then_down_leaves_none_of_its_processes_running(tmp_path: Path) -> None:
    state_dir = tmp_path / "devstack"
    up = run_devstack(state_dir, "up")
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
        assert not [name for name in state if name.startswith("dp1-")]  # only `up --data-plane` adds dp1
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
        assert "DP1_KUBECONFIG" not in env_text

        status = run_devstack(state_dir, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
        assert {name for name, line in lines.items() if line.split()[1] == "healthy"} >= set(state)

        again = run_devstack(state_dir, "up")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already up" in again.stdout
        assert json.loads((state_dir / "state.json").read_text())["components"] == state  # nothing changed

        # Partially up: only the dead component is started again, on its previous ports.
        assert Stack(state_dir, log=lambda _: None).stop_component("temporal") == "terminated"
        partial = run_devstack(state_dir, "up")
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
        down = run_devstack(state_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [name for name, (pid, start) in started.items() if is_running(pid, start)]
    assert not [pid for pid, _ in started.values() if group_members(pid)]  # no children left either
    assert processes_mentioning(str(state_dir)) == []
    assert ports_still_bound(after) == []

    status = run_devstack(state_dir, "status")
    assert status.returncode == 1  # everything is down now
    assert (state_dir / "temporal.db").exists()  # data stays; --purge removes it
    purge = run_devstack(state_dir, "down", "--purge")
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
    assert processes_mentioning(str(state_dir)) == []
