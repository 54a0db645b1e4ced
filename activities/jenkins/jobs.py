"""Pipeline jobs: names, create or reconfigure, delete, and keeping the jobs of a pipeline's last runs."""

from __future__ import annotations

import enum
import hashlib
import logging
import re
from collections.abc import Container

from activities.errors import JenkinsPermanentError
from activities.jenkins.jobconfig import config_matches, pipeline_job_config
from activities.jenkins.models import PipelineJob
from activities.jenkins.transport import JenkinsTransport
from crds.reasons import Reason

log = logging.getLogger(__name__)

MAX_JOB_NAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


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


class JobChange(enum.Enum):
    """What :meth:`JobsMixin.ensure_job` did; truthy when it wrote."""

    #: Created by this call: no build of it can exist yet (only the run that creates a job triggers it).
    CREATED = "created"
    RECONFIGURED = "reconfigured"
    UNCHANGED = "unchanged"

    def __bool__(self) -> bool:
        return self is not JobChange.UNCHANGED


class JobsMixin(JenkinsTransport):
    """Jobs (``createItem``, ``job/<n>/config.xml``, ``job/<n>/doDelete``)."""

    def get_job_config(self, name: str) -> str | None:
        """The job's config.xml, ``None`` when the job does not exist."""
        try:
            return self._get(self._job(name) + "config.xml", f"get config of job {name}").text
        except JenkinsPermanentError as err:
            if err.reason == Reason.JENKINS_NOT_FOUND:
                return None
            raise

    def ensure_job(self, name: str, script: str, description: str = "") -> JobChange:
        """Create the Pipeline job or reconfigure it when its script (normalized) or parameter differ.

        Safe to repeat: a create whose answer was lost is found by the next look (and then counts as
        reconfigured or unchanged, never as created: a build of it may exist by then).
        """
        wanted = pipeline_job_config(script, description)

        def op() -> JobChange:
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
                    return JobChange.CREATED
                except JenkinsPermanentError as err:
                    # 400 "already exists": an earlier create went through; compare below.
                    if err.reason != Reason.JENKINS_INVALID_CONFIG:
                        raise
                    current = self.get_job_config(name)
                    if current is None:
                        raise
            if config_matches(current, script):
                return JobChange.UNCHANGED
            self._post(
                self._job(name) + "config.xml",
                f"reconfigure job {name}",
                data=wanted.encode(),
                headers={"Content-Type": "text/xml; charset=utf-8"},
                config_write=True,
            )
            return JobChange.RECONFIGURED

        return self._retrying(f"ensure job {name}", op)

    def job_exists(self, name: str) -> bool:
        return self._get_json_or_none(self._job(name) + "api/json", f"job {name}") is not None

    def delete_job(self, name: str) -> bool:
        """Delete the job; False when it did not exist (Jenkins answers 404), or a retry found it gone."""

        def op() -> bool:
            return self._post(self._job(name) + "doDelete", f"delete job {name}", ok_404=True) is not None

        return self._retrying(f"delete job {name}", op)

    def pipeline_jobs(self, prefix: str) -> list[PipelineJob]:
        """The jobs named ``<prefix><run number>``, each with whether Jenkins still works on it.

        Only names that are the prefix followed by digits count, so the jobs of a pipeline ``app`` never
        include those of ``app-x`` (``<ns>-app-x-1`` also starts with ``<ns>-app-``). A job is *active*
        while it has no build yet (its trigger may be on the way), a build waits in the queue, or its
        last build is still building.
        """
        info = self._get_json("api/json", "list jobs", params={"tree": "jobs[name]"})
        jobs: list[PipelineJob] = []
        for entry in info.get("jobs", []):
            name = str(entry.get("name", ""))
            suffix = name[len(prefix) :]
            if not name.startswith(prefix) or not suffix.isdigit():
                continue
            job = self._get_json_or_none(self._job(name) + "api/json", f"job {name}")
            if job is None:
                continue  # deleted meanwhile
            last = job.get("lastBuild") or {}
            active = bool(job.get("inQueue")) or not last.get("number")
            if not active:
                build = self._get_json_or_none(
                    f"{self._job(name)}{last['number']}/api/json", f"build of {name}"
                )
                active = build is None or bool(build.get("building"))
            jobs.append(PipelineJob(name=name, run=int(suffix), active=active))
        return jobs

    def keep_last_jobs(self, prefix: str, n: int, finished_runs: Container[int]) -> list[str]:
        """Delete the jobs of finished runs beyond the ``n`` newest runs (by run number); returns them.

        A job is deleted only when its run is in ``finished_runs`` (the caller knows which runs ended)
        *and* Jenkins has nothing queued or building for it: a job of a run still building, or still
        reading its logs, is never touched. Such jobs beyond ``n`` go at a later run's cleanup.
        """
        jobs = sorted(self.pipeline_jobs(prefix), key=lambda j: j.run, reverse=True)
        deleted: list[str] = []
        for job in jobs[max(0, n) :]:
            if job.active or job.run not in finished_runs:
                log.info("jenkins: keeping job %s beyond the last %d: its run has not finished", job.name, n)
                continue
            if self.delete_job(job.name):
                deleted.append(job.name)
        return deleted


__all__ = ["MAX_JOB_NAME", "JobChange", "JobsMixin", "job_name"]
