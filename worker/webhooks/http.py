"""The receiver's HTTP server: routes, body limit, read timeout, health and metrics (stdlib, threads).

- ``Content-Length`` is required (411 otherwise); a body over :data:`MAX_BODY` (25 MB, GitHub's cap)
  is answered 413 and not kept: it is read and discarded up to :data:`DRAIN_LIMIT` so the client sees the
  answer, beyond that the connection is closed.
- A client that stops sending for ``timeout`` seconds is disconnected (socket timeout).
- Every answer is JSON ``{"outcome": ..., ...}``; the outcome is counted by provider and event.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from prometheus_client import generate_latest

from worker.webhooks.events import Outcome, Provider
from worker.webhooks.metrics import DELIVERIES, LATENCY, REGISTRY
from worker.webhooks.protocol import metric_event
from worker.webhooks.receiver import Answer, Receiver

logger = logging.getLogger("worker.webhooks")

MAX_BODY: Final = 25 * 1024 * 1024
MAX_CONNECTIONS: Final = 128
"""Connections served at once; more are closed at once (each holds a thread while it sends)."""
DRAIN_LIMIT: Final = 64 * 1024 * 1024
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_SCM = {p.value: p for p in (Provider.GITHUB, Provider.GITLAB, Provider.BITBUCKET, Provider.GITEA)}
_SCM["forgejo"] = Provider.GITEA


class ReceiverServer(ThreadingHTTPServer):
    """Threads per request; ``server_close`` waits for requests in flight (the SIGTERM drain)."""

    daemon_threads = False
    block_on_close = True

    def __init__(
        self, address: tuple[str, int], receiver: Receiver, ready: Callable[[], bool], timeout: float
    ) -> None:
        self.receiver = receiver
        self.ready = ready
        self.stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"timeout": timeout})
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            logger.warning("more than %d connections at once: closing one", MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    server: ReceiverServer
    server_version = "cubepaas-webhooks"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/readyz":
            ok = self.server.ready() and not self.server.stopping.is_set()
            self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n", "text/plain; charset=utf-8")
        elif path == "/metrics":
            self._send(200, generate_latest(REGISTRY), METRICS_CONTENT_TYPE)
        else:
            self._json(404, {"outcome": Outcome.NOT_FOUND.value, "message": "not found"})

    def do_POST(self) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        provider_name = parts[1] if len(parts) > 1 and parts[0] == "hooks" else ""
        label = provider_name if provider_name in _SCM or provider_name == "registry" else "unknown"
        body = self._body(label)
        if body is None:
            return
        try:
            answer = self._route(provider_name, parts, url.query, body)
        except Exception as err:  # a bug or the apiserver down: the provider retries; we stay up
            logger.error("delivery to %s failed: %s: %s", label, type(err).__name__, err)
            answer = Answer(503, Outcome.ERROR, body={"message": "temporarily unavailable; retry"})
        DELIVERIES.labels(label, metric_event(answer.event), answer.outcome.value).inc()
        LATENCY.labels(label).observe(time.monotonic() - started)
        self._json(answer.status, answer.body)

    def _route(self, provider_name: str, parts: list[str], query: str, body: bytes) -> Answer:
        headers = {k.lower(): v for k, v in self.headers.items()}
        receiver = self.server.receiver
        if provider_name in _SCM and len(parts) == 4:
            return receiver.git(_SCM[provider_name], parts[2], parts[3], headers, body)
        if provider_name == "registry" and len(parts) in (2, 3):
            token = (parse_qs(query).get("token") or [""])[0]
            return receiver.image(parts[2] if len(parts) == 3 else "", headers, token, body)
        return Answer(404, Outcome.NOT_FOUND, body={"message": "not found"})

    def _body(self, label: str) -> bytes | None:
        """The request body, or None when it was refused (the answer is sent)."""
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self.close_connection = True
            DELIVERIES.labels(label, "-", Outcome.MALFORMED.value).inc()
            self._json(411, {"outcome": Outcome.MALFORMED.value, "message": "Content-Length is required"})
            return None
        length = int(length_text)
        if length > MAX_BODY:
            self.close_connection = True
            if length <= DRAIN_LIMIT:
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            DELIVERIES.labels(label, "-", Outcome.TOO_LARGE.value).inc()
            self._json(413, {"outcome": Outcome.TOO_LARGE.value, "message": f"body over {MAX_BODY} bytes"})
            return None
        return self.rfile.read(length)

    def _json(self, code: int, doc: dict[str, Any]) -> None:
        self._send(code, (json.dumps(doc) + "\n").encode(), "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # request lines carry no secrets; keep them quiet
        logger.debug("http %s - " + format, self.address_string(), *args)


__all__ = ["DRAIN_LIMIT", "MAX_BODY", "ReceiverServer"]
