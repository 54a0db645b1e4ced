"""How a webhook's answer is classified (a loopback HTTP server; no Kubernetes needed without Secrets)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest

from activities.errors import NotifierPermanentError, NotifierTransientError
from activities.kube import Kube
from activities.notify.channels import Channels, Content
from crds.notifiers import Notifier
from devstack.proc import free_port

pytestmark = pytest.mark.unit


@pytest.fixture
def server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            code = int(self.path.strip("/") or "200")
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def send(url: str) -> None:
    hook = Notifier.model_validate({"name": "h", "webhook": {"url": url}})
    content = Content(
        subject="s", text="t", ok=True, cloud_event={"id": "1", "time": datetime.now(UTC).isoformat()}
    )
    # No Secret is referenced, so the Kubernetes client is never used.
    Channels(cast(Kube, None), timeout=5).send(hook, "ns", "r", content, "1")


def test_2xx_is_delivered_5xx_408_and_429_are_worth_a_retry_and_other_4xx_are_not(server: str) -> None:
    send(f"{server}/202")
    for code in (500, 503, 408, 429):
        with pytest.raises(NotifierTransientError, match=f"HTTP {code}"):
            send(f"{server}/{code}")
    for code in (400, 404, 410):
        with pytest.raises(NotifierPermanentError, match=f"HTTP {code}"):
            send(f"{server}/{code}")


def test_an_unreachable_endpoint_is_transient_and_the_error_names_no_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/secret-path-token"
    with pytest.raises(NotifierTransientError) as caught:
        send(url)
    assert "secret-path-token" not in caught.value.message
