"""What the CR bridge costs with many finished PipelineExecutions: ``python -m devstack.bench_bridge``.

:func:`measure_bridge` starts its own ``python -m worker`` (unique task queue, watching only a fresh
namespace, its own health port, no metrics port) twice: once with no PipelineExecution in the namespace
and once after ``finished`` finished ones were created there directly (no workflow ever ran for them;
each is created, then given a terminal status through the status subresource, as fixtures). For each
start it measures how long the process takes to answer ``/readyz`` (the bridge has listed and is
watching), its resident memory, and how long a new run then takes to get its workflow (CR created ->
``describe`` of the workflow id the bridge uses finds it in Temporal). With the second worker still
running it creates ``finished`` more finished CRs and reads the resident memory again (what the bridge
keeps per finished CR it sees through its watch). At the end it deletes every PipelineExecution of the
namespace (deletecollection) and the namespace.

Figures are single samples on a shared, noisy machine: compare them as ratios (10,000 CRs vs none), not
as absolute targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from crds.execution import PipelineExecution
from crds.install import install_crds
from crds.messages import execution_workflow_id
from crds.meta import API_VERSION, GROUP, VERSION
from devstack import proc as devproc
from devstack.stack import Stack
from worker.bridge import TASK_QUEUE_ANNOTATION

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = REPO_ROOT / "bench-output"
PLURAL = PipelineExecution.plural()
FINISHED = 10_000
CONCURRENCY = 24  # fixture requests in flight; the 2-core stack's apiserver is the limit, not the client
READY_TIMEOUT = 180.0
WORKFLOW_TIMEOUT = 120.0
POLL = 0.02  # how often readiness and the new run's workflow are polled (the figures' resolution)


class BridgeBenchError(RuntimeError):
    """A figure could not be measured; the message says why."""


@dataclass(frozen=True)
class StartFigures:
    """One worker start with ``crs`` PipelineExecutions already in its namespace."""

    crs: int
    ready_seconds: float
    """Process spawned -> ``/readyz`` answers 200 (Temporal reachable, worker polling, bridge listed)."""
    rss_ready_mib: float
    """VmRSS of the worker when ``/readyz`` first answered 200."""
    new_run_seconds: float
    """A new PipelineExecution created -> its workflow exists in Temporal (``describe`` succeeds)."""
    rss_mib: float
    """VmRSS once the new run's workflow exists (the listing has been handled by then: it came first)."""


@dataclass(frozen=True)
class BridgeFigures:
    finished: int
    """Finished PipelineExecutions created before the second start, and again while it ran."""
    empty: StartFigures
    full: StartFigures
    create_seconds: float
    """Creating ``finished`` finished CRs (create + status write each, ``CONCURRENCY`` at once)."""
    more_seconds: float
    """Creating ``finished`` more while the worker runs (create, status, then routed to its queue)."""
    rss_after_more_mib: float
    """VmRSS of the running worker after its bridge saw the ``finished`` more (and the watch is idle)."""

    def lines(self) -> list[str]:
        """Printable figures, each saying how it was measured."""
        e, f, n = self.empty, self.full, self.finished
        return [
            f"bridge: worker start -> /readyz: {e.ready_seconds:.2f} s with 0 CRs, {f.ready_seconds:.2f} s "
            f"with {n} finished (python -m worker spawned until GET /readyz = 200, polled every {POLL}s)",
            f"bridge: new run -> its workflow in Temporal: {e.new_run_seconds:.2f} s with 0 CRs, "
            f"{f.new_run_seconds:.2f} s with {n} finished (CR created until describe(workflow id) "
            f"succeeds, polled every {POLL}s, right after /readyz)",
            f"bridge: worker RSS at /readyz: {e.rss_ready_mib:.0f} MiB with 0 CRs, "
            f"{f.rss_ready_mib:.0f} MiB with {n} finished (VmRSS of /proc/<pid>/status)",
            f"bridge: worker RSS after the new run started: {e.rss_mib:.0f} MiB with 0 CRs, "
            f"{f.rss_mib:.0f} MiB with {n} finished (VmRSS)",
            f"bridge: worker RSS after {n} more finished CRs were created while it ran: "
            f"{self.rss_after_more_mib:.0f} MiB (+{self.rss_after_more_mib - f.rss_mib:.0f} MiB; VmRSS "
            "once the watch had been idle for 3 s)",
            f"bridge: creating {n} finished CRs: {self.create_seconds:.1f} s "
            f"({n / max(self.create_seconds, 1e-9):.0f}/s, create + status patch, {CONCURRENCY} at once); "
            f"{n} more while the worker ran: {self.more_seconds:.1f} s (+ a routing patch each)",
        ]


