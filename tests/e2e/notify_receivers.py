"""Real receivers on loopback for notification tests: an SMTP server (aiosmtpd, in-process) and an HTTP
server standing in for Slack, Teams and webhook endpoints (answers scripted per path)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from devstack.proc import free_port


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: Message


class _MailHandler:
    def __init__(self, box: list[Mail], lock: threading.Lock) -> None:
        self.box, self.lock = box, lock

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.box.append(
                Mail(envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
            )
        return "250 OK"


class SmtpReceiver:
    """aiosmtpd's Controller on 127.0.0.1 (no TLS) that requires AUTH as ``login``; every message is kept."""

    def __init__(self, login: tuple[str, str] = ("ci-bot", "smtp-password")) -> None:
        self.mails: list[Mail] = []
        self.logins: list[str] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.login = login
        # AUTH without TLS: loopback only, and the tests cannot give aiosmtpd a certificate the worker trusts.
        self._controller = Controller(
            _MailHandler(self.mails, self._lock),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate,
            auth_required=True,
            auth_require_tls=False,
        )

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == self.login
        if ok:
            with self._lock:
                self.logins.append(self.login[0])
        return AuthResult(success=ok)

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[Mail]:
        with self._lock:
            return [m for m in self.mails if address in m.recipients]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Script:
    failures: int = 0
    """Answer 500 to this many requests (-1: always)."""
    hold: threading.Event | None = None
    """Block the first request until set."""
    held: threading.Event = field(default_factory=threading.Event)


class HttpReceiver:
    """A ThreadingHTTPServer on 127.0.0.1 that records every POST and answers as scripted per path."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._scripts: dict[str, _Script] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, path: str, times: int) -> None:
        self._scripts.setdefault(path, _Script()).failures = times

    def hold(self, path: str) -> tuple[threading.Event, threading.Event]:
        """(held, release): ``held`` is set once the first request arrived; set ``release`` to answer it."""
        script = self._scripts.setdefault(path, _Script())
        script.hold = threading.Event()
        return script.held, script.hold

    def at(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> HttpReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for script in self._scripts.values():
            if script.hold is not None:
                script.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with receiver._lock:
                    receiver.requests.append(Request(self.path, dict(self.headers.items()), body))
                    script = receiver._scripts.get(self.path)
                    code = 200
                    if script is not None and script.failures != 0:
                        code = 500
                        script.failures -= 1 if script.failures > 0 else 0
                    hold = script.hold if script is not None and not script.held.is_set() else None
                    if script is not None and hold is not None:
                        script.held.set()
                if hold is not None:
                    hold.wait(120)
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender went away (a killed worker)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
