"""Log retention: delete step logs older than each project's ``logRetentionDays``.

Chosen over an S3 lifecycle rule because it works on every S3-compatible store (ListObjectsV2 and
DeleteObject only; no bucket-configuration permission, no per-vendor lifecycle support), honours a
per-project retention in a shared bucket, and records in each PipelineExecution that its logs expired,
so ``devopsctl logs`` can say so. A daily Temporal Schedule runs it (:mod:`workflows.retention`); the
clock is the workflow's input, so tests (and a catch-up after an outage) can sweep "as of" any time.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from temporalio import activity

from activities.errors import ConfigError, DevopsError, KubeNotFoundError, to_application_error
from activities.events import EventRecorder, RunEvent
from activities.heartbeat import heartbeating
from activities.kube import Kube
from activities.logstore import LogStore, StoreConfig, resolve_store
from crds.execution import PipelineExecution
from crds.messages import Activity, SweepLogsInput, SweepLogsResult
from crds.reasons import EventReason, Reason
from crds.setting import DEFAULT_SETTING_NAME, PipelineSetting

logger = logging.getLogger(__name__)


def run_of_object(name: str) -> tuple[str, int] | None:
    """``<namespace>/<pipeline>/<run>/<stage>-<step>.log`` -> ``(pipeline, run)``."""
    parts = name.split("/")
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


class LogRetentionActivities:
    """Holds the Kubernetes client, the worker's default object store and the namespaces it serves."""

    def __init__(
        self, kube: Kube, default_store: StoreConfig | None, namespaces: list[str] | None = None
    ) -> None:
        self.kube = kube
        self.default_store = default_store
        self.namespaces = list(namespaces or [])
        self.events = EventRecorder(kube)

    @activity.defn(name=Activity.SWEEP_LOGS)
    @heartbeating
    def sweep(self, inp: SweepLogsInput) -> SweepLogsResult:
        try:
            return self._sweep(inp)
        except DevopsError as err:
            raise to_application_error(err) from err

    def _settings(self) -> list[PipelineSetting]:
        if not self.namespaces:
            return self.kube.list_resources(PipelineSetting)
        found = (self.kube.find(PipelineSetting, ns, DEFAULT_SETTING_NAME) for ns in self.namespaces)
        return [s for s in found if s is not None]

    def _sweep(self, inp: SweepLogsInput) -> SweepLogsResult:
        result = SweepLogsResult()
        for setting in self._settings():
            days = setting.spec.object_store.log_retention_days
            if setting.name != DEFAULT_SETTING_NAME or days <= 0:
                continue
            namespace = setting.namespace
            try:
                cfg = resolve_store(setting.spec.object_store, namespace, self._secret, self.default_store)
            except ConfigError as err:
                logger.warning("log retention of %s skipped: %s", namespace, err.message)
                continue
            cutoff = inp.as_of - timedelta(days=days)
            runs = self._delete_older(LogStore(cfg), namespace, cutoff, result)
            result.projects += 1
            result.expired_runs += self._mark_expired(namespace, runs, inp.as_of, days)
        logger.info(
            "log retention as of %s: %d projects, %d objects deleted, %d runs expired",
            inp.as_of.isoformat(), result.projects, result.deleted_objects, len(result.expired_runs),
        )  # fmt: skip
        return result

    def _delete_older(
        self, store: LogStore, namespace: str, cutoff: datetime, result: SweepLogsResult
    ) -> set[tuple[str, int]]:
        runs: set[tuple[str, int]] = set()
        for obj in store.list_objects(f"{namespace}/"):
            if obj.last_modified >= cutoff:
                continue
            store.delete(obj.name)
            result.deleted_objects += 1
            run = run_of_object(obj.name)
            if run is not None:
                runs.add(run)
        return runs

    def _mark_expired(
        self, namespace: str, runs: set[tuple[str, int]], when: datetime, days: int
    ) -> list[str]:
        if not runs:
            return []
        marked = []
        for pe in self.kube.list_resources(PipelineExecution, namespace):
            if (
                (pe.spec.pipeline_name, pe.spec.run) not in runs
                or pe.status is None
                or pe.status.logs_expired
            ):
                continue
            try:
                self.kube.patch_status(
                    PipelineExecution, namespace, pe.name, {"logsExpired": when.isoformat()}
                )
            except KubeNotFoundError:
                continue
            self.events.record(
                pe, [RunEvent(EventReason.LOGS_EXPIRED, f"Step logs deleted: older than {days} days")]
            )
            marked.append(f"{namespace}/{pe.name}")
        return marked

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        try:
            return self.kube.read_secret(namespace, name)
        except KubeNotFoundError as err:
            raise ConfigError(f"Secret {namespace}/{name} not found", reason=Reason.CONFIG_INVALID) from err


__all__ = ["LogRetentionActivities", "run_of_object"]
