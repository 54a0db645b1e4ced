"""The stack's Go binaries, built from their Go modules and cached by version.

Three wrapper modules in ``devstack/testbin/<module>`` pin every dependency (committed
``go.mod``/``go.sum``), so a cold machine needs only a Go toolchain (>= 1.26) and access to the Go
module proxy; a warm machine finds every binary in :func:`cache_dir` and builds nothing.

``stack`` holds Kubernetes, etcd, helm and MinIO in one module graph: one version of every shared
dependency (client-go, grpc, otel, protobuf, x/*), so each shared package is compiled once, and one
``go build`` links them all. kwok v0.8.0 needs Kubernetes 1.36 libraries the 1.34 commands cannot be
built with, so it has a module of its own, built alongside. Gitea (the stack's git forge) shares almost
nothing with either and has replace directives of its own: a third module, also built alongside.

``python -m devstack.testbin`` builds (if needed) and prints the paths.

MinIO (AGPL) is built here as a development server for the local stack only: nothing in the product
imports or ships it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KUBE_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.4"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.19.5"  # the newest helm on client-go v0.34, the Kubernetes libraries of KUBE_VERSION
# The module proxy's pseudo-version of github.com/minio/minio (the project publishes no module tags).
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
MINIO_RELEASE = "2026-02-12T20:18:48Z"  # the commit time of MINIO_VERSION, in MinIO's release format
GITEA_VERSION = "v1.27.3"

_MODULES_DIR = Path(__file__).resolve().parent / "testbin"


@dataclass(frozen=True)
class Tool:
    """One binary: which wrapper module builds which package, and how to tell the result is right."""

    name: str
    version: str
    module: str
    package: str
    ldflags: str
    version_args: tuple[str, ...] = ("--version",)
    version_text: str = ""  # what ``version_args`` must print (default: the version without its "v")
    built_as: str = ""  # the file ``go build -o <dir>/`` names it (default: ``name``)
    tags: tuple[str, ...] = ("notest",)  # build tags (``notest`` is the one Kubernetes' own builds set)
    # Folders of the package's module copied next to the binary (``<name>-<version>/<folder>``), for a
    # binary that reads files at run time; copied before the binary is moved in, so a cached binary
    # always has them.
    assets: tuple[str, ...] = ()

    def path(self, cache: Path) -> Path:
        return cache / f"{self.name}-{self.version}" / self.name

    def expected_version_text(self) -> str:
        return self.version_text or self.version.removeprefix("v")

    def output_name(self) -> str:
        return self.built_as or self.name

    def assets_dir(self, cache: Path) -> Path:
        """Where :attr:`assets` are copied: the binary's own folder."""
        return self.path(cache).parent


def _kube_ldflags() -> str:
    major, minor = KUBE_VERSION.removeprefix("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return (
        f"-s -w -X {pkg}.gitVersion={KUBE_VERSION} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} "
        f"-X {pkg}.gitTreeState=clean"
    )


def _kube(name: str) -> Tool:
    return Tool(
        name=name,
        version=KUBE_VERSION,
        module="stack",
        package=f"k8s.io/kubernetes/cmd/{name}",
        ldflags=_kube_ldflags(),
        version_args=("version", "--client") if name == "kubectl" else ("--version",),
    )


