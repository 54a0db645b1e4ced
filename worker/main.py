"""``python -m worker``: the Temporal worker, the CR bridge and the health/metrics endpoint in one process.

- Settings from the environment (:class:`worker.settings.WorkerSettings`), so
  ``source .devstack/env && python -m worker`` just works.
- A Temporal runtime whose Prometheus exporter listens on ``127.0.0.1:<CUBEPAAS_METRICS_PORT>``.
- A :class:`temporalio.worker.Worker` on the task queue with the workflows of :func:`workflow_classes`
  and every activity of :func:`build_activities` (``CUBEPAAS_MAX_ACTIVITIES`` at once, and as many local
  ones; sync ones of either kind run in a thread pool with a thread for each slot), replaced by a new
  one when the SDK gives up on an unreachable Temporal (:mod:`worker.supervise`), so an outage of any
  length ends no process.
- The bridge (:class:`worker.bridge.Bridge`) as a task; with ``CUBEPAAS_LEADER_ELECTION`` only while this
  replica holds the Lease (:mod:`worker.leader`), so of many replicas exactly one runs it.
- HTTP on ``CUBEPAAS_HEALTH_HOST:CUBEPAAS_HEALTH_PORT``: ``/healthz`` (the process is alive),
  ``/readyz`` (Temporal reachable, the worker running, the bridge watching -- on the leader), ``/metrics``
  (prometheus_client's registry followed by the SDK's metrics).
- SIGTERM or SIGINT drains: the bridge stops, ``worker.shutdown()`` stops polling and gives running
  activities ``CUBEPAAS_SHUTDOWN_GRACE`` seconds before cancelling them (Temporal retries them
  elsewhere), then the process exits 0. A second signal exits at once (code 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import urllib.request
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import REGISTRY, generate_latest
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.kube import Kube
from crds.install import install_crds
from worker import logfmt
from worker.bridge import Bridge
from worker.leader import LeaderElector, LeaseStore, LeaseTiming, default_identity, own_namespace
from worker.schedules import ensure_log_retention_schedule
from worker.scm.reconciler import SourceCodeReconciler
from worker.settings import WorkerSettings
from worker.supervise import WorkerSupervisor
from worker.temporal import connect
from worker.triggers.reconciler import ScheduleReconciler

logger = logging.getLogger("worker")

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HEALTH_CHECK_INTERVAL = 5.0


# --------------------------------------------------------------------------------------------------
# Activities


def activity_methods(instance: object) -> list[Callable[..., Any]]:
    """The bound ``@activity.defn`` methods of an activity class instance."""
    methods: list[Callable[..., Any]] = []
    for name in sorted(dir(type(instance))):
        if name.startswith("__"):
            continue
        attribute = getattr(type(instance), name, None)
        if callable(attribute) and hasattr(attribute, "__temporal_activity_definition"):
            methods.append(getattr(instance, name))
    return methods


def build_activities(
    settings: WorkerSettings, client: Client, kube: Kube | None = None
) -> list[Callable[..., Any]]:
    """Every activity this worker runs, constructed with its clients. The ONE place to register them.

    Add a new activity class here (construct it with what it needs from ``settings``, ``client`` and
    ``kube``); :func:`activity_methods` registers each of its ``@activity.defn`` methods.
    """
    # Imported here so a half-written activity module names itself in the error, at start-up.
    from activities.bootstrap import NamespaceActivities
    from activities.build import BuildActivities, ServiceDefaults
    from activities.dataplane import DataPlanes
    from activities.execution import ExecutionActivities
    from activities.finish import FinishActivities
    from activities.finished import RunFinishedActivities
    from activities.logstore import StoreConfig
    from activities.quota import QuotaActivities
    from activities.retention import LogRetentionActivities
    from activities.verified import VerifiedRecently
    from worker.scm.activities import SourceCodeActivities
    from worker.triggers.activities import TriggerActivities

    kube = kube or settings.kube()
    # One client per data-plane cluster, shared by the activities that work in pipeline namespaces.
    planes = DataPlanes(kube)
    store = (
        StoreConfig(
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key.get_secret_value(),
            secret_key=settings.s3_secret_key.get_secret_value(),
            bucket=settings.s3_bucket,
            secure=settings.s3_secure,
            region=settings.s3_region or None,
        )
        if settings.s3_endpoint
        else None
    )
    defaults = ServiceDefaults(
        jenkins_url=settings.jenkins_url,
        jenkins_user=settings.jenkins_user,
        jenkins_token=settings.jenkins_token.get_secret_value(),
        store=store,
    )
    statuses = ExecutionActivities(kube)
    finished = RunFinishedActivities(kube)
    instances: list[object] = [
        # ---- activity classes: keep this list complete (one entry per class) ---------------------
        statuses,  # devops.execution.load / write_status, devops.pipeline.update_status
        # devops.namespace.bootstrap / verified, devops.rbac.reconcile
        NamespaceActivities(
            kube,
            planes,
            VerifiedRecently(settings.verified_ttl, max_waiting=max(1, settings.max_activities // 2)),
        ),
        # devops.jenkins.*, devops.logs.store_step, devops.execution.cleanup
        BuildActivities(kube, defaults, planes, statuses, client),
        QuotaActivities(client, settings.task_queue),  # devops.quota.acquire / release
        TriggerActivities(kube),  # devops.trigger.* (cron firings and SCM polls create runs)
        finished,  # devops.execution.finished (notifications, history limit)
        FinishActivities(statuses, finished),  # devops.execution.finish (the three above in one)
        LogRetentionActivities(kube, store, settings.watch_namespaces),  # devops.logs.sweep
        SourceCodeActivities(kube),  # devops.scm.sync_credential (verify a token, mirror repositories)
        # ---------------------------------------------------------------------------------------------
    ]
    activities = [method for instance in instances for method in activity_methods(instance)]
    names = [getattr(fn, "__temporal_activity_definition").name for fn in activities]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuntimeError(f"activity names registered twice: {', '.join(duplicates)}")
    return activities


def workflow_runner(sandboxed: bool) -> WorkflowRunner:
    """How workflows run: in the SDK's sandbox (``CUBEPAAS_WORKFLOW_SANDBOX``) or directly (the default).

    The sandbox checks at run time that workflow code makes no non-deterministic call, and re-imports
    modules per run to isolate their globals. Its price is paid on every activation and on every
    payload: each one runs through ``exec`` with the restricted importer applied, which was a fifth of
    the worker's CPU in a burst of runs. The checks are kept where they find bugs: every workflow test
    (the ``WorkflowEnvironment`` harness, the recorded-history replays) runs the workflows in the
    sandbox, so a call it forbids fails the tests before it ships; and the product's modules hold no
    mutable module state (they are passed through the sandbox as well, so it never isolated them).
    """
    if not sandboxed:
        return UnsandboxedWorkflowRunner()
    # Passed through: otherwise every workflow that starts (and every one evicted from the cache and
    # replayed) imports them again inside its sandbox, a tenth of the worker's CPU in a burst of runs.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "workflows", "crds", "pydantic", "pydantic_core", "annotated_types", "typing_extensions", "yaml"
        )
    )


def workflow_classes() -> list[type]:
    """The workflows this worker runs."""
    from workflows.execution import PipelineExecutionWorkflow
    from workflows.quota import ExecutorQuotaWorkflow
    from workflows.retention import LogRetentionWorkflow
    from workflows.scm_sync import SourceCodeSyncWorkflow
    from workflows.triggers import ScheduledRunWorkflow, ScmPollWorkflow

    return [
        PipelineExecutionWorkflow,
        ExecutorQuotaWorkflow,
        LogRetentionWorkflow,
        ScheduledRunWorkflow,
        ScmPollWorkflow,
        SourceCodeSyncWorkflow,
    ]


# --------------------------------------------------------------------------------------------------
# Health and metrics over HTTP (stdlib server in a thread)


class Health:
    """What /readyz reports; written by the event loop, read by the HTTP threads."""

    def __init__(self, sdk_metrics_url: str) -> None:
        self.sdk_metrics_url = sdk_metrics_url
        self.temporal_ok = False
        self.worker: WorkerSupervisor[Worker] | None = None
        self.bridge: Bridge | None = None
        self.bridge_enabled = True
        self.elector: LeaderElector | None = None
        self.stopping = False

    def checks(self) -> dict[str, bool]:
        return {
            "temporal": self.temporal_ok,
            "worker": self.worker is not None and self.worker.is_running,
            "bridge": (not self.bridge_enabled)
            or (self.elector is not None and not self.elector.is_leader)  # a follower runs no bridge
            or (self.bridge is not None and self.bridge.ready),
            "not-stopping": not self.stopping,
        }

    def metrics_text(self) -> bytes:
        own = generate_latest(REGISTRY)
        try:
            with urllib.request.urlopen(self.sdk_metrics_url, timeout=2) as response:
                sdk = bytes(response.read())
        except OSError as err:
            sdk = f"# SDK metrics unavailable: {type(err).__name__}\n".encode()
        return own + (b"" if own.endswith(b"\n") else b"\n") + sdk


def _handler(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "cubepaas-worker"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                checks = health.checks()
                body = "".join(f"{name}: {'ok' if good else 'not ready'}\n" for name, good in checks.items())
                self._send(200 if all(checks.values()) else 503, body.encode())
            elif path == "/metrics":
                self._send(200, health.metrics_text(), METRICS_CONTENT_TYPE)
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # probes are frequent: debug only
            logger.debug("http %s - " + format, self.address_string(), *args)

    return Handler


def start_http_server(host: str, port: int, health: Health) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _handler(health))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------------
# The process


async def _connect_with_retry(
    settings: WorkerSettings, runtime: Runtime, stop: asyncio.Event
) -> Client | None:
    delay = 0.5
    while not stop.is_set():
        try:
            return await connect(
                settings, runtime=runtime, identity=f"cubepaas-worker@{socket.gethostname()}:{os.getpid()}"
            )
        except Exception as err:
            logger.warning(
                "cannot reach Temporal at %s (%s); retrying in %.1fs", settings.temporal_address, err, delay
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 15.0)
    return None


async def _watch_temporal(client: Client, health: Health, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            health.temporal_ok = await client.service_client.check_health(timeout=timedelta(seconds=3))
        except Exception as err:
            if health.temporal_ok:
                logger.warning("Temporal health check failed: %s", err)
            health.temporal_ok = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEALTH_CHECK_INTERVAL)


async def _run_bridge_while(bridge: Bridge, health: Health, lost: asyncio.Event) -> None:
    """Run ``bridge`` until ``lost`` is set (leadership gone or shutdown), then stop it."""
    health.bridge = bridge
    try:
        await _run_until(bridge.run, bridge.stop, lost, "bridge")
    finally:
        health.bridge = None


class Reconciler(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


def reconcilers(kube: Kube, client: Client, settings: WorkerSettings) -> list[Reconciler]:
    """The loops that run next to the bridge (on the leader only, under leader election)."""
    out: list[Reconciler] = []
    if settings.schedules_enabled:
        out.append(ScheduleReconciler(kube, client, settings))
    if settings.scm_enabled:
        out.append(SourceCodeReconciler(kube, client, settings))
    return out


async def _run_reconciler_while(reconciler: Reconciler, lost: asyncio.Event) -> None:
    """Run a reconciler until ``lost`` is set (leadership gone or shutdown)."""
    await _run_until(reconciler.run, reconciler.stop, lost, type(reconciler).__name__)


async def _run_until(
    run: Callable[[], Coroutine[Any, Any, None]], stop: Callable[[], None], lost: asyncio.Event, name: str
) -> None:
    """``run()`` until it ends or ``lost`` is set; then ``stop()`` and give it 20 s to finish."""
    task = asyncio.create_task(run(), name=name)
    lost_wait = asyncio.create_task(lost.wait())
    try:
        await asyncio.wait({task, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost_wait.cancel()
        stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)


def _install_signal_handlers(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    def on_signal(signum: int) -> None:
        if stop.is_set():
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        logger.info(
            "%s: draining (bridge stops, running activities get the grace period)",
            signal.Signals(signum).name,
        )
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


async def run(settings: WorkerSettings, stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT); 0 after a clean drain, 1 when the worker failed."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread: caller stops us
        _install_signal_handlers(loop, stop)

    metrics_port = settings.metrics_port or free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{metrics_port}"))
    )
    health = Health(f"http://127.0.0.1:{metrics_port}/metrics")
    health.bridge_enabled = settings.bridge_enabled
    server = start_http_server(settings.health_host, settings.health_port, health)
    logger.info(
        "worker starting: %s; http %s:%d; sdk metrics 127.0.0.1:%d",
        settings.safe_summary(),
        settings.health_host,
        server.server_address[1],
        metrics_port,
    )
    # A thread for every slot, regular and local: a sync activity that waited for a thread would miss its
    # heartbeats, and a local one would hold its workflow task open (threads are made only when used).
    executor = ThreadPoolExecutor(max_workers=2 * settings.max_activities, thread_name_prefix="activity")
    # The async activities (the follow) make their blocking calls with asyncio.to_thread, in the loop's
    # default executor: its default of CPUs + 4 threads (6 here) queued the Jenkins and Kubernetes calls
    # of a hundred follows behind each other, long enough in a burst to miss heartbeats. One thread per
    # activity slot, as for the sync ones (threads are made only when used).
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=settings.max_activities, thread_name_prefix="to-thread")
    )
    tasks: list[asyncio.Task[Any]] = []
    code = 0
    try:
        client = await _connect_with_retry(settings, runtime, stop)
        if client is None:
            return 0
        health.temporal_ok = True
        kube = await asyncio.to_thread(settings.kube)
        if settings.install_crds:
            try:
                await asyncio.to_thread(install_crds, kube.api_client)
            except Exception as err:  # e.g. no RBAC for CRDs: someone else installs them
                logger.warning("could not install the CRDs (%s); continuing with what the cluster has", err)
        if settings.retention_schedule:
            try:
                await ensure_log_retention_schedule(client, settings.task_queue)
            except Exception as err:  # e.g. no permission for schedules: the sweep can be started by hand
                logger.warning("could not create the log retention schedule (%s)", err)
        activities = build_activities(settings, client, kube)

        def make_worker() -> Worker:
            return Worker(
                client,
                task_queue=settings.task_queue,
                workflows=workflow_classes(),
                activities=activities,
                activity_executor=executor,
                workflow_runner=workflow_runner(settings.workflow_sandbox),
                max_concurrent_activities=settings.max_activities,
                max_concurrent_local_activities=settings.max_activities,
                graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace),
            )

        supervisor = WorkerSupervisor(make_worker)
        health.worker = supervisor
        supervisor_task = asyncio.create_task(supervisor.run(stop), name="worker-supervisor")
        tasks.append(supervisor_task)
        tasks.append(asyncio.create_task(_watch_temporal(client, health, stop), name="temporal-health"))
        bridge: Bridge | None = None
        bridge_task: asyncio.Task[None] | None = None
        elector_task: asyncio.Task[None] | None = None
        if settings.bridge_enabled and settings.leader_election:
            elector = LeaderElector(
                LeaseStore(kube.api_client, settings.lease_namespace or own_namespace(), settings.lease_name),
                settings.identity or default_identity(),
                LeaseTiming.for_lease_duration(settings.lease_duration),
            )
            health.elector = elector

            async def lead(lost: asyncio.Event) -> None:
                # The Schedules reconciler, like the bridge, runs on the leader only.
                schedules_while = [
                    _run_reconciler_while(r, lost) for r in reconcilers(kube, client, settings)
                ]
                await asyncio.gather(
                    _run_bridge_while(Bridge(kube, client, settings), health, lost), *schedules_while
                )

            elector_task = asyncio.create_task(elector.run(lead, stop), name="leader-election")
            tasks.append(elector_task)
        elif settings.bridge_enabled:
            bridge = Bridge(kube, client, settings)
            health.bridge = bridge
            bridge_task = asyncio.create_task(bridge.run(), name="bridge")
            tasks.append(bridge_task)
        loops: list[Reconciler] = []
        if not (settings.bridge_enabled and settings.leader_election):
            loops = reconcilers(kube, client, settings)
            tasks += [asyncio.create_task(r.run(), name=type(r).__name__) for r in loops]
        logger.info("worker running on task queue %s", settings.task_queue)

        stop_wait = asyncio.create_task(stop.wait())
        await asyncio.wait({stop_wait, supervisor_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        health.stopping = True
        if supervisor_task.done() and not stop.is_set():  # only a worker that cannot be built ends it
            error = None if supervisor_task.cancelled() else supervisor_task.exception()
            logger.error("the Temporal worker cannot run: %s", error or "supervisor ended")
            code = 1
        stop.set()

        for running in loops:
            running.stop()
        if bridge is not None and bridge_task is not None:
            bridge.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bridge_task, 20)
        if elector_task is not None:  # stops the bridge, then releases the Lease for a fast hand-over
            with contextlib.suppress(Exception):
                await asyncio.wait_for(elector_task, 25)
        logger.info("shutting the worker down (grace %.0fs)", settings.shutdown_grace)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await supervisor_task
        final_error = await supervisor.shutdown()
        if final_error is not None and code == 0:
            logger.error("worker ended with %s", final_error)
            code = 1
        logger.info("worker stopped")
        return code
    finally:
        stop.set()
        for task in tasks:
            if not task.done():
                task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        executor.shutdown(wait=False, cancel_futures=True)
        server.shutdown()
        server.server_close()


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The worker takes no options (everything is an environment variable); ``--help`` lists them."""
    import worker.settings as settings_module

    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="The CubePaaS DevOps worker: Temporal worker, CR bridge and health/metrics endpoint.",
        epilog="Settings (environment variables):\n" + (settings_module.__doc__ or "").split("\n\n", 2)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_arguments(argv)
    settings = WorkerSettings()
    logfmt.configure(settings.log_level)
    return asyncio.run(run(settings))


__all__ = [
    "Health",
    "activity_methods",
    "build_activities",
    "main",
    "parse_arguments",
    "run",
    "workflow_classes",
]
