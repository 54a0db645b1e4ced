"""Process identity (pid + /proc start time), stopping by pid, and free-port picking."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from devstack.proc import (
    free_port,
    is_running,
    port_is_free,
    proc_start_time,
    spawn,
    tail,
    terminate,
)


def test_a_spawned_process_is_identified_by_pid_and_start_time(tmp_path: Path) -> None:
    proc = spawn(["sleep", "30"], tmp_path / "sleep.log")
    try:
        assert proc.start_time == proc_start_time(proc.pid)
        assert is_running(proc.pid, proc.start_time)
        assert not is_running(proc.pid, proc.start_time + 1)  # same pid, another process
        assert os.getsid(proc.pid) == proc.pid  # detached into its own session
    finally:
        assert terminate(proc.pid, proc.start_time, grace=5) == "terminated"
    assert not is_running(proc.pid, proc.start_time)
    assert terminate(proc.pid, proc.start_time) == "not running"


def test_terminate_never_signals_a_process_whose_start_time_differs(tmp_path: Path) -> None:
    proc = spawn(["sleep", "30"], tmp_path / "sleep.log")
    try:
        assert terminate(proc.pid, proc.start_time - 1, grace=0.1) == "not running"
        assert is_running(proc.pid, proc.start_time)
    finally:
        terminate(proc.pid, proc.start_time, grace=5)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('READY'.lower(), flush=True); time.sleep(60)"
    )
    log = tmp_path / "stubborn.log"
    proc = spawn([sys.executable, "-c", code], log)
    deadline = time.monotonic() + 10
    while "ready" not in tail(log).splitlines() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert terminate(proc.pid, proc.start_time, grace=0.5) == "killed"
    assert not is_running(proc.pid, proc.start_time)


def test_missing_pids_and_our_own_process_are_told_apart() -> None:
    assert proc_start_time(0) is None
    assert proc_start_time(2**22 + 12345) is None
    own = proc_start_time(os.getpid())
    assert own is not None and is_running(os.getpid(), own)


def test_output_goes_to_the_log_and_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    proc = spawn([sys.executable, "-c", "print('\\n'.join(str(i) for i in range(100)))"], log)
    deadline = time.monotonic() + 10
    while is_running(proc.pid, proc.start_time) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tail(log, 3).splitlines() == ["97", "98", "99"]
    assert tail(tmp_path / "missing.log") == ""


def test_free_ports_are_bindable_distinct_and_respect_exclusions() -> None:
    first = free_port()
    assert port_is_free(first)
    second = free_port(exclude={first})
    assert second != first
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        assert not port_is_free(busy)


def test_free_ports_lie_outside_the_range_outgoing_connections_take_their_local_port_from() -> None:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2])
    ports = {free_port() for _ in range(50)}
    assert not [port for port in ports if low <= port <= high], (low, high, sorted(ports))
    assert len(ports) > 40  # drawn at random from thousands, not handed out in sequence