def _helm_ldflags() -> str:
    pkg = "helm.sh/helm/v3"
    # As helm's Makefile: the Kubernetes version helm assumes offline is its client-go's (v0.34 -> 1.34).
    minor = KUBE_VERSION.split(".")[1]
    return (
        f"-s -w -X {pkg}/internal/version.version={HELM_VERSION} "
        f"-X {pkg}/internal/version.gitTreeState=clean "
        f"-X {pkg}/pkg/lint/rules.k8sVersionMajor=1 -X {pkg}/pkg/lint/rules.k8sVersionMinor={minor} "
        f"-X {pkg}/pkg/chartutil.k8sVersionMajor=1 -X {pkg}/pkg/chartutil.k8sVersionMinor={minor}"
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
    name="etcd",
    version=ETCD_VERSION,
    module="stack",
    package="go.etcd.io/etcd/server/v3",
    ldflags="-s -w",
    built_as="server",  # go build names a /vN module's command after the element before it
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
    module="stack",
    package="helm.sh/helm/v3/cmd/helm",
    ldflags=_helm_ldflags(),
    version_args=("version", "--short"),
    version_text=HELM_VERSION,
)
MINIO = Tool(
    name="minio",
    version=MINIO_VERSION,
    module="stack",
    package="github.com/minio/minio",
    ldflags=_minio_ldflags(),
    version_text="RELEASE." + MINIO_RELEASE.replace(":", "-"),
)

# Gitea v1.27 declares the module path gitea.dev (not served by the proxy): the wrapper requires
# gitea.dev and replaces it by code.gitea.io/gitea, the same code under the path the proxy serves.
# SQLite needs no tag and no cgo any more: since v1.27 Gitea's default driver is modernc.org/sqlite
# (pure Go); the old `sqlite sqlite_unlock_notify` tags select nothing now (mattn's cgo driver needs
# `sqlite_mattn`). The `bindata` tag would embed bindata.dat files that `go generate` makes (and npm,
# for the frontend): they are not in the module zip. Without it Gitea reads `options/` and
# `templates/` from `[server] STATIC_ROOT_PATH` at run time, so both are copied from the module next
# to the binary (14 MB). `options/` is required: without its locales `gitea web` exits at start
# ("translation is missing for task update_mirrors"). `templates/` only serves the web pages (without
# it the API and git over HTTP work, every page is a 500); it is kept so that a human can look at
# repositories and a hook's deliveries. The compiled frontend (`public/assets`, built by npm) is not
# needed: pages render unstyled.
GITEA = Tool(
    name="gitea",
    version=GITEA_VERSION,
    module="gitea",
    package="gitea.dev",
    ldflags=f"-s -w -X main.Version={GITEA_VERSION.removeprefix('v')}",
    built_as="gitea.dev",  # go build names a command after its package path's last element
    tags=(),
    assets=("options", "templates"),
)

TOOLS: tuple[Tool, ...] = (
    KUBE_APISERVER,
    ETCD,
    KUBE_CONTROLLER_MANAGER,
    KUBE_SCHEDULER,
    KWOK,
    KUBECTL,
    MINIO,
    HELM,
    GITEA,
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
    gitea: Path


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
    if all(_ready(tool.path(cache)) for tool in TOOLS):
        return binaries

    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".build.lock", log):
        # Another process may have built some while we waited for the lock.
        missing = [tool for tool in TOOLS if not _ready(tool.path(cache))]
        by_module: dict[str, list[Tool]] = {}
        for tool in missing:
            by_module.setdefault(tool.module, []).append(tool)
        # The modules build side by side: one `go build` alone leaves a core idle while it links a
        # binary or compiles one large package (MinIO's cmd), and the Go build cache is safe to share.
        with ThreadPoolExecutor(max_workers=len(by_module) or 1) as pool:
            futures = [pool.submit(_build, module, tools, cache, log) for module, tools in by_module.items()]
            errors = [str(err) for err in (f.exception() for f in futures) if err is not None]
        if errors:
            raise RuntimeError("; ".join(errors))
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


def build_command(go: str, tools: list[Tool], out_dir: Path) -> list[str]:
    """One `go build` for every tool of one module: shared packages are compiled once, for all.

    ``-X`` settings of every tool go into one ``-ldflags``; the linker applies each to the binaries
    that hold the variable and ignores it elsewhere. The tags are every tool's (one module's tools
    share them: ``notest`` for the ``stack`` module, none for Gitea's).
    """
    ldflags = " ".join(dict.fromkeys(flag for tool in tools for flag in _split_ldflags(tool.ldflags)))
    tags = ",".join(dict.fromkeys(tag for tool in tools for tag in tool.tags))
    return [
        go,
        "build",
        "-mod=readonly",  # the committed go.sum is the source of truth
        "-trimpath",
        *(["-tags", tags] if tags else []),
        "-ldflags",
        ldflags,
        "-o",
        f"{out_dir}/",
        *(tool.package for tool in tools),
    ]


