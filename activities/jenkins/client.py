"""The Jenkins engine: every call the product makes to Jenkins, via python-jenkins and the public REST API.

Methods are blocking (activities run them in a thread pool) and idempotent where the caller needs it:
``ensure_*`` converge, :meth:`JenkinsEngine.trigger` finds an execution's queued item or build before it
starts one, stop/cancel/gate calls accept "already done". Faults are classified in one place,
:func:`classify`, into :class:`~activities.errors.JenkinsTransientError` (retry) and
:class:`~activities.errors.JenkinsPermanentError` (do not). Reads (GETs) are retried inside the engine with a
small bounded backoff so one flaky answer does not fail an activity attempt; writes (POSTs) are not replayed
blindly: the operations that issue them re-check state first, and the activity retry does the rest.

REST paths used (Jenkins core, workflow-job, pipeline-input-step, credentials and Pipeline Stage View REST
API plugins; see docs/jenkins-plan.md and shared/reference/jenkins-rest.md):

- ``job/<n>/config.xml`` GET/POST, ``createItem?name=``, ``job/<n>/doDelete``, ``job/<n>/api/json``
- ``job/<n>/buildWithParameters?CUBEPAAS_EXECUTION_ID=..&delay=0sec`` (201, ``Location: queue/item/<id>/``)
- ``queue/api/json``, ``queue/item/<id>/api/json``, ``queue/cancelItem?id=``
- ``job/<n>/<b>/api/json``, ``.../stop``, ``.../term``, ``.../kill`` (WorkflowRun, all POST)
- ``job/<n>/<b>/wfapi/describe``, ``.../execution/node/<id>/wfapi/describe`` (``stageFlowNodes``)
- ``job/<n>/<b>/logText/progressiveText``, ``.../execution/node/<id>/log/logText/progressiveText``
- ``job/<n>/<b>/wfapi/pendingInputActions``, ``.../input/<Id>/proceedEmpty`` and ``.../input/<Id>/abort``
- ``credentials/store/system/domain/_/createCredentials``,
  ``.../credential/<id>/api/json``, ``.../config.xml``, ``.../doDelete``

Checked against the sources (search of jenkinsci repositories):

- A flow node's full log: workflow-api ``LogAction.getUrlName()`` is ``"log"`` and ``getLogText()`` is an
  ``AnnotatedLargeText`` (whose ``progressiveText`` serves ``X-Text-Size``/``X-More-Data``), hence
  ``execution/node/<id>/log/logText/progressiveText?start=``. The Stage View's ``FlowNodeLogExt``
  (``wfapi/log``) returns only the last ``maxReturnChars`` (10 KiB) with ``hasMore``; its ``consoleUrl`` is
  the node URL + ``log``.
- Gates: the Stage View's ``PendingInputActionsExt`` sets ``abortUrl`` = ``<run url>input/<id>/abort`` and
  ``proceedUrl`` = ``wfapi/inputSubmit?inputId=<id>`` (a form endpoint); ``InputStepExecution``'s
  ``doProceedEmpty`` and ``doAbort`` are ``@RequirePOST``. The engine uses the returned ``abortUrl`` and its
  ``proceedEmpty`` sibling.
- Stop: ``WorkflowRun.doTerm``/``doKill`` are ``@RequirePOST``; their links are printed 15 s after a stop.
- python-jenkins 1.8.3 turns 401/403/500 into ``JenkinsException`` (the ``HTTPError`` as context), 404 into
  ``NotFoundException``, re-raises other ``HTTPError``s, wraps timeouts in ``TimeoutException``, lets
  ``ConnectionError`` through; several helpers (``get_build_info``...) report any HTTP error as "does not
  exist", which is why the engine calls ``jenkins_request`` itself and classifies the status.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import quote, urljoin, urlsplit
from xml.sax.saxutils import escape

import jenkins
import requests
from pydantic import BaseModel, Field

from activities.errors import DevopsError, JenkinsPermanentError, JenkinsTransientError
from activities.jenkins.jobconfig import EXECUTION_ID_PARAM, config_matches, pipeline_job_config
from activities.jenkins.logs import (
    ConsoleChunk,
    LogCursor,
    ProgressiveAnswer,
    StepLogChunk,
    read_nodes,
    read_until_idle,
)
from activities.jenkins.status import StepState, map_result, map_status
from crds.reasons import Reason

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Jenkins job names we create: [A-Za-z0-9_.-], at most this long.
MAX_JOB_NAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: Names of the nested stages that wrap steps (docs/jenkins-plan.md).
STEP_STAGE = re.compile(r"^step-(\d+)-(\d+)$")


def job_name(namespace: str, pipeline: str, run: int | str) -> str:
    """``<namespace>-<pipeline>-<run>`` reduced to [A-Za-z0-9_.-] and at most :data:`MAX_JOB_NAME` long.

    A name that had to be changed (unsafe characters, or too long) keeps a readable prefix and ends with a
    hash of the original, so distinct inputs never collide.
    """
    raw = f"{namespace}-{pipeline}-{run}"
    name = _UNSAFE.sub("_", raw)
    if name == raw and len(name) <= MAX_JOB_NAME and name.strip(".") == name:
        return name
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    prefix = name[: MAX_JOB_NAME - len(digest) - 1].strip(".")
    return f"{prefix}-{digest}"


# ---------------------------------------------------------------------------------------------- errors


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


# ---------------------------------------------------------------------------------------------- models


class BuildRef(BaseModel):
    """A triggered build: the queue item while it waits, the build number once it started."""

    queue_id: int | None = None
    number: int | None = None
    #: The queue item was cancelled before a build started.
    cancelled: bool = False


class StepStatus(BaseModel):
    """One step: the nested ``step-<stage>-<step>`` stage of the run."""

    stage_index: int
    step_index: int
    name: str
    node_id: str
    status: str
    state: StepState
    start_millis: int | None = None
    end_millis: int | None = None
    error: str | None = None


class StageStatus(BaseModel):
    """One user stage (index 0 is the clone stage) and its steps."""

    index: int
    name: str
    node_id: str | None
    status: str
    state: StepState
    start_millis: int | None = None
    end_millis: int | None = None
    error: str | None = None
    steps: list[StepStatus] = Field(default_factory=list)


class PendingInput(BaseModel):
    """An ``input`` step waiting (a gate): its id as Jenkins reports it (capitalised) and its URLs."""

    id: str
    message: str = ""
    proceed_url: str
    abort_url: str


class BuildStatus(BaseModel):
    """A build as the workflow needs it."""

    job: str
    number: int
    building: bool
    result: str | None
    #: wfapi run status (``IN_PROGRESS``, ``PAUSED_PENDING_INPUT``, ``SUCCESS``...), or derived from result.
    status: str
    state: StepState
    start_millis: int | None = None
    end_millis: int | None = None
    stages: list[StageStatus] = Field(default_factory=list)
    pending_inputs: list[PendingInput] = Field(default_factory=list)


CredentialKind = Literal["usernamePassword", "string"]

_CRED_CLASS = {
    "usernamePassword": "com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl",
    "string": "org.jenkinsci.plugins.plaincredentials.impl.StringCredentialsImpl",
}
_CRED_STORE = "credentials/store/system/domain/_/"


# ---------------------------------------------------------------------------------------------- engine


class JenkinsEngine:
    """Typed, classified, idempotent access to one Jenkins (or jenkins-lite)."""

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
        self._read_attempts = max(1, read_attempts)
        self._backoff = backoff
        self._poll = poll_interval

    # -- plumbing -------------------------------------------------------------------------------

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

    # -- version / health ---------------------------------------------------------------------

    def version(self) -> str:
        """Jenkins' version (``X-Jenkins``); also proves the URL and credentials work."""
        return self._retrying("version", lambda: str(self._j.get_version()))

    # -- jobs -------------------------------------------------------------------------------------

    def get_job_config(self, name: str) -> str | None:
        """The job's config.xml, ``None`` when the job does not exist."""
        try:
            return self._get(self._job(name) + "config.xml", f"get config of job {name}").text
        except JenkinsPermanentError as err:
            if err.reason == Reason.JENKINS_NOT_FOUND:
                return None
            raise

    def ensure_job(self, name: str, script: str, description: str = "") -> bool:
        """Create the Pipeline job or reconfigure it when its script (normalized) or parameter differ.

        Returns True when something changed. Safe to repeat: a create whose answer was lost is found by
        the next look.
        """
        wanted = pipeline_job_config(script, description)

        def op() -> bool:
            current = self.get_job_config(name)
            if current is None:
                try:
                    self._post(
                        "createItem",
                        f"create job {name}",
                        params={"name": name},
                        data=wanted.encode(),
                        headers={"Content-Type": "text/xml; charset=utf-8"},
                        config_write=True,
                    )
                    return True
                except JenkinsPermanentError as err:
                    # 400 "already exists": an earlier create went through; compare below.
                    if err.reason != Reason.JENKINS_INVALID_CONFIG:
                        raise
                    current = self.get_job_config(name)
                    if current is None:
                        raise
            if config_matches(current, script):
                return False
            self._post(
                self._job(name) + "config.xml",
                f"reconfigure job {name}",
                data=wanted.encode(),
                headers={"Content-Type": "text/xml; charset=utf-8"},
                config_write=True,
            )
            return True

        return self._retrying(f"ensure job {name}", op)

    def job_exists(self, name: str) -> bool:
        return self._get_json_or_none(self._job(name) + "api/json", f"job {name}") is not None

    def delete_job(self, name: str) -> bool:
        """Delete the job; False when it did not exist."""

        def op() -> bool:
            if not self.job_exists(name):
                return False
            self._post(self._job(name) + "doDelete", f"delete job {name}", ok_404=True)
            return True

        return self._retrying(f"delete job {name}", op)

    def keep_last_jobs(self, prefix: str, n: int) -> list[str]:
        """Delete all but the ``n`` most recently built jobs named ``<prefix><run number>``.

        Only names that are the prefix followed by digits count, so the jobs of a pipeline ``app`` never
        include those of ``app-x`` (``<ns>-app-x-1`` also starts with ``<ns>-app-``).
        """
        info = self._get_json("api/json", "list jobs", params={"tree": "jobs[name]"})
        names = [
            str(j["name"])
            for j in info.get("jobs", [])
            if str(j.get("name", "")).startswith(prefix) and str(j["name"])[len(prefix) :].isdigit()
        ]
        dated: list[tuple[int, str]] = []
        for name in names:
            job = self._get_json_or_none(self._job(name) + "api/json", f"job {name}") or {}
            last = job.get("lastBuild") or {}
            stamp = 0
            if last.get("number"):
                b = self._get_json_or_none(f"{self._job(name)}{last['number']}/api/json", f"build of {name}")
                stamp = int((b or {}).get("timestamp") or 0)
            dated.append((stamp, name))
        dated.sort(reverse=True)
        deleted = [name for _, name in dated[max(0, n) :]]
        for name in deleted:
            self.delete_job(name)
        return deleted

    # -- credentials ------------------------------------------------------------------------------

    def credential_exists(self, cred_id: str) -> bool:
        path = f"{_CRED_STORE}credential/{quote(cred_id, safe='')}/api/json"
        return self._get_json_or_none(path, f"credential {cred_id}") is not None

    def ensure_credential(
        self,
        cred_id: str,
        kind: CredentialKind,
        *,
        username: str | None = None,
        password: str | None = None,
        secret: str | None = None,
        description: str = "",
    ) -> bool:
        """Create or update a global credential (``usernamePassword`` or secret text ``string``).

        Values come from the calling activity (read from a Kubernetes Secret) and never reach a log or an
        error message. Returns True when created, False when updated.
        """
        if kind == "usernamePassword":
            if username is None or password is None:
                raise ValueError("usernamePassword credentials need username and password")
            fields = {"username": username, "password": password}
        elif kind == "string":
            if secret is None:
                raise ValueError("string credentials need secret")
            fields = {"secret": secret}
        else:
            raise ValueError(f"unknown credential kind {kind!r}")
        cls = _CRED_CLASS[kind]

        def op() -> bool:
            if self.credential_exists(cred_id):
                body = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
                xml = (
                    f"<{cls}><scope>GLOBAL</scope><id>{escape(cred_id)}</id>"
                    f"<description>{escape(description)}</description>{body}</{cls}>"
                )
                self._post(
                    f"{_CRED_STORE}credential/{quote(cred_id, safe='')}/config.xml",
                    f"update credential {cred_id}",
                    data=xml.encode(),
                    headers={"Content-Type": "application/xml; charset=utf-8"},
                    config_write=True,
                )
                return False
            payload = {
                "": "0",
                "credentials": {
                    "scope": "GLOBAL",
                    "id": cred_id,
                    "description": description,
                    "$class": cls,
                    **fields,
                },
            }
            self._post(
                f"{_CRED_STORE}createCredentials",
                f"create credential {cred_id}",
                data={"json": json.dumps(payload)},
                config_write=True,
            )
            return True

        return self._retrying(f"ensure credential {cred_id}", op)

    def delete_credential(self, cred_id: str) -> bool:
        """Delete a credential; False when it did not exist."""

        def op() -> bool:
            if not self.credential_exists(cred_id):
                return False
            self._post(
                f"{_CRED_STORE}credential/{quote(cred_id, safe='')}/doDelete",
                f"delete credential {cred_id}",
                ok_404=True,
            )
            return True

        return self._retrying(f"delete credential {cred_id}", op)

    # -- trigger ----------------------------------------------------------------------------------

    @staticmethod
    def _params_of(actions: Any) -> dict[str, str]:
        params: dict[str, str] = {}
        for action in actions or []:
            for p in (action or {}).get("parameters", []) or []:
                if isinstance(p, dict) and "name" in p:
                    params[str(p["name"])] = "" if p.get("value") is None else str(p["value"])
        return params

    def _queued_item(self, job: str, execution_id: str) -> int | None:
        """A waiting queue item of ``job`` carrying ``execution_id``."""
        items = self._get_json("queue/api/json", "read the queue").get("items", [])
        for item in items:
            task = item.get("task") or {}
            task_url = str(task.get("url") or "")
            if task.get("name") != job and not task_url.rstrip("/").endswith(
                "/" + self._job(job).rstrip("/")
            ):
                continue
            params = self._params_of(item.get("actions"))
            raw = str(item.get("params") or "")
            if params.get(
                EXECUTION_ID_PARAM
            ) == execution_id or f"{EXECUTION_ID_PARAM}={execution_id}" in raw.split("\n"):
                return int(item["id"])
        return None

    def find_build(self, job: str, execution_id: str) -> int | None:
        """The newest build of ``job`` whose parameter carries ``execution_id``."""
        info = self._get_json_or_none(self._job(job) + "api/json", f"job {job}")
        if info is None:
            raise JenkinsPermanentError(
                f"job {job} does not exist in Jenkins", reason=Reason.JENKINS_NOT_FOUND
            )
        numbers = sorted(
            {int(b["number"]) for b in info.get("builds", []) or [] if "number" in b}, reverse=True
        )
        for number in numbers:
            build = self._get_json_or_none(f"{self._job(job)}{number}/api/json", f"build {job} #{number}")
            if build and self._params_of(build.get("actions")).get(EXECUTION_ID_PARAM) == execution_id:
                return number
        return None

    def find(self, job: str, execution_id: str) -> BuildRef | None:
        """The execution's queued item or build, if Jenkins has one. The queue is read first: an item leaves
        the queue when its build starts, so this order never misses one in between."""
        queue_id = self._queued_item(job, execution_id)
        if queue_id is not None:
            return self.resolve(job, BuildRef(queue_id=queue_id), execution_id)
        number = self.find_build(job, execution_id)
        return BuildRef(number=number) if number is not None else None

    def trigger(self, job: str, execution_id: str) -> BuildRef:
        """Start the execution's build unless Jenkins already has it queued or built (idempotent).

        ``buildWithParameters`` with ``delay=0sec`` (python-jenkins' ``build_job`` cannot pass the delay, and
        Jenkins' default quiet period is 5 s). If the answer is lost, the next attempt finds the item.
        """

        def op() -> BuildRef:
            found = self.find(job, execution_id)
            if found is not None:
                return found
            response = self._post(
                self._job(job) + "buildWithParameters",
                f"trigger {job}",
                params={EXECUTION_ID_PARAM: execution_id, "delay": "0sec"},
            )
            location = ""
            if response is not None:
                location = response.headers.get("Location", "")
                for earlier in response.history:
                    location = location or earlier.headers.get("Location", "")
            m = re.search(r"/queue/item/(\d+)/?$", location)
            if m is None:
                # No Location (an old Jenkins, a proxy): look it up.
                found = self.find(job, execution_id)
                if found is None:
                    raise JenkinsTransientError(f"trigger {job}: no queue item in the answer and none found")
                return found
            return self.resolve(job, BuildRef(queue_id=int(m.group(1))), execution_id)

        return self._retrying(f"trigger {job}", op)

    def resolve(self, job: str, ref: BuildRef, execution_id: str | None = None) -> BuildRef:
        """Turn a queue item into a build number when its build has started.

        Queue items vanish a few minutes after their build starts (404); then the job's builds are scanned
        for the execution id.
        """
        if ref.number is not None or ref.queue_id is None:
            return ref
        item = self._get_json_or_none(f"queue/item/{ref.queue_id}/api/json", f"queue item {ref.queue_id}")
        if item is None:
            if execution_id is None:
                raise JenkinsPermanentError(
                    f"queue item {ref.queue_id} of {job} expired and no execution id "
                    "was given to find its build",
                    reason=Reason.JENKINS_NOT_FOUND,
                )
            number = self.find_build(job, execution_id)
            if number is None:
                # Left the queue without a build we can see: a cancelled item that expired.
                return BuildRef(queue_id=ref.queue_id, cancelled=True)
            return BuildRef(queue_id=ref.queue_id, number=number)
        executable = item.get("executable") or {}
        if executable.get("number") is not None:
            return BuildRef(queue_id=ref.queue_id, number=int(executable["number"]))
        if item.get("cancelled"):
            return BuildRef(queue_id=ref.queue_id, cancelled=True)
        return BuildRef(queue_id=ref.queue_id)

    def wait_for_start(self, job: str, ref: BuildRef, execution_id: str | None, timeout: float) -> BuildRef:
        """Poll :meth:`resolve` until the build has a number, is cancelled, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            ref = self.resolve(job, ref, execution_id)
            if ref.number is not None or ref.cancelled or time.monotonic() >= deadline:
                return ref
            time.sleep(self._poll)

    # -- status -----------------------------------------------------------------------------------

    def build_info(self, job: str, number: int) -> dict[str, Any]:
        info = self._get_json_or_none(f"{self._job(job)}{number}/api/json", f"build {job} #{number}")
        if info is None:
            raise JenkinsPermanentError(
                f"build {job} #{number} does not exist in Jenkins", reason=Reason.JENKINS_NOT_FOUND
            )
        return dict(info)

    def describe(self, job: str, number: int, *, skipped_stages: frozenset[int] = frozenset()) -> BuildStatus:
        """The build, its stages and steps (split by the ``step-<i>-<j>`` naming rule) and pending gates.

        ``skipped_stages``: indexes the plan marked skipped (a real Jenkins shows a scripted stage that only
        echoes as SUCCESS; jenkins-lite shows NOT_EXECUTED); they are reported Skipped either way.
        """
        info = self.build_info(job, number)
        building = bool(info.get("building"))
        result = info.get("result")
        run = (
            self._get_json_or_none(f"{self._job(job)}{number}/wfapi/describe", f"stages of {job} #{number}")
            or {}
        )
        stages: list[StageStatus] = []
        steps: list[StepStatus] = []
        for raw in run.get("stages", []) or []:
            name = str(raw.get("name", ""))
            status = str(raw.get("status") or "NOT_EXECUTED")
            start = raw.get("startTimeMillis") or None
            duration = raw.get("durationMillis")
            end = (
                (int(start) + int(duration))
                if start and duration is not None and status not in ("IN_PROGRESS", "PAUSED_PENDING_INPUT")
                else None
            )
            error = (raw.get("error") or {}).get("message")
            m = STEP_STAGE.match(name)
            if m:
                steps.append(
                    StepStatus(
                        stage_index=int(m.group(1)),
                        step_index=int(m.group(2)),
                        name=name,
                        node_id=str(raw.get("id")),
                        status=status,
                        state=map_status(status),
                        start_millis=start,
                        end_millis=end,
                        error=error,
                    )
                )
            else:
                index = len(stages)
                state = StepState.SKIPPED if index in skipped_stages else map_status(status)
                stages.append(
                    StageStatus(
                        index=index,
                        name=name,
                        node_id=str(raw.get("id")),
                        status=status,
                        state=state,
                        start_millis=start,
                        end_millis=end,
                        error=error,
                    )
                )
        for step in steps:
            if 0 <= step.stage_index < len(stages):
                stages[step.stage_index].steps.append(step)
        for stage in stages:
            stage.steps.sort(key=lambda s: s.step_index)
        pending = self.pending_inputs(job, number) if building else []
        run_status = str(run.get("status") or "")
        if not run_status:
            run_status = "IN_PROGRESS" if building else str(result or "NOT_EXECUTED")
        state = map_result(result, building)
        if building and pending:
            state = StepState.WAITING
        start_ms = info.get("timestamp") or None
        end_ms = (int(start_ms) + int(info.get("duration") or 0)) if start_ms and not building else None
        return BuildStatus(
            job=job,
            number=number,
            building=building,
            result=result,
            status=run_status,
            state=state,
            start_millis=start_ms,
            end_millis=end_ms,
            stages=stages,
            pending_inputs=pending,
        )

    # -- logs -------------------------------------------------------------------------------------

    def _progressive(self, path: str, what: str) -> Callable[[int], ProgressiveAnswer]:
        def fetch(start: int) -> ProgressiveAnswer:
            response = self._get(path, what, params={"start": str(start)})
            size = response.headers.get("X-Text-Size")
            data = response.content
            more = response.headers.get("X-More-Data", "").lower() == "true"
            return ProgressiveAnswer(data, int(size) if size is not None else start + len(data), more)

        return fetch

    def read_console(self, job: str, number: int, start: int = 0) -> ConsoleChunk:
        """The build console from byte ``start``: ``(text, next_offset, more)``; more = it may grow."""
        fetch = self._progressive(
            f"{self._job(job)}{number}/logText/progressiveText", f"console of {job} #{number}"
        )
        return read_until_idle(fetch, start)

    def read_console_complete(self, job: str, number: int, timeout: float = 3600.0) -> str:
        """The whole console, waiting until the build stops writing (or ``timeout``)."""
        return "".join(self.follow_console(job, number, timeout=timeout))

    def follow_console(self, job: str, number: int, start: int = 0, timeout: float = 3600.0) -> Iterator[str]:
        deadline = time.monotonic() + timeout
        offset = start
        while True:
            chunk = self.read_console(job, number, offset)
            if chunk.text:
                yield chunk.text
            offset = chunk.next_offset
            if not chunk.more:
                return
            if time.monotonic() >= deadline:
                raise JenkinsTransientError(f"console of {job} #{number} still growing after {timeout}s")
            time.sleep(self._poll)

    def step_flow_nodes(
        self, job: str, number: int, step_node_id: str
    ) -> tuple[list[str], dict[str, bool], bool]:
        """The flow nodes of a step's stage (node describe ``stageFlowNodes``), which of them finished, and
        whether the stage itself still runs."""
        path = f"{self._job(job)}{number}/execution/node/{quote(step_node_id, safe='')}/wfapi/describe"
        node = self._get_json_or_none(path, f"node {step_node_id} of {job} #{number}")
        if node is None:
            raise JenkinsPermanentError(
                f"node {step_node_id} of {job} #{number} does not exist", reason=Reason.JENKINS_NOT_FOUND
            )
        ids: list[str] = []
        finished: dict[str, bool] = {}
        for fn in node.get("stageFlowNodes", []) or []:
            fid = str(fn.get("id"))
            ids.append(fid)
            finished[fid] = str(fn.get("status") or "") not in ("IN_PROGRESS", "PAUSED_PENDING_INPUT", "")
        running = str(node.get("status") or "") in ("IN_PROGRESS", "PAUSED_PENDING_INPUT")
        return ids, finished, running

    def read_step_log(
        self, job: str, number: int, step_node_id: str, cursor: LogCursor | None = None
    ) -> StepLogChunk:
        """A step's log from ``cursor``: the logs of its flow nodes, each complete, in order."""
        ids, finished, running = self.step_flow_nodes(job, number, step_node_id)

        def fetch_node(node_id: str) -> Callable[[int], ProgressiveAnswer]:
            node = quote(node_id, safe="")
            path = f"{self._job(job)}{number}/execution/node/{node}/log/logText/progressiveText"
            return self._progressive(path, f"log of node {node_id} of {job} #{number}")

        chunk = read_nodes(ids, finished, fetch_node, cursor)
        return StepLogChunk(chunk.text, chunk.cursor, chunk.more or running)

    def copy_step_log(
        self,
        job: str,
        number: int,
        step_node_id: str,
        out: BinaryIO,
        *,
        chunk: int = 1 << 20,
        timeout: float = 3600.0,
    ) -> int:
        """Stream a step's whole log into ``out`` in bounded memory; returns the bytes written.

        Each flow node's log is read with ``progressiveText`` as a streamed response, ``chunk`` bytes at a
        time, from the offset reached so far (``X-Text-Size``), until it is complete (no ``X-More-Data``).
        A fault mid-stream is retried from that offset, so nothing is lost or written twice.
        """
        deadline = time.monotonic() + timeout
        written = 0
        offsets: dict[str, int] = {}
        while True:
            ids, finished, running = self.step_flow_nodes(job, number, step_node_id)
            pending = False
            for node_id in ids:
                node = quote(node_id, safe="")
                path = f"{self._job(job)}{number}/execution/node/{node}/log/logText/progressiveText"
                while True:
                    start = offsets.get(node_id, 0)
                    more, copied = self._retrying(
                        f"log of node {node_id} of {job} #{number}",
                        functools.partial(self._stream_progressive, path, start, out, chunk),
                    )
                    offsets[node_id] = start + copied
                    written += copied
                    if not more or copied == 0:
                        break
                if more or not finished.get(node_id, True):
                    pending = True
            if not (pending or running):
                return written
            if time.monotonic() >= deadline:
                raise JenkinsTransientError(f"log of step node {step_node_id} still growing after {timeout}s")
            time.sleep(self._poll)

    def _stream_progressive(self, path: str, start: int, out: BinaryIO, chunk: int) -> tuple[bool, int]:
        """One streamed ``progressiveText`` answer from ``start`` into ``out``: (more may come, bytes)."""
        req = requests.Request("GET", self._abs(path), params={"start": str(start)})
        response: requests.Response = self._j.jenkins_request(req, stream=True)
        try:
            size = response.headers.get("X-Text-Size")
            more = response.headers.get("X-More-Data", "").lower() == "true"
            mark = out.tell()
            copied = 0
            try:
                for part in response.iter_content(chunk_size=chunk):
                    out.write(part)
                    copied += len(part)
            except Exception:
                out.seek(mark)  # a broken stream: forget its partial bytes; the retry starts at ``start``
                out.truncate()
                raise
            if size is not None and int(size) - start != copied:
                out.seek(mark)
                out.truncate()
                raise JenkinsTransientError(
                    f"{path}: got {copied} bytes, X-Text-Size says {int(size) - start}"
                )
            return more, copied
        finally:
            response.close()

    def read_step_log_complete(
        self, job: str, number: int, step_node_id: str, timeout: float = 3600.0
    ) -> str:
        """A step's whole log as text, waiting until the step ends (or ``timeout``); for small logs —
        the store-log activity streams with :meth:`copy_step_log` instead."""
        buffer = io.BytesIO()
        self.copy_step_log(job, number, step_node_id, buffer, timeout=timeout)
        return buffer.getvalue().decode("utf-8", errors="replace")

    # -- gates ------------------------------------------------------------------------------------

    def pending_inputs(self, job: str, number: int) -> list[PendingInput]:
        """Input steps the build waits on (``wfapi/pendingInputActions``)."""
        path = f"{self._job(job)}{number}/wfapi/pendingInputActions"
        raw = self._get_json_or_none(path, f"pending inputs of {job} #{number}") or []
        run_path = f"{self._job(job)}{number}/"
        out: list[PendingInput] = []
        for item in raw:
            input_id = str(item.get("id"))
            abort_url = str(item.get("abortUrl") or f"{run_path}input/{quote(input_id, safe='')}/abort")
            # proceedUrl is the Stage View's form endpoint (inputSubmit); proceedEmpty sits next to abort.
            proceed_url = re.sub(r"/abort/?$", "/proceedEmpty", abort_url)
            out.append(
                PendingInput(
                    id=input_id,
                    message=str(item.get("message") or ""),
                    proceed_url=proceed_url,
                    abort_url=abort_url,
                )
            )
        return out

    def _find_input(self, job: str, number: int, input_id: str) -> PendingInput | None:
        wanted = input_id.lower()
        for item in self.pending_inputs(job, number):
            if item.id.lower() == wanted:
                return item
        return None

    def _answer_input(
        self, job: str, number: int, input_id: str, action: Literal["proceed", "abort"]
    ) -> bool:
        answered = False

        def op() -> bool:
            # Re-checked on every attempt: a POST whose answer was lost shows up as "no longer pending".
            nonlocal answered
            item = self._find_input(job, number, input_id)
            if item is None:
                return answered
            url = item.proceed_url if action == "proceed" else item.abort_url
            answered = True
            self._post(url, f"{action} {item.id} of {job} #{number}", ok_404=True)
            return True

        return self._retrying(f"{action} {input_id} of {job} #{number}", op)

    def proceed(self, job: str, number: int, input_id: str) -> bool:
        """Proceed a gate (``input/<Id>/proceedEmpty``). False when it is not pending (already answered)."""
        return self._answer_input(job, number, input_id, "proceed")

    def abort_input(self, job: str, number: int, input_id: str) -> bool:
        """Abort a gate (``input/<Id>/abort``): the build ends ABORTED. False when it is not pending."""
        return self._answer_input(job, number, input_id, "abort")

    # -- stop -------------------------------------------------------------------------------------

    def _wait_finished(self, job: str, number: int, seconds: float) -> str | None:
        deadline = time.monotonic() + seconds
        while True:
            info = self.build_info(job, number)
            if not info.get("building"):
                return str(info.get("result") or "ABORTED")
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(self._poll, max(0.05, deadline - time.monotonic())))

    def cancel(
        self,
        job: str,
        queue_id: int | None,
        number: int | None,
        grace_seconds: float = 30.0,
        execution_id: str | None = None,
    ) -> str:
        """Stop the execution's build wherever it is; returns the final result.

        A queued item is cancelled (``queue/cancelItem``; result ``ABORTED`` with no build). A running build
        gets ``stop``; if it does not end within ``grace_seconds``, ``term`` (running steps fail), then
        ``kill`` (hard). Repeating the call is harmless.
        """
        ref = BuildRef(queue_id=queue_id, number=number)
        if ref.number is None and ref.queue_id is not None:
            ref = self.resolve(job, ref, execution_id)
            if ref.number is None and not ref.cancelled:
                # Jenkins answers cancelItem with a redirect or 404 even when it worked.
                self._retrying(
                    f"cancel queue item {ref.queue_id}",
                    lambda: self._post(
                        "queue/cancelItem",
                        f"cancel queue item {ref.queue_id}",
                        params={"id": str(ref.queue_id)},
                        ok_404=True,
                    ),
                )
                ref = self.resolve(job, ref, execution_id)
            if ref.number is None:
                return "ABORTED"
        if ref.number is None:
            if execution_id is not None:
                found = self.find(job, execution_id)
                if found is not None and (found.number is not None or found.queue_id is not None):
                    return self.cancel(job, found.queue_id, found.number, grace_seconds, execution_id)
            return "ABORTED"
        build = ref.number
        for action in ("stop", "term", "kill"):
            info = self.build_info(job, build)
            if not info.get("building"):
                return str(info.get("result") or "ABORTED")
            # term/kill links appear ~15 s into a stop in Jenkins; a refusal there is covered by escalation.
            # The POSTs are idempotent (a second stop of a stopping build changes nothing): retried here.
            what = f"{action} {job} #{build}"
            post = functools.partial(self._post, f"{self._job(job)}{build}/{action}", what, ok_404=True)
            try:
                self._retrying(what, post)
            except JenkinsTransientError:
                if action == "stop":
                    raise
            result = self._wait_finished(job, build, grace_seconds)
            if result is not None:
                return result
        result = self._wait_finished(job, build, grace_seconds)
        if result is None:
            raise JenkinsTransientError(f"{job} #{build} still running after stop, term and kill")
        return result


@contextmanager
def jenkins_errors(what: str) -> Iterator[None]:
    """Classify anything raised inside the block (for callers using python-jenkins directly)."""
    try:
        yield
    except Exception as exc:
        raise classify(exc, what) from exc