def vm_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BridgeBenchError(f"no VmRSS for pid {pid}")


# --- fixtures ---------------------------------------------------------------------------------------------


def _finished_status(i: int, now: datetime) -> dict[str, Any]:
    """A terminal status the size of a short real run's (two stages, three steps, a workflow ref)."""
    started, ended = now - timedelta(minutes=2), now - timedelta(minutes=1)
    at = {"started": started.isoformat(), "ended": ended.isoformat()}
    steps = [
        {"name": f"step-{s}", "state": "Success", "logObject": f"logs/done-{i}/{s}.log", **at} for s in (0, 1)
    ]
    return {
        "phase": "Success",
        "message": "fixture of devstack.bench_bridge",
        "duration": "1m0s",
        **at,
        "stages": [
            {
                "name": "clone",
                "state": "Success",
                **at,
                "steps": [{"name": "clone", "state": "Success", **at}],
            },
            {"name": "build", "state": "Success", **at, "steps": steps},
        ],
        "workflow": {"id": f"pe-fixture-done-{i}", "runId": str(uuid.uuid5(uuid.NAMESPACE_OID, str(i)))},
    }


def _body(name: str, run: int, queue: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "PipelineExecution",
        "metadata": {"name": name, "annotations": {TASK_QUEUE_ANNOTATION: queue}},
        "spec": {"pipelineName": "bench", "run": run, "branch": "main", "triggeredBy": "user"},
    }


def create_finished(
    api: k8s.ApiClient, namespace: str, names: list[str], queue: str, *, route_to: str | None = None
) -> float:
    """Create finished PipelineExecutions ``names``; returns the seconds it took.

    Each is created for task queue ``queue``, then gets a terminal status. With ``route_to`` it is
    annotated for that queue last, so a bridge of ``route_to`` first sees it already finished (a CR
    created without status is a new run to every bridge that handles it).
    """
    custom: Any = k8s.CustomObjectsApi(api)
    now = datetime.now(UTC)

    def one(item: tuple[int, str]) -> None:
        i, name = item
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _body(name, i + 1, queue), _preload_content=False
        )
        custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": _finished_status(i, now)},
            _preload_content=False,
        )
        if route_to is not None:
            patch = {"metadata": {"annotations": {TASK_QUEUE_ANNOTATION: route_to}}}
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, patch, _preload_content=False
            )

    began = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="bench-bridge") as pool:
        for _ in pool.map(one, enumerate(names)):
            pass
    return time.monotonic() - began


def delete_all(api: k8s.ApiClient, namespace: str) -> None:
    """Delete every PipelineExecution of ``namespace`` and wait until none is left.

    One by one, from a paged list, not by one deletecollection: that answers with every deleted
    object, and for 20,000 runs the apiserver cut the 32 MB answer off at its request timeout.
    """
    custom: Any = k8s.CustomObjectsApi(api)
    names: list[str] = []
    token: str | None = None
    while True:
        page = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, limit=500, **({"_continue": token} if token else {})
        )
        names += [item["metadata"]["name"] for item in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break

    def one(name: str) -> None:
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as err:
            if err.status != 404:
                raise

    with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="bench-delete") as pool:
        for _ in pool.map(one, names):
            pass
    devproc.wait_for(
        lambda: not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, limit=1)["items"],
        120,
        f"the PipelineExecutions of {namespace} to be deleted",
        interval=0.5,
    )


