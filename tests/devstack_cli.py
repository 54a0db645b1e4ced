"""``python -m devstack`` in a state folder of a test's own, and what a stopped stack may have left
behind: processes, their children, listening ports.

The leftovers are looked up by name only for tests' checks after ``down``: the stack itself never is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from devstack.components import BY_NAME
from devstack.proc import port_is_free

REPO = Path(__file__).resolve().parents[1]


def run_devstack(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m devstack <args>`` with ``DEVSTACK_DIR=state_dir``; output captured."""
    env = dict(os.environ, DEVSTACK_DIR=str(state_dir))
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def processes_mentioning(text: str) -> list[int]:
    """Live pids whose command line mentions ``text``."""
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


def group_members(pgid: int) -> list[int]:
    """Live members of process group ``pgid`` (each component leads its own)."""
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


def ports_still_bound(components: dict[str, Any]) -> list[int]:
    """The ports the components of a ``state.json`` listened on that cannot be bound now."""
    listened = {
        port
        for name, entry in components.items()
        for port_name, port in entry["ports"].items()
        if port_name not in BY_NAME[name].target_ports
    }
    return [port for port in sorted(listened) if not port_is_free(port)]
