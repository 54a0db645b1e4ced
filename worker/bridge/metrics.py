"""The bridge's Prometheus collectors (``cubepaas_bridge_*``, in the default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

STARTS = Counter(
    "cubepaas_bridge_workflow_starts",
    "Workflow start requests by result: started (new), existing (running, reused), closed (no-op).",
    ["result"],
)
SIGNALS = Counter("cubepaas_bridge_signals_forwarded", "Signals forwarded from CR fields.", ["signal"])
CANCELS = Counter("cubepaas_bridge_workflow_cancels", "Workflows cancelled because their CR was deleted.")
STATUS_WRITES = Counter("cubepaas_bridge_status_writes", "status.workflow writes.")
WATCH_RESTARTS = Counter(
    "cubepaas_bridge_watch_restarts", "Watches listed again (gone: 410 Gone; error: a failure).", ["reason"]
)
ERRORS = Counter("cubepaas_bridge_errors", "Failed bridge operations (retried with backoff).", ["operation"])
WATCHING = Gauge("cubepaas_bridge_watches_running", "Watch streams currently listed and watching.")
TRACKED = Gauge("cubepaas_bridge_tracked_executions", "Executions the bridge currently tracks.")

__all__ = [
    "CANCELS",
    "ERRORS",
    "SIGNALS",
    "STARTS",
    "STATUS_WRITES",
    "TRACKED",
    "WATCHING",
    "WATCH_RESTARTS",
]
