"""Builds: the idempotent trigger, queue items turned into build numbers, and stop/term/kill."""

from __future__ import annotations

import functools
import re
import time
from typing import Any

from activities.errors import JenkinsPermanentError, JenkinsTransientError
from activities.jenkins.jobconfig import EXECUTION_ID_PARAM
from activities.jenkins.models import BuildRef
from activities.jenkins.transport import JenkinsTransport
from crds.reasons import Reason


class BuildsMixin(JenkinsTransport):
    """Queue and builds (``buildWithParameters``, ``queue/...``, ``job/<n>/<b>/stop|term|kill``)."""

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

    def trigger(self, job: str, execution_id: str, *, fresh: bool = False) -> BuildRef:
        """Start the execution's build unless Jenkins already has it queued or built (idempotent).

        ``buildWithParameters`` with ``delay=0sec`` (python-jenkins' ``build_job`` cannot pass the delay, and
        Jenkins' default quiet period is 5 s). If the answer is lost, the next attempt finds the item.
        ``fresh``: the caller created the job just now, so its first attempt has nothing to find (the
        queue and the job are read only from a second attempt on).
        """
        attempts = 0

        def op() -> BuildRef:
            nonlocal attempts
            attempts += 1
            found = None if fresh and attempts == 1 else self.find(job, execution_id)
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


__all__ = ["BuildsMixin"]
