"""List and watch PipelineExecutions, one thread per target (a namespace, or all namespaces).

Each thread lists, then watches from the list's ``resourceVersion``, resumes every watch from the last
version seen (bookmarks included) and lists again on 410 Gone. Events go to ``emit(kind, target, payload)``
(``PAGE`` and, last, ``LISTED`` with a :class:`Page` of the listing, or ``ADDED``/``MODIFIED``/``DELETED``
with the object).

A listing is read in pages of ``page_size`` (``limit``/``continue``; every page comes from the first
one's snapshot), each handed on as it arrives: a namespace holding thousands of finished runs never has
them all in memory at once.

The watch stream is read here from the apiserver's response (``_preload_content=False``, one JSON event
per line) rather than through ``kubernetes.watch.Watch``: holding the response is what lets :meth:`stop`
close it at once (``HTTPResponse.shutdown``), where ``Watch`` only offers a flag checked between events.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from crds.execution import PipelineExecution
from crds.meta import GROUP, VERSION
from worker.bridge.metrics import ERRORS, WATCH_RESTARTS, WATCHING
from worker.bridge.tracked import backoff, meta

logger = logging.getLogger(__name__)

PLURAL = PipelineExecution.crd.plural
Emit = Callable[[str, str | None, Any], None]
HTTP_GONE = 410
#: Items per LIST request.
LIST_PAGE_SIZE = 500


@dataclass(frozen=True)
class Page:
    """One page of a listing: ``first`` starts a new listing of its target."""

    items: list[Any]
    first: bool


def watch_events(func: Any, *args: Any, holder: dict[str, Any], **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The events of one watch request; an ``ERROR`` event raises its ``ApiException`` (410: Gone).

    The response is kept in ``holder["response"]`` while it is read, so another thread can close it.
    """
    response = func(*args, watch=True, _preload_content=False, **kwargs)
    holder["response"] = response
    try:
        buffer = bytearray()
        for segment in response.stream(amt=None, decode_content=False):
            buffer.extend(segment)
            while (newline := buffer.find(b"\n")) != -1:
                line, buffer = bytes(buffer[:newline]), buffer[newline + 1 :]
                if not line.strip():
                    continue
                event = json.loads(line)
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiException(
                        status=int(status.get("code") or 500),
                        reason=f"{status.get('reason')}: {status.get('message')}",
                    )
                yield event
    finally:
        holder.pop("response", None)
        with contextlib.suppress(Exception):
            response.release_conn()


class Watcher:
    """The list/watch threads of one bridge; :attr:`watching` tells which targets are listed and watching."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        targets: list[str | None],
        emit: Emit,
        stats: Counter[str],
        *,
        watch_timeout_seconds: int = 30,
        page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        self.api_client = api_client
        self.page_size = page_size
        self.targets = targets
        self.emit = emit
        self.stats = stats
        self.watch_timeout_seconds = watch_timeout_seconds
        self.watching: dict[str | None, bool] = dict.fromkeys(targets, False)
        self._holders: dict[str | None, dict[str, Any]] = {t: {} for t in targets}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def ready(self) -> bool:
        return all(self.watching.values())

    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self.loop, args=(t,), name=f"bridge-watch-{t or 'all'}", daemon=True)
            for t in self.targets
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Ask every thread to end, and close the streams they read (thread-safe, idempotent)."""
        self._stop.set()
        for holder in list(self._holders.values()):
            response = holder.get("response")
            if response is not None:
                with contextlib.suppress(Exception):
                    response.shutdown()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("bridge: %s did not stop in time (daemon thread, left behind)", thread.name)
        for target in self.targets:
            self.set_watching(target, False)

    def set_watching(self, target: str | None, value: bool) -> None:
        if self.watching.get(target) != value:
            self.watching[target] = value
            WATCHING.inc() if value else WATCHING.dec()

    def list_call(self, api: Any, target: str | None) -> tuple[Any, tuple[Any, ...]]:
        if target is None:
            return api.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        return api.list_namespaced_custom_object, (GROUP, VERSION, target, PLURAL)

    def loop(self, target: str | None) -> None:
        """List, then watch from the list's version; resume from the last version; re-list on 410."""
        api = k8s.CustomObjectsApi(self.api_client)
        func, args = self.list_call(api, target)
        where = target or "all namespaces"
        holder = self._holders.setdefault(target, {})
        version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self.read_listing(func, args, target)
                    self.set_watching(target, True)
                    logger.debug("bridge: listed %s at version %s", where, version)
                for event in watch_events(
                    func,
                    *args,
                    holder=holder,
                    resource_version=version,
                    timeout_seconds=self.watch_timeout_seconds,
                    allow_watch_bookmarks=True,
                    _request_timeout=(5, self.watch_timeout_seconds + 15),
                ):
                    if self._stop.is_set():
                        break
                    kind, obj = event.get("type"), event.get("object")
                    if not isinstance(obj, dict):
                        continue
                    seen = meta(obj).get("resourceVersion")
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self.emit(str(kind), target, obj)
                    if seen:
                        version = str(seen)
                failures = 0
                self.set_watching(target, True)
            except ApiException as err:
                if self._stop.is_set():
                    break
                if err.status == HTTP_GONE:
                    logger.info("bridge: watch of %s expired (410 Gone); listing again", where)
                    WATCH_RESTARTS.labels("gone").inc()
                    self.stats["watch_gone"] += 1
                    version = None
                    continue
                failures = self._failed(target, failures, f"HTTP {err.status} {err.reason}")
            except Exception as err:
                if self._stop.is_set():
                    break
                failures = self._failed(target, failures, f"{type(err).__name__}: {err}")
        self.set_watching(target, False)

    def read_listing(self, func: Any, args: tuple[Any, ...], target: str | None) -> str | None:
        """List ``target`` page by page (``PAGE`` events, the last one ``LISTED``); returns its version.

        An expired ``continue`` token raises 410 like an expired watch, and the listing starts over.
        """
        token: str | None = None
        first = True
        while True:
            kwargs: dict[str, Any] = {"limit": self.page_size, "_request_timeout": (5, 60)}
            if token:
                kwargs["_continue"] = token
            listing = func(*args, **kwargs)
            token = str(meta(listing).get("continue") or "") or None
            self.stats["list_pages"] += 1
            self.emit("PAGE" if token else "LISTED", target, Page(listing.get("items") or [], first))
            if token is None:
                return str(meta(listing).get("resourceVersion") or "") or None
            first = False

    def _failed(self, target: str | None, failures: int, what: str) -> int:
        failures += 1
        delay = backoff(failures)
        logger.warning(
            "bridge: watch of %s failed (%s); retrying in %.1fs", target or "all namespaces", what, delay
        )
        WATCH_RESTARTS.labels("error").inc()
        ERRORS.labels("watch").inc()
        self.stats["watch_error"] += 1
        if failures > 1:
            self.set_watching(target, False)
        self._stop.wait(delay)
        return failures


__all__ = ["LIST_PAGE_SIZE", "PLURAL", "Page", "Watcher", "watch_events"]
