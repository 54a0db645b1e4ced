"""State of jenkins-lite, kept on disk like a JENKINS_HOME.

Layout: HOME/jobs/<name>/config.xml, nextBuildNumber, builds/<n>/build.json, builds/<n>/log (console),
builds/<n>/nodes/<id>.log (flow node logs), HOME/queue.json, HOME/credentials.json (mode 0600),
HOME/workspace/<job>@<n>/ (build workspaces). One re-entrant lock (State.lock) guards every mutation.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from devstack.jenkins_lite.plan import ConfigError, JobConfig, parse_config


def now_ms() -> int:
    return int(time.time() * 1000)


class HttpError(Exception):
    """An answer other than success, shaped like Jenkins' (status, text, extra headers)."""

    def __init__(self, status: int, message: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def failure(message: str) -> HttpError:
    """hudson.model.Failure: 400 with the message in X-Error (AbstractModelObject/error.jelly)."""
    return HttpError(400, message, {"X-Error": message})


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if mode is not None else 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


@dataclass
class FlowNode:
    id: str
    name: str
    kind: str  # "stage" (user stage or step-<stage>-<step>) or "atom" (sh / input step)
    stage: str | None = None  # enclosing stage id, for atoms
    status: str = "IN_PROGRESS"  # Stage View StatusExt
    start_ms: int = 0
    end_ms: int | None = None
    pause_ms: int = 0
    error: dict[str, str | None] | None = None
    param_desc: str | None = None
    has_log: bool = False
    log_done: bool = False

    def duration(self, at_ms: int) -> int:
        return max(0, (self.end_ms if self.end_ms is not None else at_ms) - self.start_ms)


class BuildControl:
    """Requests from HTTP threads to the build's runner (not persisted)."""

    def __init__(self) -> None:
        self.signals = 0  # stop and term requests: each one sends SIGTERM to the running steps
        self.kill = False
        self.aborted_by: str | None = None
        self.input_decision: tuple[str, str, str] | None = None  # (input id, "proceed"|"abort", user)
        self.wake = threading.Event()

    @property
    def interrupted(self) -> bool:
        return self.signals > 0 or self.kill


@dataclass
class Build:
    job: str
    number: int
    queue_id: int
    params: list[dict[str, Any]]  # {"_class", "name", "value"}
    user: str
    scheduled_ms: int
    start_ms: int
    end_ms: int | None = None
    result: str | None = None
    building: bool = True
    nodes: list[FlowNode] = field(default_factory=list)
    next_node_id: int = 3
    pending_input: dict[str, str] | None = None  # {"id", "message", "proceedText", "node", "stage"}
    pgids: list[int] = field(default_factory=list)
    agent_pod: dict[str, str] | None = None  # {"namespace", "name"} of the build's agent pod, once created

    def __post_init__(self) -> None:
        self.control = BuildControl()
        self.dir = Path()

    def to_json(self) -> dict[str, Any]:
        # Shallow, field by field: dataclasses.asdict deep-copies every value first, which was most of
        # the cost of saving a build (it is saved on every change of its state). The result is only
        # serialized, never kept.
        d = {f.name: getattr(self, f.name) for f in _BUILD_FIELDS}
        d["nodes"] = [vars(n) for n in self.nodes]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Build:
        nodes = [FlowNode(**n) for n in d.pop("nodes", [])]
        b = cls(**d)
        b.nodes = nodes
        return b

    def node(self, node_id: str) -> FlowNode | None:
        for n in self.nodes:
            if n.id == node_id:
                return n
        return None

    def new_node(
        self, name: str, kind: str, stage: str | None = None, param_desc: str | None = None
    ) -> FlowNode:
        n = FlowNode(str(self.next_node_id), name, kind, stage, start_ms=now_ms(), param_desc=param_desc)
        self.next_node_id += 1
        self.nodes.append(n)
        return n

    @property
    def console_path(self) -> Path:
        return self.dir / "log"

    def node_log_path(self, node_id: str) -> Path:
        return self.dir / "nodes" / f"{node_id}.log"

    @property
    def duration(self) -> int:
        return 0 if self.end_ms is None else max(0, self.end_ms - self.start_ms)

    @property
    def paused(self) -> bool:
        return self.building and self.pending_input is not None


_BUILD_FIELDS = fields(Build)


@dataclass
class Job:
    name: str
    config_xml: str
    config: JobConfig | None
    next_build_number: int = 1
    builds: dict[int, Build] = field(default_factory=dict)

    @property
    def last_build(self) -> Build | None:
        return self.builds[max(self.builds)] if self.builds else None

    def last_matching(self, results: set[str] | None) -> Build | None:
        for n in sorted(self.builds, reverse=True):
            b = self.builds[n]
            if b.building:
                continue
            if results is None or b.result in results:
                return b
        return None


@dataclass
class QueueItem:
    id: int
    job: str
    params: list[dict[str, Any]]
    user: str
    in_queue_since: int
    quiet_until: int
    state: str = "waiting"  # waiting | blocked | buildable | left
    why: str | None = None
    buildable_since: int | None = None
    cancelled: bool = False
    build_number: int | None = None
    left_ms: int | None = None


_UNSAFE = set("?*/\\%!@#$^&|<>[]:;")


def check_good_name(name: str) -> None:
    """jenkins.model.Jenkins.checkGoodName."""
    if not name.strip():
        raise failure("No name is specified")
    for ch in name:
        if ch in _UNSAFE or ord(ch) < 32:
            raise failure(f"\u2018{ch}\u2019 is an unsafe character")
    if name.strip() in (".", ".."):
        raise failure(f"\u201c{name}\u201d is not an allowed name")


class State:
    def __init__(
        self,
        home: Path,
        user: str,
        token: str,
        version: str,
        executors: int = 4,
        queue_item_ttl: float = 300.0,
        quiet_period: int = 5,
        kill_grace: float = 3.0,
    ) -> None:
        self.home = home
        self.user = user
        self.token = token
        self.version = version
        self.executors = executors
        self.queue_item_ttl = queue_item_ttl
        self.quiet_period = quiet_period
        self.kill_grace = kill_grace
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.jobs: dict[str, Job] = {}
        self.queue: dict[int, QueueItem] = {}
        self.next_queue_id = 1
        self.credentials: dict[str, dict[str, Any]] = {}
        self.session = os.urandom(4).hex()

    # ---- persistence -------------------------------------------------------------------------------
    def job_dir(self, name: str) -> Path:
        return self.home / "jobs" / name

    def load(self) -> list[Build]:
        """Load HOME; returns builds that were running when the previous process ended."""
        (self.home / "jobs").mkdir(parents=True, exist_ok=True)
        interrupted: list[Build] = []
        for d in sorted((self.home / "jobs").iterdir()):
            cfg = d / "config.xml"
            if not cfg.is_file():
                continue
            xml_text = cfg.read_text("utf-8")
            job = Job(d.name, xml_text, _parse_or_none(xml_text))
            with contextlib.suppress(OSError, ValueError):
                job.next_build_number = int((d / "nextBuildNumber").read_text().strip())
            for bd in (d / "builds").glob("*/build.json"):
                try:
                    b = Build.from_json(json.loads(bd.read_text("utf-8")))
                except (OSError, ValueError, TypeError):
                    continue
                b.dir = bd.parent
                job.builds[b.number] = b
                job.next_build_number = max(job.next_build_number, b.number + 1)
                if b.building:
                    interrupted.append(b)
            self.jobs[job.name] = job
        qf = self.home / "queue.json"
        if qf.is_file():
            with contextlib.suppress(OSError, ValueError, TypeError):
                q = json.loads(qf.read_text("utf-8"))
                self.next_queue_id = int(q["nextId"])
                for it in q["items"]:
                    item = QueueItem(**it)
                    if item.job in self.jobs and item.state != "left":
                        self.queue[item.id] = item
        cf = self.home / "credentials.json"
        if cf.is_file():
            with contextlib.suppress(OSError, ValueError):
                self.credentials = json.loads(cf.read_text("utf-8"))
        return interrupted

    def save_job(self, job: Job) -> None:
        d = self.job_dir(job.name)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write(d / "config.xml", job.config_xml.encode("utf-8"))
        atomic_write(d / "nextBuildNumber", f"{job.next_build_number}\n".encode())

    def save_build(self, b: Build) -> None:
        atomic_write(b.dir / "build.json", json.dumps(b.to_json(), indent=1).encode("utf-8"))

    def save_queue(self) -> None:
        items = [asdict(i) for i in self.queue.values() if i.state != "left"]
        atomic_write(
            self.home / "queue.json", json.dumps({"nextId": self.next_queue_id, "items": items}).encode()
        )

    def save_credentials(self) -> None:
        atomic_write(
            self.home / "credentials.json", json.dumps(self.credentials, indent=1).encode(), mode=0o600
        )

    # ---- jobs --------------------------------------------------------------------------------------
    def get_job(self, name: str) -> Job:
        job = self.jobs.get(name)
        if job is None:
            raise HttpError(404)
        return job

    def create_job(self, name: str, xml_text: str) -> Job:
        with self.lock:
            check_good_name(name)
            name = name.strip()
            if name in self.jobs:
                raise failure(f"A job already exists with the name \u2018{name}\u2019")
            try:
                cfg = parse_config(xml_text)
            except ConfigError as e:
                raise HttpError(500, f"java.io.IOException: Unable to read {name}/config.xml: {e}") from e
            job = Job(name, xml_text, cfg)
            self.jobs[name] = job
            self.save_job(job)
            self.changed.notify_all()
            return job

    def update_job(self, name: str, xml_text: str) -> None:
        with self.lock:
            job = self.get_job(name)
            try:
                cfg = parse_config(xml_text)
            except ConfigError as e:
                raise HttpError(500, f"java.io.IOException: Unable to read {name}/config.xml: {e}") from e
            job.config_xml, job.config = xml_text, cfg
            self.save_job(job)

    def remove_job(self, name: str) -> None:
        with self.lock:
            self.jobs.pop(name, None)
            for item in list(self.queue.values()):
                if item.job == name:
                    del self.queue[item.id]
            self.save_queue()
            self.changed.notify_all()
        d = self.job_dir(name)
        if d.exists():
            import shutil

            shutil.rmtree(d, ignore_errors=True)

    def get_build(self, job_name: str, ref: str) -> Build:
        job = self.get_job(job_name)
        permalinks: dict[str, set[str] | None] = {
            "lastCompletedBuild": None,
            "lastSuccessfulBuild": {"SUCCESS"},
            "lastStableBuild": {"SUCCESS"},
            "lastFailedBuild": {"FAILURE"},
            "lastUnsuccessfulBuild": {"FAILURE", "ABORTED", "UNSTABLE", "NOT_BUILT"},
            "lastUnstableBuild": {"UNSTABLE"},
        }
        b: Build | None
        if ref == "lastBuild":
            b = job.last_build
        elif ref == "firstBuild":
            b = job.builds[min(job.builds)] if job.builds else None
        elif ref in permalinks:
            b = job.last_matching(permalinks[ref])
        elif ref.isdigit():
            b = job.builds.get(int(ref))
        else:
            b = None
        if b is None:
            raise HttpError(404)
        return b

    # ---- queue -------------------------------------------------------------------------------------
    def schedule(self, job: Job, params: list[dict[str, Any]], user: str, quiet_s: float) -> QueueItem:
        with self.lock:
            # Jenkins folds a request into an item already waiting with the same parameters
            # (ParametersAction.shouldSchedule / Queue.scheduleInternal): same item id comes back.
            for item in self.queue.values():
                if item.job == job.name and item.state != "left" and _same_params(item.params, params):
                    return item
            t = now_ms()
            item = QueueItem(self.next_queue_id, job.name, params, user, t, t + int(quiet_s * 1000))
            self.next_queue_id += 1
            self.queue[item.id] = item
            self.save_queue()
            self.changed.notify_all()
            return item

    def queue_item(self, item_id: int) -> QueueItem:
        item = self.queue.get(item_id)
        if item is None:
            raise HttpError(404)
        return item

    def expire_left_items(self) -> None:
        t = now_ms()
        for item in list(self.queue.values()):
            if (
                item.state == "left"
                and item.left_ms is not None
                and t - item.left_ms > self.queue_item_ttl * 1000
            ):
                del self.queue[item.id]


def _same_params(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return sorted((p["name"], str(p["value"])) for p in a) == sorted((p["name"], str(p["value"])) for p in b)


def _parse_or_none(xml_text: str) -> JobConfig | None:
    try:
        return parse_config(xml_text)
    except ConfigError:
        return None
