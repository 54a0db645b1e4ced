"""The local stack as a Python API (used by ``python -m devstack``, the pytest harness and the demo).

    stack = Stack()            # state folder: $DEVSTACK_DIR or <repo>/.devstack
    env = stack.up()           # start what is not running, wait until healthy, return the env
    stack.up(data_plane=True)  # also the second cluster `dp1` (devstack.cluster), until `down`
    stack.status()             # [ComponentStatus, ...]
    stack.restart_component("temporal")
    stack.down()               # stop exactly what it started (pid + start time), keep data

Every process runs detached (own session) and is recorded in ``state.json`` with its pid and
``/proc`` start time; ``down`` stops only processes whose pid *and* start time still match.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devstack.cluster import DATA_PLANES, DP1, MANAGEMENT, Cluster
from devstack.components import (
    BY_NAME,
    COMPONENTS,
    DATA_PLANE_COMPONENTS,
    Component,
    Context,
    Unhealthy,
    file_lock,
    tools_env,
)
from devstack.pki import Pki, ensure_pki, write_kubeconfig
from devstack.proc import free_port, is_running, port_is_free, proc_start_time, spawn, tail, terminate
from devstack.state import (
    ComponentState,
    StackState,
    atomic_write,
    ensure_credentials,
    load_state,
    parse_env,
    read_credentials,
    render_env,
    save_state,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
LOG_TAIL_LINES = 30
STOP_GRACE_SECONDS = 10.0
NAME_WIDTH = max(len(name) for name in BY_NAME)  # the column of component names in reports


class StackError(RuntimeError):
    """The stack could not be brought up (or is not up); the message says why, with log lines."""


def default_dir() -> Path:
    """``$DEVSTACK_DIR``, else ``.devstack`` in the repository root."""
    explicit = os.environ.get("DEVSTACK_DIR")
    return Path(explicit).expanduser().resolve() if explicit else REPO_ROOT / ".devstack"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    url: str
    pid: int | None
    running: bool
    healthy: bool
    detail: str
    available: bool = True

    def line(self) -> str:
        pid = "-" if self.pid is None else str(self.pid)
        health = "healthy" if self.healthy else ("UNHEALTHY" if self.running else "DOWN")
        if not self.available:
            health = "n/a"
        text = f"{self.name:<{NAME_WIDTH}} {health:<9} pid {pid:<8} {self.url}"
        return f"{text}  ({self.detail})" if self.detail else text


class Stack:
    def __init__(self, directory: Path | str | None = None, *, log: Callable[[str], None] = print) -> None:
        self.dir = Path(directory).expanduser().resolve() if directory is not None else default_dir()
        self.log = log

    # ---- paths -------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def env_path(self) -> Path:
        return self.dir / "env"

    @property
    def kubeconfig_path(self) -> Path:
        return MANAGEMENT.kubeconfig(self.dir)

    def kubeconfig_of(self, cluster: Cluster) -> Path:
        """A cluster's admin kubeconfig (``<dir>/dp1.kubeconfig`` for the data plane ``dp1``)."""
        return cluster.kubeconfig(self.dir)

    def pki_of(self, cluster: Cluster) -> Pki:
        """A cluster's CA, certificates and keys (``<dir>/dp1/pki`` for ``dp1``)."""
        return Pki(cluster.state_dir(self.dir) / "pki")

    @property
    def ca_cert_path(self) -> Path:
        """The apiserver's CA (for clients that authenticate by token rather than kubeconfig)."""
        return self.pki_of(MANAGEMENT).ca_cert

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    # ---- public API ----------------------------------------------------------------------------------
    def up(self, *, started_by: str = "cli", data_plane: bool = False) -> dict[str, str]:
        """Start every component that is not running and wait until all are healthy.

        Already up and healthy: says so, changes nothing. Partially up: starts only what is dead
        (on its previous ports when they are free, so the env stays valid). On failure: stops what
        this call started and raises :class:`StackError` with the failing component's last log lines.

        ``data_plane`` adds the second cluster ``dp1`` to the stack. It stays part of it until
        :meth:`down`: a later ``up`` without the flag neither stops it nor leaves it half dead.
        """
        began = time.monotonic()
        with self._locked():
            state = load_state(self.state_path)
            planes = _data_planes(state.data_planes, add=DP1 if data_plane else None)
            ctx = self._context(planes=planes)
            components = _components(planes)
            wanted = [c for c in components if c.unavailable() is None]
            for component in components:
                reason = component.unavailable()
                if reason:
                    self.log(f"{component.name:<{NAME_WIDTH}} skipped: {reason}")
            running = {
                c.name for c in wanted if c.name in state.components and state.components[c.name].running()
            }
            to_start = [c for c in wanted if c.name not in running]
            for name in running:
                ctx.ports[name] = self._ports_of(state.components[name])
            if not running:
                state.started_by = started_by

            if not to_start:
                problems = self._check_all(ctx, state, [BY_NAME[n] for n in running], deadline=15.0)
                if problems:
                    raise StackError(
                        "the stack is up but unhealthy (try `python -m devstack down` then `up`):\n"
                        + "\n".join(problems)
                    )
                if self._record_data_planes(state, planes):
                    self._write_outputs(ctx, state)
                self.log(f"devstack: already up in {self.dir} (nothing changed); env: {self.env_path}")
                return self.env()

            self._assign_ports(ctx, state, to_start)
            started = self._start(ctx, state, to_start, running)
            self._record_data_planes(state, planes)
            self._write_outputs(ctx, state)
            names = ", ".join(c.name for c in started)
            self.log(
                f"devstack: up in {time.monotonic() - began:.1f}s (started {names}); env: {self.env_path}"
            )
            return self.env()

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop every process this stack started (by pid + start time); keep data unless ``purge``.

        The data planes go too: stopped, and no longer part of the stack for the next ``up``.
        """
        reports: list[str] = []
        if not self.dir.exists():
            return [f"nothing to stop: {self.dir} does not exist"]
        with self._locked():
            state = load_state(self.state_path)
            for component in reversed(BY_NAME.values()):
                entry = state.components.get(component.name)
                if entry is None:
                    continue
                outcome = terminate(entry.pid, entry.start_time, STOP_GRACE_SECONDS)
                reports.append(f"{component.name:<{NAME_WIDTH}} pid {entry.pid:<8} {outcome}")
                self.log(reports[-1])
            state.data_planes = []
            save_state(self.state_path, state)  # ports are remembered for the next `up`
        if purge:
            self._purge()
            reports.append(f"purged {self.dir}")
            self.log(reports[-1])
        return reports

    def status(self) -> list[ComponentStatus]:
        """Every component of the stack: the default ones, and the data planes' while they are part of it."""
        state = load_state(self.state_path)
        ctx = self._context(create=False)
        for name, known in state.components.items():
            ctx.ports[name] = self._ports_of(known)
        result: list[ComponentStatus] = []
        for component in _components(_data_planes(state.data_planes)):
            entry = state.components.get(component.name)
            reason = component.unavailable()
            if reason is not None:
                result.append(ComponentStatus(component.name, "", None, False, False, reason, False))
                continue
            if entry is None:
                result.append(ComponentStatus(component.name, "", None, False, False, "never started"))
                continue
            running = entry.running()
            healthy, detail = False, ""
            if running:
                try:
                    component.check(ctx.for_cluster(component.cluster), ctx.ports[component.name])
                    healthy = True
                except Unhealthy as err:
                    detail = str(err)
            else:
                detail = f"not running; log {entry.log}"
            result.append(ComponentStatus(component.name, entry.url, entry.pid, running, healthy, detail))
        return result

    def status_of(self, name: str) -> ComponentStatus:
        return next(s for s in self.status() if s.name == name)

    def is_up(self) -> bool:
        """All available components running and healthy."""
        return all(s.healthy for s in self.status() if s.available)

    def env(self) -> dict[str, str]:
        """The variables of ``<dir>/env`` (KUBECONFIG, TEMPORAL_ADDRESS, S3_ENDPOINT, ...)."""
        try:
            return parse_env(self.env_path.read_text())
        except FileNotFoundError as err:
            raise StackError(f"no {self.env_path}: run `python -m devstack up` first") from err

    def started_by(self) -> str:
        return load_state(self.state_path).started_by

    def stop_component(self, name: str) -> str:
        """Stop one component (e.g. to simulate an outage); ``start_component``/``up`` bring it back."""
        component = BY_NAME[name]
        with self._locked():
            entry = load_state(self.state_path).components.get(component.name)
            if entry is None:
                return "not running"
            outcome = terminate(entry.pid, entry.start_time, STOP_GRACE_SECONDS)
            self.log(f"{name:<{NAME_WIDTH}} pid {entry.pid:<8} {outcome}")
            return outcome

    def start_component(self, name: str) -> None:
        """Start one stopped component on its previous ports (no-op if it is running) and wait for it."""
        component = BY_NAME[name]
        with self._locked():
            state = load_state(self.state_path)
            ctx = self._context(planes=_data_planes(state.data_planes))
            for other, known in state.components.items():
                ctx.ports[other] = self._ports_of(known)
            entry = state.components.get(name)
            if entry is not None and entry.running():
                return
            ctx.ports.pop(name, None)
            self._assign_ports(ctx, state, [component])
            running = {n for n, e in state.components.items() if e.running()}
            self._start(ctx, state, [component], running)
            self._write_outputs(ctx, state)

    def restart_component(self, name: str) -> None:
        """Stop then start one component on the same ports (Temporal keeps its sqlite history)."""
        self.stop_component(name)
        self.start_component(name)

    def jenkins_lite_restart(self) -> None:
        self.restart_component("jenkins")

    # ---- harness leases: several pytest sessions may share one stack ------------------------------------
    def acquire_lease(self) -> Path:
        """Record that this process uses the stack (see :meth:`release_lease`)."""
        leases = self.dir / "leases"
        leases.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        path = leases / f"{pid}-{proc_start_time(pid)}"
        path.touch()
        return path

    def release_lease(self, lease: Path) -> int:
        """Drop ``lease``; returns how many *other* live processes still hold one."""
        lease.unlink(missing_ok=True)
        live = 0
        for other in (self.dir / "leases").glob("*-*"):
            pid_text, _, start_text = other.name.partition("-")
            try:
                alive = is_running(int(pid_text), int(start_text))
            except ValueError:
                alive = False
            if alive:
                live += 1
            else:
                other.unlink(missing_ok=True)
        return live

    # ---- internals -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.dir / ".lock"):
            yield

    def _context(self, *, create: bool = True, planes: Iterable[Cluster] = ()) -> Context:
        """The management cluster's context (see ``Context.for_cluster`` for the others'), with the
        PKI of every cluster in ``planes`` made when missing.

        ``create=False`` (status) makes nothing on disk: it only reads what ``up`` made."""
        if create:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.dir.chmod(0o700)
            pki = ensure_pki(self.dir / "pki", MANAGEMENT.ca_name)
            for plane in planes:
                ensure_pki(plane.state_dir(self.dir) / "pki", plane.ca_name)
            creds = ensure_credentials(self.dir / "credentials.json")
        else:
            pki = Pki(self.dir / "pki")
            creds = read_credentials(self.dir / "credentials.json")
        return Context(dir=self.dir, creds=creds, pki=pki, log=self.log)

    @staticmethod
    def _ports_of(entry: ComponentState) -> dict[str, int]:
        return dict(entry.ports) if entry.ports else {"main": entry.port}

    def _assign_ports(self, ctx: Context, state: StackState, components: list[Component]) -> None:
        """Previous ports when still free (stable env across restarts), else fresh free ones."""
        taken = {p for ports in ctx.ports.values() for p in ports.values()}
        for name, entry in state.components.items():
            if name not in {c.name for c in components}:
                taken.update(self._ports_of(entry).values())
        for component in components:
            previous = (
                self._ports_of(state.components[component.name]) if component.name in state.components else {}
            )
            ports: dict[str, int] = {}
            for port_name in component.port_names:
                port = previous.get(port_name)
                listens = port_name not in component.target_ports
                if port is None or port in taken or (listens and not _wait_port_free(port, 3.0)):
                    port = free_port(exclude=taken)
                ports[port_name] = port
                taken.add(port)
            ctx.ports[component.name] = ports

    def _start(
        self, ctx: Context, state: StackState, components: list[Component], running: set[str]
    ) -> list[Component]:
        """Start ``components`` concurrently (each after its dependencies are healthy)."""
        lock = threading.Lock()
        started: dict[str, ComponentState] = {}
        futures: dict[str, Future[None]] = {}
        failures: list[str] = []

        def launch(component: Component) -> None:
            for dep in component.deps:
                if dep in futures:
                    if futures[dep].exception() is not None:
                        raise StackError(f"not started because {dep} failed")
                elif dep not in running:
                    raise StackError(f"{component.name} needs {dep}, which is not running")
            own = ctx.for_cluster(component.cluster)
            component.prepare(own)
            ports = ctx.ports[component.name]
            log_path = self.log_path(component.name)
            offset = log_path.stat().st_size if log_path.exists() else 0
            began = time.monotonic()
            tail_note = f"last {LOG_TAIL_LINES} lines of {log_path}"
            proc = spawn(component.command(own, ports), log_path, env=component.child_env(own), cwd=self.dir)
            entry = ComponentState(
                name=component.name,
                pid=proc.pid,
                start_time=proc.start_time,
                port=ports["main"],
                url=component.url(ports),
                log=str(log_path),
                ports=dict(ports),
            )
            with lock:
                started[component.name] = entry
            deadline = began + component.startup_timeout
            last_error = "no health check yet"
            while True:
                if not entry.running():
                    raise StackError(
                        f"{component.name} exited during start-up; {tail_note}:\n"
                        + tail(log_path, LOG_TAIL_LINES, offset)
                    )
                try:
                    component.check(own, ports)
                    break
                except Unhealthy as err:
                    last_error = str(err)
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{component.name} not healthy after {component.startup_timeout:.0f}s "
                        f"({last_error}); {tail_note}:\n" + tail(log_path, LOG_TAIL_LINES, offset)
                    )
                time.sleep(0.2)
            took = f"{time.monotonic() - began:.1f}s"
            self.log(f"{component.name:<{NAME_WIDTH}} healthy   pid {entry.pid:<8} {entry.url}  ({took})")

        with ThreadPoolExecutor(max_workers=len(components), thread_name_prefix="devstack-up") as pool:
            for component in components:
                futures[component.name] = pool.submit(launch, component)
            for name, future in futures.items():
                try:
                    future.result()
                except Exception as err:
                    failures.append(f"{name}: {err}")

        if failures:
            for name, entry in started.items():
                outcome = terminate(entry.pid, entry.start_time, STOP_GRACE_SECONDS)
                self.log(f"{name:<{NAME_WIDTH}} pid {entry.pid:<8} {outcome} (start-up failed)")
            # Keep the ports of what did start, so a retry reuses them; nothing of ours runs now.
            state.components.update(started)
            save_state(self.state_path, state)
            raise StackError("devstack up failed:\n" + "\n".join(failures))
        state.components.update(started)
        save_state(self.state_path, state)
        return [c for c in components if c.name in started]

    def _check_all(
        self, ctx: Context, state: StackState, components: list[Component], deadline: float
    ) -> list[str]:
        problems: list[str] = []
        for component in components:
            ports = ctx.ports[component.name]
            end = time.monotonic() + deadline
            while True:
                try:
                    component.check(ctx.for_cluster(component.cluster), ports)
                    break
                except Unhealthy as err:
                    if time.monotonic() > end:
                        problems.append(f"{component.name}: {err}")
                        break
                time.sleep(0.3)
        return problems

    def _record_data_planes(self, state: StackState, planes: list[Cluster]) -> bool:
        """Remember ``planes`` as part of the stack (for ``status`` and later ``up``s); True if new."""
        names = [plane.name for plane in planes]
        if state.data_planes == names:
            return False
        state.data_planes = names
        save_state(self.state_path, state)
        return True

    def _write_outputs(self, ctx: Context, state: StackState) -> None:
        """The env file and every cluster's admin kubeconfig; a data plane's only while it is part of
        the stack (its ports stay in ``state.json`` after ``down``, for the next ``up --data-plane``)."""
        planes = _data_planes(state.data_planes)
        env: dict[str, str] = {"DEVSTACK_DIR": str(self.dir), **tools_env(ctx)}
        for component in _components(planes):
            if component.name in ctx.ports and component.name in state.components:
                env.update(component.env(ctx.for_cluster(component.cluster), ctx.ports[component.name]))
        for cluster in (MANAGEMENT, *planes):
            if cluster.component("kube-apiserver") in ctx.ports:
                own = ctx.for_cluster(cluster)
                write_kubeconfig(own.pki, own.apiserver_url(), own.kubeconfig, cluster_name=cluster.name)
        atomic_write(self.env_path, render_env(env))

    def _purge(self) -> None:
        looks_ours = self.dir.name == ".devstack" or self.state_path.exists() or self.env_path.exists()
        if not looks_ours:
            raise StackError(f"refusing to purge {self.dir}: it does not look like a devstack state folder")
        state = load_state(self.state_path)
        still = [n for n, e in state.components.items() if e.running()]
        if still:
            raise StackError(f"refusing to purge {self.dir}: still running: {', '.join(still)}")
        shutil.rmtree(self.dir)


def _data_planes(recorded: Iterable[str], add: Cluster | None = None) -> list[Cluster]:
    """The data planes that are part of the stack (``recorded`` in its state), plus ``add``."""
    planes = [DATA_PLANES[name] for name in recorded if name in DATA_PLANES]
    if add is not None and add not in planes:
        planes.append(add)
    return planes


def _components(planes: Iterable[Cluster]) -> list[Component]:
    """The default stack's components, then those of each data plane in ``planes``."""
    return [*COMPONENTS, *(c for plane in planes for c in DATA_PLANE_COMPONENTS[plane])]


def _wait_port_free(port: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while True:
        if port_is_free(port):
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
