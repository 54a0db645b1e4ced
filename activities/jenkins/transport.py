"""The engine's one request path: python-jenkins' session and crumb, bounded retries of reads, one POST.

Reads (GETs) are retried here with a small bounded backoff so one flaky answer does not fail an activity
attempt; writes (POSTs) are not replayed blindly: the operations that issue them re-check state first,
and the activity retry does the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import jenkins
import requests
from requests.adapters import HTTPAdapter

from activities.errors import JenkinsPermanentError
from activities.jenkins.errors import classify
from crds.reasons import Reason

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Keep-alive connections per Jenkins: about the worker's threads that may talk to it at once.
POOL_SIZE = 64


class JenkinsTransport:
    """Typed, classified access to one Jenkins (or jenkins-lite): the plumbing every part builds on."""

    def __init__(
        self,
        url: str,
        user: str | None,
        token: str | None,
        timeout: float = 30.0,
        *,
        read_attempts: int = 4,
        backoff: float = 0.2,
        poll_interval: float = 0.5,
    ) -> None:
        self.url = url if url.endswith("/") else url + "/"
        # python-jenkins asks for a CSRF crumb lazily on the first request (404 = crumbs disabled); with
        # an API token Jenkins needs none, but asking is harmless. retries=0: we decide what is replayed.
        self._j = jenkins.Jenkins(self.url, username=user, password=token, timeout=timeout)
        # python-jenkins mounts an adapter with requests' default pool of 10 connections, fewer than the
        # worker's threads that share this Jenkins: every connection beyond it was closed after its
        # request. Mounted again with a larger pool and, as python-jenkins' own, no retries of its own
        # (it offers no public handle on its session). The prefix is "<scheme>://", as the default's:
        # requests takes the longest matching prefix, so a bare scheme would lose to it.
        session = self._j._session
        session.mount(f"{urlsplit(self.url).scheme}://", HTTPAdapter(pool_maxsize=POOL_SIZE, max_retries=0))
        # requests looks up proxies, NO_PROXY and a CA bundle in the environment on every request (a
        # twentieth of the worker's CPU in a burst of runs). They cannot change while the worker runs and
        # every request goes to this one origin: looked up once, here, and the session stops asking.
        found = session.merge_environment_settings(self.url, {}, None, session.verify, None)
        session.proxies.update(found["proxies"] or {})
        session.verify = found["verify"]
        if session.auth is None and user is None:
            session.auth = requests.utils.get_netrc_auth(self.url)
        session.trust_env = False
        self._read_attempts = max(1, read_attempts)
        self._backoff = backoff
        self._poll = poll_interval

    def _abs(self, path: str) -> str:
        """A URL for a Jenkins path; root-relative paths Jenkins returns (``/jenkins/job/..``) resolve
        against the server's origin."""
        if path.startswith(("http://", "https://")):
            return path
        if path.startswith("/"):
            parts = urlsplit(self.url)
            return f"{parts.scheme}://{parts.netloc}{path}"
        return urljoin(self.url, path)

    @staticmethod
    def _job(name: str) -> str:
        return "job/" + quote(name, safe="") + "/"

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        req = requests.Request(method, self._abs(path), params=params, data=data, headers=headers or {})
        response: requests.Response = self._j.jenkins_request(req)
        return response

    def _retrying(self, what: str, op: Callable[[], T], *, attempts: int | None = None) -> T:
        """Run an idempotent operation, retrying transient faults with a small bounded backoff."""
        n = attempts or self._read_attempts
        for attempt in range(1, n + 1):
            try:
                return op()
            except Exception as exc:
                err = classify(exc, what)
                if not err.retryable or attempt == n:
                    if err is exc:
                        raise
                    raise err from exc
                log.debug("jenkins: %s failed (%s), retry %d/%d", what, err.message, attempt, n - 1)
                time.sleep(self._backoff * (2 ** (attempt - 1)))
        raise AssertionError("unreachable")

    def _get(self, path: str, what: str, *, params: dict[str, str] | None = None) -> requests.Response:
        return self._retrying(what, lambda: self._request("GET", path, params=params))

    def _get_json(self, path: str, what: str, *, params: dict[str, str] | None = None) -> Any:
        def op() -> Any:
            return self._request("GET", path, params=params).json()

        return self._retrying(what, op)

    def _get_json_or_none(self, path: str, what: str) -> Any:
        """GET JSON; ``None`` on 404."""
        try:
            return self._get_json(path, what)
        except JenkinsPermanentError as err:
            if err.reason == Reason.JENKINS_NOT_FOUND:
                return None
            raise

    def _post(
        self,
        path: str,
        what: str,
        *,
        params: dict[str, str] | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        ok_404: bool = False,
        config_write: bool = False,
    ) -> requests.Response | None:
        """One POST, not replayed here (the caller re-checks state)."""
        self._ensure_crumb()
        try:
            return self._request("POST", path, params=params, data=data, headers=headers)
        except Exception as exc:
            err = classify(exc, what, config_write=config_write)
            if ok_404 and err.reason == Reason.JENKINS_NOT_FOUND:
                return None
            if err is exc:
                raise
            raise err from exc

    def _ensure_crumb(self) -> None:
        """Fetch the crumb (python-jenkins does it lazily inside the first request) with retries, so a flaky
        crumb answer never costs a POST."""
        if self._j.crumb is None:
            self._retrying("crumb", lambda: self._j.maybe_add_crumb(requests.Request("GET", self.url)))

    def version(self) -> str:
        """Jenkins' version (``X-Jenkins``); also proves the URL and credentials work."""
        return self._retrying("version", lambda: str(self._j.get_version()))

    def build_info(self, job: str, number: int) -> dict[str, Any]:
        info = self._get_json_or_none(f"{self._job(job)}{number}/api/json", f"build {job} #{number}")
        if info is None:
            raise JenkinsPermanentError(
                f"build {job} #{number} does not exist in Jenkins", reason=Reason.JENKINS_NOT_FOUND
            )
        return dict(info)


__all__ = ["JenkinsTransport"]
