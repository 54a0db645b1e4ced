"""Process helpers for the local stack: free ports, detached spawning, pid + start-time identity.

A pid alone is not an identity (pids are reused), so every process the stack starts is recorded as
``(pid, start_time)`` where ``start_time`` is field 22 of ``/proc/<pid>/stat`` (clock ticks since boot).
A process is "ours" only while both match; nothing here ever looks processes up by name.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

LOOPBACK = "127.0.0.1"


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when ``host:port`` can be bound right now (with SO_REUSEADDR, as Go and etcd bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(exclude: Iterable[int] = (), host: str = LOOPBACK) -> int:
    """A currently free loopback port below the kernel's ephemeral range, never one of ``exclude``.

    Ports the kernel hands out (``bind(0)``) lie in the range it also gives every outgoing connection
    its local port from. A server of the stack that is restarted on its port can then find it taken
    by some client's connection in the meantime ("address already in use"); ports below that range are
    only ever taken by another listener, which the bind check sees.
    """
    excluded = set(exclude)
    low, high = _listen_range()
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randint(low, high)
        if port not in excluded and port_is_free(port, host):
            return port
    raise RuntimeError(f"no free loopback port found in {low}-{high}")


def _listen_range() -> tuple[int, int]:
    """Up to 12000 ports just below ``net.ipv4.ip_local_port_range`` (default 32768-60999), else above."""
    try:
        ephemeral_low, ephemeral_high = map(
            int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        )
    except (OSError, ValueError):
        ephemeral_low, ephemeral_high = 32768, 60999
    high = ephemeral_low - 1
    low = max(10000, high - 12000)
    if high - low < 1000 and ephemeral_high < 64535:  # an unusual setting with no room below it
        return ephemeral_high + 1, 65535
    return low, high


def proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start_time)`` of ``pid`` from ``/proc/<pid>/stat``, or None if there is no such process."""
    if pid <= 0:
        return None
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces or ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def proc_start_time(pid: int) -> int | None:
    stat = proc_stat(pid)
    return None if stat is None else stat[1]


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child (no-op otherwise)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_running(pid: int, start_time: int) -> bool:
    """True while ``pid`` is the very process that started at ``start_time`` and has not exited."""
    stat = proc_stat(pid)
    if stat is None or stat[1] != start_time:
        return False
    if stat[0] in ("Z", "X"):
        _reap(pid)
        return False
    return True


@dataclass(frozen=True)
class Spawned:
    pid: int
    start_time: int


def spawn(
    cmd: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Spawned:
    """Start ``cmd`` detached (own session, stdin from /dev/null, output appended to ``log_path``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        log.flush()
        child = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
    start_time = proc_start_time(child.pid)
    if start_time is None:  # exited already and reaped? Popen has not waited, so it is at least a zombie.
        raise RuntimeError(f"{cmd[0]} exited immediately; see {log_path}")
    return Spawned(pid=child.pid, start_time=start_time)


def _signal_group_or_pid(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by ``pid`` (our processes run in their own session), else the pid."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def terminate(pid: int, start_time: int, grace: float = 10.0) -> str:
    """Stop the process ``(pid, start_time)``: SIGTERM, then SIGKILL after ``grace`` seconds.

    Returns what happened: ``"not running"``, ``"terminated"`` or ``"killed"``.
    """
    if not is_running(pid, start_time):
        return "not running"
    _signal_group_or_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_running(pid, start_time):
            return "terminated"
        time.sleep(0.05)
    if is_running(pid, start_time):
        _signal_group_or_pid(pid, signal.SIGKILL)
        for _ in range(100):
            if not is_running(pid, start_time):
                break
            time.sleep(0.05)
        return "killed"
    return "terminated"


def tail(path: Path, lines: int = 30, since: int = 0) -> str:
    """The last ``lines`` lines of ``path`` from byte offset ``since`` (empty if the file is missing)."""
    try:
        with path.open("rb") as handle:
            handle.seek(since)
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.3) -> T:
    """Poll ``predicate`` until it returns something truthy; TimeoutError naming ``what`` (and the last
    value seen) when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
