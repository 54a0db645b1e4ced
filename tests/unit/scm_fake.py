"""A provider served from recorded answers: a ``requests`` transport adapter that records every request.

The drivers get a ``requests.Session`` with :class:`FakeProvider` mounted for ``http://`` and
``https://``; nothing leaves the process. A route matches a method, the URL's path exactly as sent
(percent-encoding included, so ``/projects/group%2Fproject`` is not ``/projects/group/project``) and
optionally some query parameters; the route naming the most of them wins. The answers are the JSON files
under ``scm_answers/<provider>/``, shaped as each provider documents them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

ANSWERS = Path(__file__).resolve().parent / "scm_answers"

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def answer(name: str) -> Any:
    """A recorded answer, ``<provider>/<file>.json``."""
    return json.loads((ANSWERS / name).read_text())


@dataclass(frozen=True)
class Sent:
    """One request as it reached the transport."""

    method: str
    url: str
    headers: dict[str, str]
    body: Any
    timeout: Any
    verify: Any

    @property
    def path(self) -> str:
        """The path as sent, percent-encoding kept."""
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.url).query, keep_blank_values=True).items()}


@dataclass
class Route:
    method: str
    path: str
    query: dict[str, str]
    status: int
    body: bytes
    headers: dict[str, str]
    error: Exception | None = None
    hits: int = 0


@dataclass
class FakeProvider(BaseAdapter):
    """The routes a test sets up, and what the driver sent."""

    base: str
    """Scheme and host the routes live on, e.g. ``https://api.github.com``."""
    routes: list[Route] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def session(self) -> requests.Session:
        session = requests.Session()
        session.mount("http://", self)
        session.mount("https://", self)
        return session

    def route(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        json_file: str | None = None,
        json_body: Any = None,
        text: str | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        error: Exception | None = None,
    ) -> Route:
        """Answer ``method path`` (a path on :attr:`base`, as sent) with a recorded file, a JSON value,
        plain text, nothing (204), or raise ``error`` as a broken connection would."""
        if json_file is not None:
            json_body = answer(json_file)
        if json_body is not None:
            body, content_type = json.dumps(json_body).encode(), "application/json; charset=utf-8"
        elif text is not None:
            body, content_type = text.encode(), "text/plain; charset=utf-8"
        else:
            body, content_type = b"", ""
        all_headers = {"Content-Type": content_type} if content_type else {}
        all_headers.update(headers or {})
        route = Route(method, path, dict(query or {}), status, body, all_headers, error)
        self.routes.append(route)
        return route

    def url(self, path: str) -> str:
        return self.base + path

    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        url = request.url or ""
        raw = request.body
        body = json.loads(raw) if raw else None
        sent = Sent(str(request.method), url, dict(request.headers), body, timeout, verify)
        self.sent.append(sent)
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.base:
            raise requests.ConnectionError(f"no route to {parts.netloc} (the fake serves {self.base})")
        candidates = [
            r
            for r in self.routes
            if r.method == sent.method
            and r.path == sent.path
            and all(sent.query.get(k) == v for k, v in r.query.items())
        ]
        if not candidates:
            raise AssertionError(f"unexpected request {sent.method} {url}")
        route = max(candidates, key=lambda r: len(r.query))
        route.hits += 1
        if route.error is not None:
            raise route.error
        response = requests.Response()
        response.status_code = route.status
        response.reason = REASONS.get(route.status, "")
        response.headers = CaseInsensitiveDict(route.headers)
        response._content = route.body
        response.encoding = "utf-8"
        response.url = url
        response.request = request
        return response

    def close(self) -> None:
        pass

    def only(self, method: str | None = None) -> Sent:
        """The one request sent (of ``method``)."""
        picked = [s for s in self.sent if method is None or s.method == method]
        assert len(picked) == 1, [f"{s.method} {s.url}" for s in self.sent]
        return picked[0]


__all__ = ["ANSWERS", "FakeProvider", "Sent", "answer"]
