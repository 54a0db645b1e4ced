"""Jenkins faults named by what a retry should do: :func:`classify` is the one place that decides.

python-jenkins 1.8.3 turns 401/403/500 into ``JenkinsException`` (the ``HTTPError`` as context), 404 into
``NotFoundException``, re-raises other ``HTTPError``s, wraps timeouts in ``TimeoutException`` and lets
``ConnectionError`` through; :func:`_status_of` digs the HTTP status out of all of them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import jenkins
import requests

from activities.errors import DevopsError, JenkinsPermanentError, JenkinsTransientError
from crds.reasons import Reason


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status behind an exception python-jenkins raised (it wraps ``HTTPError``s)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        response = getattr(cur, "response", None)
        if response is not None and getattr(response, "status_code", None) is not None:
            return int(response.status_code)
        if isinstance(cur, jenkins.NotFoundException):
            return 404
        m = re.search(r"\[(\d{3})\]", str(cur)) if isinstance(cur, jenkins.JenkinsException) else None
        if m:
            return int(m.group(1))
        cur = cur.__cause__ or cur.__context__
    return None


_INVALID_CONFIG = re.compile(
    r"(ConversionException|XmlPull|SAXParse|CannotResolveClass|Failed to load|not well-formed|"
    r"Invalid|IllegalArgument|ParseError)",
    re.IGNORECASE,
)


def classify(exc: BaseException, what: str, *, config_write: bool = False) -> DevopsError:
    """Name a fault by what a retry should do.

    Transient: 5xx (``503`` is also "Jenkins is starting"), 429, 409, timeouts, connection errors, broken
    answers. Permanent: 401/403, 404 (a job, build or credential we created is missing), other 4xx, and an
    invalid config on a config write (400, or 500 whose body names a parse/conversion error).
    """
    if isinstance(exc, DevopsError):
        return exc
    status = _status_of(exc)
    detail = f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    if status is not None:
        if status in (401, 403):
            return JenkinsPermanentError(
                f"{what}: Jenkins refused the credentials or permission (HTTP {status})",
                reason=Reason.JENKINS_FORBIDDEN,
            )
        if status == 404:
            return JenkinsPermanentError(
                f"{what}: not found in Jenkins (HTTP 404)", reason=Reason.JENKINS_NOT_FOUND
            )
        if config_write and (status == 400 or (status == 500 and _INVALID_CONFIG.search(str(exc)))):
            return JenkinsPermanentError(
                f"{what}: Jenkins rejected the configuration (HTTP {status})",
                reason=Reason.JENKINS_INVALID_CONFIG,
            )
        if status >= 500 or status in (408, 409, 429):
            return JenkinsTransientError(
                f"{what}: Jenkins answered HTTP {status}", reason=Reason.JENKINS_UNAVAILABLE
            )
        return JenkinsPermanentError(
            f"{what}: Jenkins answered HTTP {status}", reason=Reason.JENKINS_REJECTED
        )
    if isinstance(exc, (jenkins.TimeoutException, requests.Timeout)):
        return JenkinsTransientError(f"{what}: timed out", reason=Reason.JENKINS_TIMEOUT)
    if isinstance(
        exc,
        (
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            ConnectionError,
            json.JSONDecodeError,
            jenkins.EmptyResponseException,
            jenkins.JenkinsException,
            OSError,
        ),
    ):
        return JenkinsTransientError(detail, reason=Reason.JENKINS_UNAVAILABLE)
    return JenkinsTransientError(detail, reason=Reason.JENKINS_UNAVAILABLE)


@contextmanager
def jenkins_errors(what: str) -> Iterator[None]:
    """Classify anything raised inside the block (for callers using python-jenkins directly)."""
    try:
        yield
    except Exception as exc:
        raise classify(exc, what) from exc


__all__ = ["classify", "jenkins_errors"]
