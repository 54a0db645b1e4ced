"""The stack's Go binaries, built from their Go modules and cached by version.

Each wrapper module in ``devstack/testbin/<module>`` pins every dependency (committed
``go.mod``/``go.sum``), so a cold machine needs only a Go toolchain (>= 1.26) and access to the Go
module proxy; a warm machine finds every binary in :func:`cache_dir` and builds nothing.

``python -m devstack.testbin`` builds (if needed) and prints the paths.

MinIO (AGPL) is built here as a development server for the local stack only: nothing in the product
imports or ships it.
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
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
# The module proxy's pseudo-version of github.com/minio/minio (the project publishes no module tags).
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
MINIO_RELEASE = "2026-02-12T20:18:48Z"  # the commit time of MINIO_VERSION, in MinIO's release format

_MODULES_DIR = Path(__file__).resolve().parent / "testbin"


@dataclass(frozen=True)
class Tool:
    """One binary: which wrapper module builds which package, and how to tell the result is right."""

    name: str
    version: str
    module: str
    package: str
    ldflags: str
    tags: tuple[str, ...] = ()
    version_args: tuple[str, ...] = ("--version",)
    version_text: str = ""  # what ``version_args`` must print (default: the version without its "v")

    def path(self, cache: Path) -> Path:
        return cache / f"{self.name}-{self.version}" / self.name

    def expected_version_text(self) -> str:
        return self.version_text or self.version.removeprefix("v")


def _kube_ldflags() -> str:
    major, minor = KUBE_VERSION.removeprefix("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return (
        f"-s -w -X {pkg}.gitVersion={KUBE_VERSION} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} "
        f"-X {pkg}.gitTreeState=clean"
    )


def _kube(name: str) -> Tool:
    # The same flags for every k8s.io/kubernetes command, so they share the Go build cache.
    return Tool(
        name=name,
        version=KUBE_VERSION,
        module="kubernetes",
        package=f"k8s.io/kubernetes/cmd/{name}",
        ldflags=_kube_ldflags(),
        tags=("notest",),
        version_args=("version", "--client") if name == "kubectl" else ("--version",),
    )


def _helm_ldflags() -> str:
    pkg = "helm.sh/helm/v3"
    # As helm's Makefile: the Kubernetes version helm assumes offline is its client-go's (v0.37 -> 1.37).
    return (
        f"-s -w -X {pkg}/internal/version.version={HELM_VERSION} "
        f"-X {pkg}/internal/version.gitTreeState=clean "
        f"-X {pkg}/pkg/lint/rules.k8sVersionMajor=1 -X {pkg}/pkg/lint/rules.k8sVersionMinor=37 "
        f"-X {pkg}/pkg/chartutil.k8sVersionMajor=1 -X {pkg}/pkg/chartutil.k8sVersionMinor=37"
    )


def _minio_ldflags() -> str:
    pkg = "github.com/minio/minio/cmd"
    commit = MINIO_VERSION.rsplit("-", 1)[1]
    tag = "RELEASE." + MINIO_RELEASE.replace(":", "-")
    return (
        f"-s -w -X {pkg}.Version={MINIO_RELEASE} -X {pkg}.ReleaseTag={tag} "
        f"-X {pkg}.CommitID={commit} -X {pkg}.ShortCommitID={commit} "
        f"-X {pkg}.CopyrightYear={MINIO_RELEASE[:4]}"
    )


KUBE_APISERVER = _kube("kube-apiserver")
KUBE_CONTROLLER_MANAGER = _kube("kube-controller-manager")
KUBE_SCHEDULER = _kube("kube-scheduler")
KUBECTL = _kube("kubectl")
ETCD = Tool(
    name="etcd", version=ETCD_VERSION, module="etcd", package="go.etcd.io/etcd/server/v3", ldflags="-s -w"
)
KWOK = Tool(
    name="kwok",
    version=KWOK_VERSION,
    module="kwok",
    package="sigs.k8s.io/kwok/cmd/kwok",
    ldflags=f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION.removeprefix('v')}",
)
HELM = Tool(
    name="helm",
    version=HELM_VERSION,
    module="helm",
    package="helm.sh/helm/v3/cmd/helm",
    ldflags=_helm_ldflags(),
    version_args=("version", "--short"),
    version_text=HELM_VERSION,
)
MINIO = Tool(
    name="minio",
    version=MINIO_VERSION,
    module="minio",
    package="github.com/minio/minio",
    ldflags=_minio_ldflags(),
    version_text="RELEASE." + MINIO_RELEASE.replace(":", "-"),
)

# Build order on a cold machine: the apiserver first (it fills most of the Go build cache the other
# Kubernetes commands reuse), then what the stack needs to start, then the tools.
TOOLS: tuple[Tool, ...] = (
    KUBE_APISERVER,
    ETCD,
    KUBE_CONTROLLER_MANAGER,
    KUBE_SCHEDULER,
    KWOK,
    KUBECTL,
    MINIO,
    HELM,
)


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    helm: Path
    minio: Path


def cache_dir() -> Path:
    """``$CUBEPAAS_TESTBIN_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/cubepaas-devstack/bin``."""
    explicit = os.environ.get("CUBEPAAS_TESTBIN_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cubepaas-devstack" / "bin"


def _ready(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def ensure_binaries(log: Callable[[str], None] = print) -> Binaries:
    """Return the cached binaries, building whichever is missing (once, under a file lock)."""
    cache = cache_dir()
    binaries = Binaries(**{tool.name.replace("-", "_"): tool.path(cache) for tool in TOOLS})
    missing = [tool for tool in TOOLS if not _ready(tool.path(cache))]
    if not missing:
        return binaries

    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".build.lock", log):
        # Another process may have built some while we waited for the lock.
        for tool in missing:
            if not _ready(tool.path(cache)):
                _build(tool, tool.path(cache), log)
    return binaries


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


def _build(tool: Tool, dest: Path, log: Callable[[str], None]) -> None:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(
            f"testbin: {tool.name} {tool.version} is not cached in {dest.parent} and no `go` is on PATH; "
            "install Go >= 1.26 (it needs proxy.golang.org) or point CUBEPAAS_TESTBIN_CACHE at a "
            "directory holding the prebuilt binaries"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    env = dict(os.environ, CGO_ENABLED="0", GOWORK="off")
    tags = ["-tags", ",".join(tool.tags)] if tool.tags else []
    cmd = [
        go,
        "build",
        "-mod=readonly",  # the committed go.sum is the source of truth
        "-trimpath",
        *tags,
        "-ldflags",
        tool.ldflags,
        "-o",
        str(tmp),
        tool.package,
    ]
    log(f"testbin: building {tool.name} {tool.version} (a cold build takes minutes) ...")
    started = time.monotonic()
    try:
        result = subprocess.run(cmd, cwd=_MODULES_DIR / tool.module, env=env, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"testbin: `go build` of {tool.name} {tool.version} failed (exit {result.returncode})"
            )
        check = subprocess.run(
            [str(tmp), *tool.version_args], capture_output=True, text=True, check=False, timeout=60
        )
        if check.returncode != 0 or tool.expected_version_text() not in check.stdout + check.stderr:
            raise RuntimeError(
                f"testbin: built {tool.name} does not report {tool.expected_version_text()}: "
                f"{check.stdout!r} {check.stderr!r}"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    size_mb = dest.stat().st_size / 1e6
    took = time.monotonic() - started
    log(f"testbin: built {tool.name} {tool.version} in {took:.0f}s ({size_mb:.0f} MB) -> {dest}")


def main() -> int:
    cache = cache_dir()
    ensure_binaries()
    for tool in TOOLS:
        print(f"{tool.name} {tool.version}: {tool.path(cache)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