def _split_ldflags(ldflags: str) -> list[str]:
    """``"-s -w -X a=b -X c=d"`` -> ``["-s", "-w", "-X a=b", "-X c=d"]`` (each -X kept with its value)."""
    parts = ldflags.split()
    flags: list[str] = []
    i = 0
    while i < len(parts):
        if parts[i] == "-X" and i + 1 < len(parts):
            flags.append(f"-X {parts[i + 1]}")
            i += 2
        else:
            flags.append(parts[i])
            i += 1
    return flags


def _build(module: str, tools: list[Tool], cache: Path, log: Callable[[str], None]) -> None:
    go = shutil.which("go")
    if go is None:
        names = ", ".join(f"{tool.name} {tool.version}" for tool in tools)
        raise RuntimeError(
            f"testbin: {names} not cached in {cache} and no `go` is on PATH; install Go >= 1.26 (it needs "
            "proxy.golang.org) or point CUBEPAAS_TESTBIN_CACHE at a directory holding the prebuilt binaries"
        )
    env = dict(os.environ, CGO_ENABLED="0", GOWORK="off")
    names = " ".join(tool.name for tool in tools)
    log(f"testbin: building {names} from devstack/testbin/{module} (a cold build takes minutes) ...")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f".build-{module}-", dir=cache) as tmp:
        out_dir = Path(tmp)
        result = subprocess.run(
            build_command(go, tools, out_dir), cwd=_MODULES_DIR / module, env=env, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"testbin: `go build` of {names} failed (exit {result.returncode})")
        for tool in tools:
            built = out_dir / tool.output_name()
            check = subprocess.run(
                [str(built), *tool.version_args], capture_output=True, text=True, check=False, timeout=60
            )
            if check.returncode != 0 or tool.expected_version_text() not in check.stdout + check.stderr:
                raise RuntimeError(
                    f"testbin: built {tool.name} does not report {tool.expected_version_text()}: "
                    f"{check.stdout!r} {check.stderr!r}"
                )
            dest = tool.path(cache)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if tool.assets:
                _copy_assets(go, module, tool, cache, env, out_dir)
            os.replace(built, dest)
            log(f"testbin: {tool.name} {tool.version} ({dest.stat().st_size / 1e6:.0f} MB) -> {dest}")
    log(f"testbin: built {names} in {time.monotonic() - started:.0f}s")


def _copy_assets(go: str, module: str, tool: Tool, cache: Path, env: dict[str, str], tmp: Path) -> None:
    """Copy ``tool.assets`` from its module's folder (in the module cache) next to its binary.

    Each folder is staged in the build's temporary folder (in the cache, so on the same file system),
    made writable (the module cache's are read-only) and renamed into place; the binary is moved in
    only after that, so a cached binary always has complete folders beside it.
    """
    listed = subprocess.run(
        [go, "list", "-mod=readonly", "-f", "{{.Module.Dir}}", tool.package],
        cwd=_MODULES_DIR / module, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    source = Path(listed.stdout.strip())
    if listed.returncode != 0 or not source.is_dir():
        raise RuntimeError(f"testbin: the module folder of {tool.package} not found: {listed.stderr!r}")
    dest_dir = tool.assets_dir(cache)
    for folder in tool.assets:
        staged = tmp / f"assets-{folder}"
        shutil.copytree(source / folder, staged, copy_function=shutil.copyfile)
        for path in (staged, *staged.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        dest = dest_dir / folder
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staged, dest)


def main() -> int:
    cache = cache_dir()
    ensure_binaries()
    for tool in TOOLS:
        print(f"{tool.name} {tool.version}: {tool.path(cache)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
