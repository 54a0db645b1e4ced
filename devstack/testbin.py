"""A real kube-apiserver and etcd for tests, built from their Go modules and cached by version.

The wrapper modules in ``devstack/testbin/{kube-apiserver,etcd}`` pin every dependency (committed
``go.mod``/``go.sum``), so a cold machine needs only a Go toolchain (>= 1.24) and access to the Go
module proxy; a warm machine finds both binaries in :func:`cache_dir` and builds nothing.

``python -m devstack.testbin`` builds (if needed) and prints the two paths.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KUBE_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.4"

_KUBE_PACKAGE = "k8s.io/kubernetes/cmd/kube-apiserver"
_ETCD_PACKAGE = "go.etcd.io/etcd/server/v3"
_MODULES_DIR = Path(__file__).resolve().parent / "testbin"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path


def cache_dir() -> Path:
    """``$CUBEPAAS_TESTBIN_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/cubepaas-devstack/bin``."""
    explicit = os.environ.get("CUBEPAAS_TESTBIN_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cubepaas-devstack" / "bin"


def _kube_apiserver_path(cache: Path) -> Path:
    return cache / f"kube-apiserver-{KUBE_VERSION}" / "kube-apiserver"


def _etcd_path(cache: Path) -> Path:
    return cache / f"etcd-{ETCD_VERSION}" / "etcd"


def _ready(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def ensure_binaries(log: Callable[[str], None] = print) -> Binaries:
    """Return the cached binaries, building whichever is missing (once, under a file lock)."""
    cache = cache_dir()
    binaries = Binaries(etcd=_etcd_path(cache), kube_apiserver=_kube_apiserver_path(cache))
    if _ready(binaries.etcd) and _ready(binaries.kube_apiserver):
        return binaries

    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".build.lock", log):
        # Another process may have built them while we waited for the lock.
        if not _ready(binaries.kube_apiserver):
            _build(
                name="kube-apiserver",
                version=KUBE_VERSION,
                module_dir=_MODULES_DIR / "kube-apiserver",
                package=_KUBE_PACKAGE,
                extra_args=["-tags", "notest"],
                ldflags=_kube_ldflags(),
                dest=binaries.kube_apiserver,
                log=log,
            )
        if not _ready(binaries.etcd):
            _build(
                name="etcd",
                version=ETCD_VERSION,
                module_dir=_MODULES_DIR / "etcd",
                package=_ETCD_PACKAGE,
                extra_args=[],
                ldflags="-s -w",
                dest=binaries.etcd,
                log=log,
            )
    return binaries


def _kube_ldflags() -> str:
    major, minor = KUBE_VERSION.removeprefix("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return " ".join(
        [
            "-s",
            "-w",
            f"-X {pkg}.gitVersion={KUBE_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    )


@contextmanager
def _locked(lock_path: Path, log: Callable[[str], None]) -> Iterator[None]:
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"testbin: waiting for another build to finish ({lock_path})")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _build(
    *,
    name: str,
    version: str,
    module_dir: Path,
    package: str,
    extra_args: list[str],
    ldflags: str,
    dest: Path,
    log: Callable[[str], None],
) -> None:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(
            f"testbin: {name} {version} is not cached in {dest.parent} and no `go` is on PATH; "
            "install Go >= 1.24 (it needs proxy.golang.org) or point CUBEPAAS_TESTBIN_CACHE at a "
            "directory holding the prebuilt binaries"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    env = dict(os.environ, CGO_ENABLED="0", GOWORK="off")
    cmd = [
        go,
        "build",
        "-mod=readonly",  # the committed go.sum is the source of truth
        "-trimpath",
        *extra_args,
        "-ldflags",
        ldflags,
        "-o",
        str(tmp),
        package,
    ]
    log(f"testbin: building {name} {version} (a cold build takes minutes) ...")
    started = time.monotonic()
    try:
        result = subprocess.run(cmd, cwd=module_dir, env=env, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"testbin: `go build` of {name} {version} failed (exit {result.returncode})")
        check = subprocess.run(
            [str(tmp), "--version"], capture_output=True, text=True, check=False, timeout=60
        )
        if check.returncode != 0 or version.removeprefix("v") not in check.stdout:
            raise RuntimeError(
                f"testbin: built {name} does not report {version}: {check.stdout!r} {check.stderr!r}"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    size_mb = dest.stat().st_size / 1e6
    log(f"testbin: built {name} {version} in {time.monotonic() - started:.0f}s ({size_mb:.0f} MB) -> {dest}")


def main() -> int:
    binaries = ensure_binaries()
    print(f"kube-apiserver {KUBE_VERSION}: {binaries.kube_apiserver}")
    print(f"etcd {ETCD_VERSION}: {binaries.etcd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
