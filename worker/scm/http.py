"""One request path for every provider driver: auth headers, timeouts, pagination, faults classified once."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import requests

from worker.scm.driver import (
    Endpoint,
    ProviderError,
    ProviderForbidden,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRefused,
    ProviderUnauthorized,
    ProviderUnavailable,
)

MAX_PAGES = 100
"""A listing stops here (10,000 repositories at 100 a page): a provider that always says "next" cannot
keep a sync busy forever."""

MESSAGE_LIMIT = 300


class Api:
    """Calls to one provider endpoint with one token's headers."""

    def __init__(
        self, endpoint: Endpoint, headers: Mapping[str, str], session: requests.Session | None = None
    ) -> None:
        self.endpoint = endpoint
        self.headers = {"Accept": "application/json", "User-Agent": "cubepaas-devops", **headers}
        self.session = session or requests.Session()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
    ) -> requests.Response:
        url = path if path.startswith(("http://", "https://")) else self.endpoint.api_url + path
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=body,
                headers=self.headers,
                timeout=self.endpoint.timeout,
                verify=self.endpoint.verify,
            )
        except requests.RequestException as err:
            raise ProviderUnavailable(f"{method} {_path_of(url)}: {type(err).__name__}: {err}") from None
        if response.status_code >= 400:
            raise classify(method, url, response)
        return response

    def json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
    ) -> Any:
        response = self.call(method, path, params=params, body=body)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ProviderUnavailable(
                f"{method} {_path_of(response.url)}: the answer is not JSON (HTTP {response.status_code})"
            ) from None

    def pages(self, path: str, params: Mapping[str, str | int]) -> Iterator[list[Any]]:
        """Each page of a listing, following the ``Link: <...>; rel="next"`` header all three send."""
        response = self.call("GET", path, params=params)
        for count in range(1, MAX_PAGES + 1):
            try:
                page = response.json()
            except ValueError:
                raise ProviderUnavailable(f"GET {_path_of(response.url)}: the answer is not JSON") from None
            if not isinstance(page, list):
                raise ProviderUnavailable(f"GET {_path_of(response.url)}: the answer is not a list")
            yield page
            following = response.links.get("next", {}).get("url")
            if not following or not page or count == MAX_PAGES:
                return
            response = self.call("GET", following)


def classify(method: str, url: str, response: requests.Response) -> ProviderError:
    """The branch of the fault tree an HTTP error answer belongs to, with the provider's own message."""
    status = response.status_code
    message = provider_message(response)
    text = f"{method} {_path_of(url)}: HTTP {status}: {message}"
    retry_after = _retry_after(response)
    # GitHub answers a spent limit with 403 as often as 429: the primary one says so in its headers, a
    # secondary one may only say so in its message ("You have exceeded a secondary rate limit").
    if status == 429 or (status == 403 and (retry_after is not None or "rate limit" in message.lower())):
        return ProviderRateLimited(text, status=status, retry_after=retry_after or 60.0)
    if status == 401:
        return ProviderUnauthorized(text, status=status)
    if status == 403:
        return ProviderForbidden(text, status=status)
    if status == 404:
        return ProviderNotFound(text, status=status)
    if status >= 500 or status in (408, 409):
        return ProviderUnavailable(text, status=status)
    return ProviderRefused(text, status=status)


def provider_message(response: requests.Response) -> str:
    """``message`` (GitHub, Gitea, GitLab), GitLab's ``error_description``/``error``, or the body's start."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key in ("message", "error_description", "error"):
            value = doc.get(key)
            if isinstance(value, str) and value:
                details = _details(doc.get("errors"))
                return _short(f"{value}: {details}" if details and details != value else value)
            if isinstance(value, dict | list) and value:
                return _short(_details(value) or str(value))
    return _short(response.text.strip() or response.reason or "no message")


def _details(value: Any) -> str:
    """GitHub's ``errors`` (``[{"resource", "field", "code", "message"}]``) and GitLab's field errors
    (``{"url": ["is blocked: ..."]}``) as one line."""
    parts: list[str] = []
    if isinstance(value, dict):
        for field, problems in value.items():
            listed = problems if isinstance(problems, list) else [problems]
            parts.append(f"{field} {', '.join(str(p) for p in listed)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                parts.append(item)
            elif isinstance(item, dict):
                said = item.get("message")
                if isinstance(said, str) and said:
                    parts.append(said)
                else:
                    what = " ".join(str(item[k]) for k in ("resource", "field", "code") if item.get(k))
                    if what:
                        parts.append(what)
    return "; ".join(parts)


def _retry_after(response: requests.Response) -> float | None:
    """Seconds until the rate limit resets, when the answer says it is spent."""
    headers = response.headers
    if headers.get("Retry-After", "").strip().isdigit():
        return float(headers["Retry-After"])
    if headers.get("X-RateLimit-Remaining", headers.get("RateLimit-Remaining", "")).strip() == "0":
        reset = headers.get("X-RateLimit-Reset", headers.get("RateLimit-Reset", "")).strip()
        if reset.isdigit():
            return max(1.0, float(reset) - time.time())
        return 60.0
    return None


def _short(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= MESSAGE_LIMIT else value[: MESSAGE_LIMIT - 1] + "…"


def _path_of(url: str) -> str:
    """The URL without its query: access tokens never sit in a query here, but page cursors do."""
    return url.split("?", 1)[0]


__all__ = ["MAX_PAGES", "Api", "classify", "provider_message"]