# --- the worker -----------------------------------------------------------------------------------------


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    spawned: float

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False


@contextlib.contextmanager
def worker_process(env: Mapping[str, str], queue: str, namespace: str) -> Iterator[Worker]:
    """``python -m worker`` for ``queue`` watching ``namespace``; SIGTERM (then SIGKILL) at the end."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    log_path = OUTPUT_DIR / f"worker-{queue}.log"
    port = devproc.free_port()
    worker_env = {
        **os.environ,
        **env,
        "PYTHONUNBUFFERED": "1",
        "CUBEPAAS_TASK_QUEUE": queue,
        "CUBEPAAS_WATCH_NAMESPACES": namespace,
        "CUBEPAAS_HEALTH_HOST": "127.0.0.1",
        "CUBEPAAS_HEALTH_PORT": str(port),
        "CUBEPAAS_METRICS_PORT": "0",
        "CUBEPAAS_SHUTDOWN_GRACE": "5",
    }
    with log_path.open("ab") as log:
        spawned = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            cwd=REPO_ROOT,
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Worker(proc, port, log_path, spawned)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is the worker's
                proc.wait(timeout=10)


def wait_ready(worker: Worker) -> float:
    """Seconds from spawning ``worker`` until its ``/readyz`` answers 200."""
    deadline = worker.spawned + READY_TIMEOUT
    while not worker.ready():
        if worker.proc.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {worker.proc.returncode}" if worker.proc.poll() is not None else "not ready"
            raise BridgeBenchError(
                f"python -m worker {state} after {time.monotonic() - worker.spawned:.0f}s; last lines of "
                f"{worker.log}:\n{devproc.tail(worker.log) or '<no log>'}"
            )
        time.sleep(POLL)
    return time.monotonic() - worker.spawned


def wait_rss_settled(pid: int, quiet: float = 3.0, timeout: float = 300.0) -> float:
    """VmRSS once it has not grown for ``quiet`` seconds (the bridge has caught up with its watch)."""
    deadline = time.monotonic() + timeout
    best, since = vm_rss_mib(pid), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.25)
        now = vm_rss_mib(pid)
        if now > best + 0.5:
            best, since = now, time.monotonic()
    return vm_rss_mib(pid)


# --- the figures ----------------------------------------------------------------------------------------


async def _workflow_exists(temporal: Client, workflow_id: str) -> bool:
    try:
        await temporal.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _terminate(temporal: Client, workflow_id: str) -> None:
    with contextlib.suppress(RPCError):
        await temporal.get_workflow_handle(workflow_id).terminate("devstack.bench_bridge: measured")


def measure_start(
    env: Mapping[str, str],
    api: k8s.ApiClient,
    runner: asyncio.Runner,
    temporal: Client,
    queue: str,
    namespace: str,
    crs: int,
    run: int,
    *,
    then: Callable[[Worker], None] | None = None,
) -> StartFigures:
    """Start a worker, measure it (see :class:`StartFigures`), call ``then(worker)``, stop it."""
    custom: Any = k8s.CustomObjectsApi(api)
    with worker_process(env, queue, namespace) as worker:
        ready = wait_ready(worker)
        rss_ready = vm_rss_mib(worker.proc.pid)
        name = f"new-{run}"
        began = time.monotonic()
        created = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _body(name, 100_000 + run, queue)
        )
        workflow_id = execution_workflow_id(namespace, name, created["metadata"]["uid"])
        deadline = began + WORKFLOW_TIMEOUT
        while not runner.run(_workflow_exists(temporal, workflow_id)):
            if time.monotonic() > deadline:
                raise BridgeBenchError(
                    f"no workflow {workflow_id} after {WORKFLOW_TIMEOUT:.0f}s ({worker.log})"
                )
            time.sleep(POLL)
        new_run = time.monotonic() - began
        # The run has no Pipeline and its outcome is not measured: end it, so that the next start does
        # not find an unfinished run to attach to.
        runner.run(_terminate(temporal, workflow_id))
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        rss = wait_rss_settled(worker.proc.pid, quiet=2.0)
        if then is not None:
            then(worker)
    return StartFigures(
        crs=crs, ready_seconds=ready, rss_ready_mib=rss_ready, new_run_seconds=new_run, rss_mib=rss
    )


def measure_bridge(
    env: Mapping[str, str],
    *,
    finished: int = FINISHED,
    namespace: str | None = None,
    say: Callable[[str], None] = print,
) -> BridgeFigures:
    """Measure the bridge with 0 and ``finished`` finished PipelineExecutions; returns the figures.

    ``env`` is the stack's environment (``devstack.stack.Stack().up()`` or ``.env()``: ``KUBECONFIG``,
    ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ...); the stack must be up. The CRDs are installed
    (idempotent). ``namespace`` (default ``bench-bridge-<random>``) is created, must not exist yet, and is
    deleted at the end with its PipelineExecutions. ``say`` gets progress lines; the figures' printable
    lines are :meth:`BridgeFigures.lines`. Raises :class:`BridgeBenchError` when a figure cannot be
    measured. With 10,000 it takes about 6 minutes here (fixtures ~80 s + ~200 s, deletion ~1 min).

    From another module, with the stack already up::

        figures = measure_bridge(Stack().env())  # or the env dict devstack.bench already holds
        for line in figures.lines():
            print(line)
    """
    tag = uuid.uuid4().hex[:8]
    namespace = namespace or f"bench-bridge-{tag}"
    queue = f"bench-bridge-{tag}"
    api = k8s_config.new_client_from_config(config_file=env["KUBECONFIG"])  # type: ignore[no-untyped-call]
    api.configuration.connection_pool_maxsize = CONCURRENCY + 4
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = CONCURRENCY + 4
    core: Any = k8s.CoreV1Api(api)  # the client accepts plain dicts as bodies
    try:
        install_crds(api)
        core.create_namespace({"metadata": {"name": namespace}})
        with asyncio.Runner() as runner:
            temporal = runner.run(
                Client.connect(
                    env["TEMPORAL_ADDRESS"],
                    namespace=env["TEMPORAL_NAMESPACE"],
                    data_converter=pydantic_data_converter,
                )
            )
            say(f"bench_bridge: namespace {namespace}, task queue {queue}; worker with 0 CRs")
            empty = measure_start(env, api, runner, temporal, queue, namespace, 0, 1)
            say(f"bench_bridge: creating {finished} finished PipelineExecutions")
            create_seconds = create_finished(api, namespace, [f"done-{i}" for i in range(finished)], queue)
            say(f"bench_bridge: created in {create_seconds:.1f} s; worker with {finished} finished CRs")
            more: dict[str, float] = {}

            def more_while_running(worker: Worker) -> None:
                names = [f"more-{i}" for i in range(finished)]
                say(f"bench_bridge: creating {finished} more finished CRs while the worker runs")
                more["seconds"] = create_finished(api, namespace, names, f"{queue}-fixture", route_to=queue)
                more["rss"] = wait_rss_settled(worker.proc.pid)

            full = measure_start(
                env, api, runner, temporal, queue, namespace, finished, 2, then=more_while_running
            )
    finally:
        with contextlib.suppress(ApiException):
            delete_all(api, namespace)
        with contextlib.suppress(ApiException):
            core.delete_namespace(namespace)
        api.close()
    return BridgeFigures(
        finished=finished,
        empty=empty,
        full=full,
        create_seconds=create_seconds,
        more_seconds=more["seconds"],
        rss_after_more_mib=more["rss"],
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    finished = int(args[0]) if args else FINISHED
    stack = Stack()
    lease = stack.acquire_lease()
    try:
        env = stack.up(started_by="bench")
        figures = measure_bridge(env, finished=finished)
    except BridgeBenchError as err:
        print(f"bench_bridge FAILED: {err}", flush=True)
        return 1
    finally:
        stack.release_lease(lease)
    for line in figures.lines():
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
