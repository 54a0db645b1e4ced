"""Run a command in its own mount namespace with bind mounts (how a step sees its pod's hostPath volumes).

``python -m devstack.jenkins_lite.mountns [--bind SRC DST | --ro-bind SRC DST]... -- COMMAND...``

unshare(CLONE_NEWNS), every mount made private (nothing propagates back to the host), each SRC bind-mounted
at DST (DST is created when missing: an empty mount point, as a container runtime creates one), then exec
COMMAND in the same process (its pid and process group stay those jenkins-lite started). Needs root
(CAP_SYS_ADMIN). Exit code 125 and a message on stderr when the namespace or a mount cannot be made.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
SETUP_FAILED = 125


def parse(argv: list[str]) -> tuple[list[tuple[str, str, bool]], list[str]]:
    """(mounts as (source, target, read_only), command) from the arguments."""
    mounts: list[tuple[str, str, bool]] = []
    i = 0
    while i < len(argv) and argv[i] != "--":
        flag = argv[i]
        if flag not in ("--bind", "--ro-bind") or i + 2 >= len(argv):
            raise ValueError(f"usage: [--bind SRC DST | --ro-bind SRC DST]... -- COMMAND (at {flag!r})")
        mounts.append((argv[i + 1], argv[i + 2], flag == "--ro-bind"))
        i += 3
    command = argv[i + 1 :]
    if not command:
        raise ValueError("no command after --")
    return mounts, command


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def enter(mounts: list[tuple[str, str, bool]]) -> None:
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    for source, target, read_only in mounts:
        os.makedirs(source, exist_ok=True)
        os.makedirs(target, exist_ok=True)
        src, dst = os.fsencode(source), os.fsencode(target)
        _check(libc.mount(src, dst, None, MS_BIND | MS_REC, None), f"bind {source} at {target}")
        if read_only:
            flags = MS_BIND | MS_REMOUNT | MS_RDONLY
            _check(libc.mount(b"none", dst, None, flags, None), f"read-only {target}")


def main(argv: list[str] | None = None) -> int:
    try:
        mounts, command = parse(sys.argv[1:] if argv is None else argv)
        enter(mounts)
    except (OSError, ValueError) as e:
        print(f"jenkins-lite: cannot set up the step's mount namespace: {e}", file=sys.stderr, flush=True)
        return SETUP_FAILED
    os.execv(command[0], command)
    return SETUP_FAILED  # not reached: execv replaces the process


if __name__ == "__main__":
    sys.exit(main())
