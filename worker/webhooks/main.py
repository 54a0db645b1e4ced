"""``python -m worker.webhooks``: the receiver process.

Reads the worker's environment (:class:`worker.settings.WorkerSettings`); listens on
``CUBEPAAS_WEBHOOK_HOST:CUBEPAAS_WEBHOOK_PORT`` (0: a free port) and says which in its first log line.
``/readyz`` is 200 while the apiserver answers (checked every few seconds). SIGTERM/SIGINT drains: new
connections are refused, requests in flight finish, then the process exits 0; a second signal exits 1.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

from activities.errors import DevopsError, KubeNotFoundError
from crds.pipeline import Pipeline
from worker.settings import WorkerSettings
from worker.webhooks.http import ReceiverServer
from worker.webhooks.receiver import Receiver

logger = logging.getLogger("worker.webhooks")

READY_CHECK_INTERVAL = 5.0
_PROBE_NAME = "cubepaas-readiness-probe"


def serve(settings: WorkerSettings, stop: threading.Event) -> int:
    kube = settings.kube()
    receiver = Receiver(kube, registry_token=settings.registry_token.get_secret_value().encode())
    ready = threading.Event()
    server = ReceiverServer(
        (settings.webhook_host, settings.webhook_port), receiver, ready.is_set, settings.webhook_timeout
    )
    host, port = server.server_address[:2]
    logger.info(
        "webhook receiver listening on http://%s:%d (kubeconfig=%s)",
        host,
        port,
        settings.kubeconfig or "<in-cluster/default>",
    )

    def check_apiserver() -> None:
        while not stop.is_set():
            try:
                kube.find(Pipeline, "default", _PROBE_NAME)  # a 404 proves reachability and RBAC
                if not ready.is_set():
                    logger.info("apiserver reachable: ready")
                ready.set()
            except KubeNotFoundError:
                ready.set()
            except DevopsError as err:
                if ready.is_set():
                    logger.warning("apiserver check failed: %s", err)
                ready.clear()
            stop.wait(READY_CHECK_INTERVAL)

    threading.Thread(target=check_apiserver, name="readiness", daemon=True).start()
    serving = threading.Thread(target=server.serve_forever, name="http")
    serving.start()
    stop.wait()
    logger.info("draining: refusing new connections, finishing the requests in flight")
    server.stopping.set()
    server.shutdown()
    serving.join()
    server.server_close()  # joins the request threads
    logger.info("webhook receiver stopped")
    return 0


def main() -> int:
    settings = WorkerSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        logger.info("%s: draining", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return serve(settings, stop)


__all__ = ["main", "serve"]
