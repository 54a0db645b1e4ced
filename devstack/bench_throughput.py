"""Throughput and cost of runs (issue 17): the section of ``python -m devstack.bench`` that
``--throughput-only`` runs alone. See docs/benchmarks.md, "Throughput and cost".

One project namespace with no executor quota (``executorQuota: 0``, so ``effective_quota()`` is 0 =
unlimited) and pollInterval 1 s (the e2e tests' default), a worker of its own on a unique task queue,
Pipelines of one stage (one ``true`` step) and of three stages (one ``true`` step each). In order:

1. a warm-up run (the project's first run makes its pipeline namespace, RoleBindings and Secrets: a
   once-per-project cost that would otherwise land on the burst);
2. an idle baseline: CPU of every process and the apiserver's ``apiserver_request_total`` over
   ``BASELINE_SECONDS`` with nothing of ours running (the stack is shared: other tests may be running);
3. the burst: ``N_RUNS`` runs created at once; throughput, CPU per run per process (``/proc/<pid>/stat``),
   apiserver writes per run, each raw and net of the baseline (scaled to the burst's length);
4. history events of a 1-stage and a 3-stage run, each alone, with a per-event-type breakdown;
5. start overhead: CR created -> Success of one run alone, against the same Jenkinsfile (without its
   gates) built directly through python-jenkins on the same jenkins-lite; medians of 5 each;
6. the bridge figures of :mod:`devstack.bench_bridge`, when that module offers ``measure_bridge``.

Every figure is printed with how it was measured and its target (met / NOT met).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import statistics
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jenkins
from kubernetes import config as k8s_config
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.events import COMPONENT as EVENT_COMPONENT
from activities.jenkins.jenkinsfile import JenkinsfileInput, build_plan, render_plan
from activities.jenkins.jobconfig import EXECUTION_ID_PARAM, pipeline_job_config
from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.meta import GROUP, VERSION, ObjectMeta
from crds.parse import parse_pipeline_file
from crds.pipeline import Pipeline, PipelineSpec
from crds.reasons import ExecutionPhase
from devstack.cluster import DATA_PLANES
from devstack.gitrepo import make_git_repo
from devstack.project import apply_project
from devstack.stack import Stack
from devstack.state import load_state
from worker.bridge import TASK_QUEUE_ANNOTATION
from worker.runs import create_run

N_RUNS = 200
POLL_INTERVAL = "1s"  # the e2e tests' default (tests/e2e/conftest.py project_namespace)
CREATE_THREADS = 16
BURST_POLL = 1.0  # how often the burst's CRs are LISTed to see them end (the throughput's resolution)
BURST_TIMEOUT = 1800.0
BASELINE_SECONDS = 60.0  # each idle window, right before and right after the burst
BURST_PIPELINES = 10  # the burst's runs spread over Pipelines, so run numbers (a CAS each) barely collide
QUIET_SAMPLE = 10.0
QUIET_WRITES = 5
QUIET_TIMEOUT = 120.0
OVERHEAD_REPEATS = 5
CR_POLL = 0.03  # the start-overhead run's CR is read every 30 ms
DIRECT_POLL = 0.02  # the direct build's get_build_info every 20 ms
RUN_TIMEOUT = 300.0
PLURAL = PipelineExecution.plural()
TERMINAL = {p.value for p in ExecutionPhase if p.is_terminal}
AGENT_SERVICE_ACCOUNT = "jenkins"  # activities.bootstrap.SERVICE_ACCOUNT: the agent pods' account

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
PRODUCT_GROUP = GROUP
# What the product provisions for a project besides its own kinds (activities/bootstrap.py).
PRODUCT_RESOURCES = frozenset(
    {
        "namespaces",
        "secrets",
        "serviceaccounts",
        "rolebindings",
        "roles",
        "clusterroles",
        "clusterrolebindings",
        "resourcequotas",
        "limitranges",
        "networkpolicies",
        "services",
        "deployments",
        "persistentvolumeclaims",
        "configmaps",
    }
)
# Not the product's: the agent pod's lifecycle (jenkins-lite creates and deletes it, the scheduler binds it,
# kwok reports its status, jenkins-lite asks for its token as a kubelet would), events, leader-election and
# node leases, node heartbeats, and delegated authn/authz reviews.
CLUSTER_RESOURCES = frozenset(
    {
        "pods",
        "events",
        "leases",
        "nodes",
        "endpoints",
        "endpointslices",
        "tokenreviews",
        "subjectaccessreviews",
    }
)
CLUSTER_SUBRESOURCES = frozenset({("serviceaccounts", "token")})


class ThroughputError(RuntimeError):
    """A figure of this section could not be measured, or is invalid; the message says why."""


# --- targets ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    limit: float
    unit: str
    at_least: bool = False  # True: the figure must reach the limit; False: stay at or under it

    def met(self, value: float) -> bool:
        return value >= self.limit if self.at_least else value <= self.limit

    def verdict(self, value: float) -> str:
        sign = ">=" if self.at_least else "<="
        return f"target {sign} {self.limit:g} {self.unit}: {'met' if self.met(value) else 'NOT met'}"


TARGETS: dict[str, Target] = {
    "throughput": Target(400, "runs/min", at_least=True),
    "cpu": Target(0.25, "core-s per run"),
    "history-1": Target(40, "events"),
    "history-3": Target(60, "events"),
    "overhead": Target(3.0, "x"),
    "writes": Target(8, "writes per run"),
}


# --- /proc/<pid>/stat ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` this bench uses (times in clock ticks)."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    start_time: int

    @property
    def own_ticks(self) -> int:
        return self.utime + self.stime

    @property
    def ticks(self) -> int:
        """Its own CPU plus that of the children it has waited for (jenkins-lite's ``/bin/sh`` steps)."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_proc_stat(text: str) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line (proc(5)); ``comm`` may hold spaces and parentheses, so the
    fields are counted from its last ``)``."""
    head, paren, rest = text.rpartition(")")
    if not paren:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}")
    pid = int(head.split("(", 1)[0])
    f = rest.split()  # f[0] is field 3 (state): field n is f[n - 3]
    return ProcStat(
        pid=pid,
        ppid=int(f[1]),
        utime=int(f[11]),
        stime=int(f[12]),
        cutime=int(f[13]),
        cstime=int(f[14]),
        start_time=int(f[19]),
    )


def read_proc_stats(root: Path = Path("/proc")) -> dict[int, ProcStat]:
    stats: dict[int, ProcStat] = {}
    for entry in root.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):  # gone meanwhile
            stats[int(entry.name)] = parse_proc_stat((entry / "stat").read_text())
    return stats


def tree_ticks(root: int, stats: Mapping[int, ProcStat]) -> int:
    """CPU ticks of ``root`` and its live descendants (each with the children it waited for).

    A child counts once: while it lives, in its own entry; once waited for, in its parent's ``cutime``.
    Only a descendant that dies unwaited (re-parented away) is lost.
    """
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid].ticks
        todo.extend(children.get(pid, []))
    return total


@dataclass(frozen=True)
class Watched:
    """A process whose CPU is sampled; ``counted``: part of the per-run total."""

    name: str
    pid: int
    start_time: int
    group: str  # "stack", "data plane", "bench worker", "bench client"
    counted: bool
    with_children: bool = True


def watched_processes(stack_dir: Path, worker_pid: int) -> list[Watched]:
    """The stack's running components (``state.json``: pid + start time), its data-plane components
    (listed, not counted), the bench's worker, and this process (the load generator, not counted)."""
    state = load_state(stack_dir / "state.json")
    planes = tuple(f"{name}-" for name in DATA_PLANES)
    out: list[Watched] = []
    for name, comp in sorted(state.components.items()):
        if not comp.running():
            continue
        plane = name.startswith(planes)
        out.append(Watched(name, comp.pid, comp.start_time, "data plane" if plane else "stack", not plane))
    stats = read_proc_stats()
    for pid, label, group, counted, children in (
        (worker_pid, "worker (the bench's)", "bench worker", True, True),
        (os.getpid(), "bench client (creates and polls runs)", "bench client", False, False),
    ):
        if pid in stats:
            out.append(Watched(label, pid, stats[pid].start_time, group, counted, children))
    return out


def current(stack_dir: Path, processes: list[Watched]) -> list[Watched]:
    """The same processes with the stack's components as ``state.json`` has them now (one restarted by
    someone else sharing the stack has a new pid); a component that is not running keeps its old entry."""
    state = load_state(stack_dir / "state.json")
    out: list[Watched] = []
    for p in processes:
        comp = state.components.get(p.name) if p.group in ("stack", "data plane") else None
        if comp is not None and comp.running():
            p = replace(p, pid=comp.pid, start_time=comp.start_time)
        out.append(p)
    return out


def cpu_sample(processes: Iterable[Watched]) -> dict[str, tuple[int, int, int] | None]:
    """Per process name: (pid, start time, ticks), or None when that process is not running."""
    stats = read_proc_stats()
    out: dict[str, tuple[int, int, int] | None] = {}
    for p in processes:
        st = stats.get(p.pid)
        if st is None or st.start_time != p.start_time:
            out[p.name] = None
            continue
        out[p.name] = (p.pid, p.start_time, tree_ticks(p.pid, stats) if p.with_children else st.own_ticks)
    return out


def cpu_delta(
    before: tuple[int, int, int] | None, after: tuple[int, int, int] | None
) -> tuple[int, str | None]:
    """Ticks between two samples of one process, and a note when it was not the same process throughout:
    one started within the window counts whole (all its CPU is in the window); what a process that
    stopped (or was replaced) used after the first sample is unknown, so the figure is a lower bound."""
    if before is not None and after is not None and before[:2] == after[:2]:
        return after[2] - before[2], None
    if before is None and after is not None:
        return after[2], f"started during the window (pid {after[0]}): counted whole"
    if before is not None and after is not None:
        return after[2], f"restarted during the window (pid {before[0]} -> {after[0]}): a lower bound"
    if before is not None:
        return 0, f"stopped during the window (pid {before[0]}): a lower bound"
    return 0, "not running"


# --- apiserver_request_total ----------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class RequestKey:
    verb: str
    resource: str
    subresource: str
    group: str
    code: str
    # The apiserver's counts do not say who wrote an Event: the product's Events on its runs are counted
    # from the Events themselves and moved to the product's bucket under keys marked so.
    product_events: bool = False

    @property
    def target(self) -> str:
        name = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{name} (the product's, on its runs)" if self.product_events else name

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS

    @property
    def is_cluster(self) -> bool:
        """Jenkins' and the cluster's (the agent pod's lifecycle and the like), not the product's."""
        return self.resource in CLUSTER_RESOURCES or (self.resource, self.subresource) in CLUSTER_SUBRESOURCES

    @property
    def bucket(self) -> int:
        """0: the product's, 1: the agent pod's and the cluster's, 2: other (neither)."""
        if self.product_events:
            return 0
        if self.is_cluster:
            return 1
        if self.group == PRODUCT_GROUP or self.resource in PRODUCT_RESOURCES:
            return 0
        return 2


_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_request_totals(text: str) -> dict[RequestKey, float]:
    """``apiserver_request_total`` samples of a Prometheus text exposition, by label set."""
    out: dict[RequestKey, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None:
            continue
        labels = dict(_LABEL.findall(m["labels"]))
        key = RequestKey(
            verb=labels.get("verb", ""),
            resource=labels.get("resource", ""),
            subresource=labels.get("subresource", ""),
            group=labels.get("group", ""),
            code=labels.get("code", ""),
        )
        out[key] = out.get(key, 0.0) + float(m["value"])
    return out


def write_deltas(
    before: Mapping[RequestKey, float], after: Mapping[RequestKey, float]
) -> Counter[RequestKey]:
    """Write requests made between two scrapes (every answer code: a 409 is a write attempt too)."""
    out: Counter[RequestKey] = Counter()
    for key, value in after.items():
        if not key.is_write:
            continue
        delta = value - before.get(key, 0.0)
        if delta < 0:
            raise ThroughputError(f"apiserver_request_total went down for {key}: the apiserver restarted")
        if delta:
            out[key] = round(delta)
    return out


def by_target(writes: Counter[RequestKey]) -> Counter[str]:
    """``VERB resource[/subresource]`` -> count (codes folded)."""
    out: Counter[str] = Counter()
    for key, n in writes.items():
        out[f"{key.verb} {key.target}"] += n
    return out


def split_writes(
    writes: Counter[RequestKey],
) -> tuple[Counter[RequestKey], Counter[RequestKey], Counter[RequestKey]]:
    """(the product's, the agent pod's and the cluster's, other)."""
    out: tuple[Counter[RequestKey], Counter[RequestKey], Counter[RequestKey]] = (
        Counter(),
        Counter(),
        Counter(),
    )
    for key, n in writes.items():
        out[key.bucket][key] = n
    return out


def product_events(events: Iterable[Mapping[str, Any]], runs: set[str]) -> int:
    """How many of the product's Events these runs have: each was created with one POST. (Its ``count``
    is not its writes: one request records a reason seen twice in one status change with count 2.)"""
    return sum(
        1
        for ev in events
        if (ev.get("source") or {}).get("component") == EVENT_COMPONENT
        and (ev.get("involvedObject") or {}).get("name") in runs
    )


def attribute_product_events(writes: Counter[RequestKey], posts: int) -> Counter[RequestKey]:
    """``writes`` with ``posts`` Event POSTs (answered 201) and every Event PATCH moved to the product's
    bucket. The PATCHes (a repeated Event) are an upper bound: the apiserver does not say whose they are."""
    out = Counter(writes)
    created = next((k for k in out if (k.verb, k.resource, k.code) == ("POST", "events", "201")), None)
    if posts and (created is None or out[created] < posts):
        raise ThroughputError(
            f"{posts} of the product's Events found, but the apiserver counted "
            f"{out[created] if created else 0} Event POSTs answered 201"
        )
    moves = [(k, out[k]) for k in out if k.verb == "PATCH" and k.resource == "events"]
    if created is not None and posts:
        moves.append((created, posts))
    for key, n in moves:
        out[key] -= n
        if not out[key]:
            del out[key]
        out[replace(key, product_events=True)] += n
    return out


def scrape_apiserver(api: Any) -> dict[RequestKey, float]:
    resp = api.call_api("GET", f"{api.configuration.host}/metrics")
    if resp.status != 200:
        raise ThroughputError(f"GET /metrics of the apiserver: HTTP {resp.status}")
    return parse_request_totals(bytes(resp.read()).decode())


# --- history --------------------------------------------------------------------------------------------


def event_type_counts(events: Iterable[Any]) -> Counter[str]:
    out: Counter[str] = Counter()
    for e in events:
        out[EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")] += 1
    return out


def activity_counts(events: Iterable[Any]) -> Counter[str]:
    out: Counter[str] = Counter()
    for e in events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            out[e.activity_task_scheduled_event_attributes.activity_type.name] += 1
    return out


# --- the section ----------------------------------------------------------------------------------------

WorkerFactory = Callable[[dict[str, str], str, list[str]], AbstractContextManager[subprocess.Popen[bytes]]]


@dataclass
class ThroughputBench:
    """What the section gets from ``devstack.bench``'s main: the stack, clients and how to start a worker."""

    env: dict[str, str]
    api: Any
    kube: Kube
    runner: asyncio.Runner
    temporal: Client
    repos: Path
    start_worker: WorkerFactory
    say: Callable[[str], None]
    row: Callable[[str, str, str], None]
    queue: str = field(default_factory=lambda: f"bench-tp-{uuid.uuid4().hex[:8]}")

    @property
    def stack_dir(self) -> Path:
        return Path(self.env.get("DEVSTACK_DIR") or Stack().dir)

    # -- kube helpers ------------------------------------------------------------------------------------

    def pipeline(self, namespace: str, name: str, stages: int) -> tuple[str, str, str]:
        """A Pipeline of ``stages`` stages of one ``true`` step; returns (file text, repo url, commit)."""
        text = "stages:\n" + "".join(
            f"- name: S{i + 1}\n  steps:\n  - runScriptConfig: {{image: alpine, shellScript: 'true'}}\n"
            for i in range(stages)
        )
        url, sha = make_git_repo(self.repos / f"{namespace}-{name}", text, author="bench")
        self.kube.create(
            Pipeline(
                metadata=ObjectMeta(name=name, namespace=namespace),
                spec=PipelineSpec(repository_url=url, default_branch="main"),
            )
        )
        return text, url, sha

    def create(self, api: Any, namespace: str, pipeline: str, sha: str) -> str:
        pe = create_run(api, namespace, pipeline, commit=sha, annotations={TASK_QUEUE_ANNOTATION: self.queue})
        return pe.name

    def cr(self, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
        return obj

    def run_alone(self, namespace: str, pipeline: str, sha: str) -> tuple[float, dict[str, Any]]:
        """One run, nothing else of ours running: (seconds from CR created to a terminal phase, CR)."""
        name = self.create(self.api, namespace, pipeline, sha)
        created = time.monotonic()
        while True:
            obj = self.cr(namespace, name)
            if (obj.get("status") or {}).get("phase") in TERMINAL:
                seconds = time.monotonic() - created
                break
            if time.monotonic() - created > RUN_TIMEOUT:
                raise ThroughputError(f"{namespace}/{name} not finished after {RUN_TIMEOUT:.0f} s")
            time.sleep(CR_POLL)
        st = obj.get("status") or {}
        if st.get("phase") != ExecutionPhase.SUCCESS:
            raise ThroughputError(f"{namespace}/{name} ended {st.get('phase')}: {st.get('message')}")
        self.wait_closed(str((st.get("workflow") or {}).get("id") or ""))  # its cleanup ends too
        return seconds, obj

    def wait_closed(self, workflow_id: str) -> None:
        if not workflow_id:
            raise ThroughputError("a finished run has no status.workflow.id")

        async def closed() -> None:
            await asyncio.wait_for(
                self.temporal.get_workflow_handle(workflow_id).result(), timeout=RUN_TIMEOUT
            )

        self.runner.run(closed())

    def running_workflows(self) -> int:
        query = f'TaskQueue="{self.queue}" AND ExecutionStatus="Running"'
        return self.runner.run(self.temporal.count_workflows(query)).count

    def history(self, workflow_id: str) -> list[Any]:
        async def fetch() -> list[Any]:
            handle = self.temporal.get_workflow_handle(workflow_id)
            await asyncio.wait_for(handle.result(), timeout=RUN_TIMEOUT)
            return list((await handle.fetch_history()).events)

        return self.runner.run(fetch())


@dataclass
class Window:
    """CPU samples and apiserver request totals at the start of a window, and when it started."""

    began: float
    cpu: dict[str, tuple[int, int, int] | None]
    requests: dict[RequestKey, float]
    apiserver: Watched | None


@dataclass
class WindowCost:
    seconds: float
    cpu: dict[str, float]  # core-seconds per process
    writes: Counter[RequestKey]
    notes: dict[str, str]  # process -> why its figure is not a plain difference


def apiserver_of(processes: list[Watched]) -> Watched | None:
    return next((p for p in processes if p.name == "kube-apiserver"), None)


def open_window(b: ThroughputBench, processes: list[Watched]) -> Window:
    now = current(b.stack_dir, processes)
    return Window(time.monotonic(), cpu_sample(now), scrape_apiserver(b.api), apiserver_of(now))


def close_window(b: ThroughputBench, processes: list[Watched], w: Window) -> WindowCost:
    now = current(b.stack_dir, processes)
    cpu, requests, end = cpu_sample(now), scrape_apiserver(b.api), time.monotonic()
    if apiserver_of(now) != w.apiserver:
        raise ThroughputError("kube-apiserver was restarted during the window: its request counters reset")
    tick = float(os.sysconf("SC_CLK_TCK"))
    seconds: dict[str, float] = {}
    notes: dict[str, str] = {}
    for p in now:
        ticks, note = cpu_delta(w.cpu.get(p.name), cpu.get(p.name))
        seconds[p.name] = ticks / tick
        if note:
            notes[p.name] = note
    return WindowCost(end - w.began, seconds, write_deltas(w.requests, requests), notes)


def idle_window(b: ThroughputBench, processes: list[Watched], seconds: float, label: str) -> WindowCost:
    """An idle window of ``seconds``; measured again (up to 3 times) when a process of the stack was
    restarted in it, since a background figure needs whole processes."""
    for _ in range(3):
        b.say(f"    idle window {label}: {seconds:.0f} s with nothing of ours running")
        try:
            w = open_window(b, processes)
            time.sleep(seconds)
            cost = close_window(b, processes, w)
        except ThroughputError as err:
            b.say(f"      not usable: {err}")
            continue
        if not cost.notes:
            return cost
        b.say("      not usable: " + "; ".join(f"{k} {v}" for k, v in cost.notes.items()))
    raise ThroughputError(f"no usable idle window {label} in 3 tries (the stack's processes kept changing)")


def fmt_counts(counts: Mapping[str, float], per: float = 1.0, limit: int = 12) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k} {v / per:.2f}" if per != 1.0 else f"{k} {v:g}" for k, v in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def measure_throughput(b: ThroughputBench, *, bridge: bool = True) -> None:
    """The whole section (see the module docstring); raises :class:`ThroughputError`."""
    tag = uuid.uuid4().hex[:6]
    ns = f"bench-tp-{tag}"
    setting = apply_project(b.kube, ns, b.env, executor_quota=0, poll_interval=POLL_INTERVAL)
    if setting.spec.effective_quota() > 0:
        raise ThroughputError(f"{ns}: executor quota {setting.spec.effective_quota()}, expected none")
    b.say(
        f"\n[7] throughput and cost (issue 17): namespace {ns}, executorQuota 0 (no quota), "
        f"pollInterval {POLL_INTERVAL} (the e2e default), task queue {b.queue}"
    )
    one_text, one_url, one_sha = b.pipeline(ns, "one", 1)
    # Each repository its own commit: the same file committed in another second is another commit.
    burst_shas = [b.pipeline(ns, f"one-{k}", 1)[2] for k in range(BURST_PIPELINES)]
    _, _, three_sha = b.pipeline(ns, "three", 3)
    burst_api = k8s_config.new_client_from_config(config_file=b.env["KUBECONFIG"])  # type: ignore[no-untyped-call]
    # One connection per creating thread (the default pool of 4 would be re-opened all the time).
    burst_api.configuration.connection_pool_maxsize = CREATE_THREADS + 4
    burst_api.rest_client.pool_manager.connection_pool_kw["maxsize"] = CREATE_THREADS + 4
    try:
        with b.start_worker(b.env, b.queue, [ns]) as worker:
            warm, _ = b.run_alone(ns, "one", one_sha)
            b.say(f"    warm-up run (makes the project's pipeline namespace and RBAC): {warm:.2f} s")
            processes = watched_processes(b.stack_dir, worker.pid)
            burst_figures(b, burst_api, ns, burst_shas, processes)
            history_figures(b, ns, one_sha, three_sha)
            overhead_figures(b, ns, one_text, one_url, one_sha, setting.spec.pipeline_namespace(ns))
    finally:
        burst_api.close()
    bridge_figures(b, bridge)


def wait_quiet(b: ThroughputBench) -> str:
    """Wait (up to ``QUIET_TIMEOUT``) for a ``QUIET_SAMPLE`` window in which the apiserver took at most
    ``QUIET_WRITES`` writes outside the cluster's own background (leases, node status, events); says how
    it went. Other tests share the stack: this lowers the odds of measuring them, it cannot rule it out."""
    began = time.monotonic()
    last = scrape_apiserver(b.api)
    while True:
        time.sleep(QUIET_SAMPLE)
        now = scrape_apiserver(b.api)
        writes = write_deltas(last, now)
        busy = sum(n for k, n in writes.items() if not k.is_cluster)
        waited = time.monotonic() - began
        if busy <= QUIET_WRITES:
            return f"quiet after {waited:.0f} s ({busy} non-cluster writes in {QUIET_SAMPLE:.0f} s)"
        if waited > QUIET_TIMEOUT:
            return (
                f"NOT quiet after {waited:.0f} s ({busy} non-cluster writes in the last {QUIET_SAMPLE:.0f} s)"
            )
        last = now


@dataclass(frozen=True)
class Estimate:
    """A per-run cost measured cluster-wide: ``raw`` over the burst's window (an upper bound: other load
    only adds), and the background estimated from idle windows right before and after it (scaled to the
    burst's length)."""

    raw: float
    before: float
    after: float
    tolerance: float  # below this the two idle windows count as equal, whatever the raw figure

    @property
    def background(self) -> float:
        return (self.before + self.after) / 2

    @property
    def net(self) -> float:
        return self.raw - self.background

    @property
    def steady(self) -> bool:
        """The background was the same before and after, so subtracting it is meaningful."""
        return abs(self.before - self.after) <= max(self.tolerance, 0.1 * abs(self.raw))

    def verdict(self, target: Target) -> str:
        if self.steady:
            return f"{target.verdict(self.net)} (judged on the net figure)"
        if not target.at_least and target.met(self.raw):
            return f"{target.verdict(self.raw)} (judged on the raw upper bound: the background was unsteady)"
        return (
            f"target {target.limit:g} {target.unit}: NOT judged (the background changed between the idle "
            f"windows: {self.before:.3f} before, {self.after:.3f} after, per run; the raw figure "
            f"{self.raw:.3f} is only an upper bound)"
        )

    def text(self, digits: int = 3) -> str:
        return (
            f"{self.net:.{digits}f} net ({self.raw:.{digits}f} raw - {self.background:.{digits}f} "
            "background; "
            f"idle windows {self.before:.{digits}f} before / {self.after:.{digits}f} after)"
        )


def per_run(cost: float, seconds: float, burst_seconds: float) -> float:
    """An idle window's ``cost`` over ``seconds``, scaled to ``burst_seconds``, per run of the burst."""
    return cost * burst_seconds / seconds / N_RUNS


def burst_figures(b: ThroughputBench, api: Any, ns: str, shas: list[str], processes: list[Watched]) -> None:
    b.say(f"    waiting for a quiet stack: {wait_quiet(b)}")
    before = idle_window(b, processes, BASELINE_SECONDS, "before the burst")

    pipelines = [f"one-{k}" for k in range(BURST_PIPELINES)]
    b.say(
        f"    burst: {N_RUNS} runs created at once, {N_RUNS // BURST_PIPELINES} each of {BURST_PIPELINES} "
        f"Pipelines of the 1-stage file ({CREATE_THREADS} threads of create_run)"
    )
    window = open_window(b, processes)
    first_create = time.monotonic()
    with ThreadPoolExecutor(CREATE_THREADS, thread_name_prefix="bench-create") as pool:
        names = list(
            pool.map(
                lambda i: b.create(api, ns, pipelines[i % BURST_PIPELINES], shas[i % BURST_PIPELINES]),
                range(N_RUNS),
            )
        )
    created = time.monotonic()
    b.say(f"    created {len(names)} runs in {created - first_create:.1f} s")
    wanted = set(names)
    ended: dict[str, float] = {}  # run -> when a LIST first showed it terminal
    phases: dict[str, dict[str, Any]] = {}
    while len(ended) < len(wanted):
        if time.monotonic() - first_create > BURST_TIMEOUT:
            missing = len(wanted) - len(ended)
            raise ThroughputError(f"{missing} of {N_RUNS} runs not finished after {BURST_TIMEOUT:.0f} s")
        listed = b.kube.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
        now = time.monotonic()
        for obj in listed.get("items", []):
            name, st = obj["metadata"]["name"], obj.get("status") or {}
            if name in wanted and name not in ended and st.get("phase") in TERMINAL:
                ended[name], phases[name] = now, st
        time.sleep(BURST_POLL)
    last_end = max(ended.values())
    while b.running_workflows():  # the CR ends before its workflow's cleanup does
        if time.monotonic() - first_create > BURST_TIMEOUT:
            raise ThroughputError(f"workflows of {b.queue} still running after {BURST_TIMEOUT:.0f} s")
        time.sleep(BURST_POLL)
    cost = close_window(b, processes, window)
    posts = product_events(b.kube.list_objects("v1", "Event", namespace=ns), wanted)
    cost = replace(cost, writes=attribute_product_events(cost.writes, posts))

    outcome = Counter(str(st.get("phase")) for st in phases.values())
    succeeded = outcome.get(ExecutionPhase.SUCCESS.value, 0)
    wall = last_end - first_create
    rate = N_RUNS / wall * 60
    b.say(
        f"    {succeeded} of {N_RUNS} Success ({fmt_counts(outcome)}); first create -> last CR terminal "
        f"{wall:.1f} s; all workflows closed {cost.seconds:.1f} s after the first create"
    )
    if succeeded != N_RUNS:
        bad = next(st for st in phases.values() if st.get("phase") != ExecutionPhase.SUCCESS)
        raise ThroughputError(
            f"throughput invalid: {N_RUNS - succeeded} of {N_RUNS} runs did not succeed "
            f"({fmt_counts(outcome)}); e.g. {bad.get('phase')}: {bad.get('message')}"
        )
    b.row(
        f"7a throughput at N = {N_RUNS}",
        f"{rate:.0f} runs/min ({N_RUNS} Success; wall {wall:.1f} s, of which creating "
        f"{created - first_create:.1f} s) -- {TARGETS['throughput'].verdict(rate)}",
        f"{N_RUNS} one-stage runs (`true`) created at once from {CREATE_THREADS} threads over "
        f"{BURST_PIPELINES} Pipelines; runs/min = N / (last CR seen terminal - first create_run), CRs "
        f"LISTed every {BURST_POLL:g} s",
    )

    after = idle_window(b, processes, before.seconds, "after the burst")
    cpu_figures(b, processes, cost, before, after)
    write_figures(b, cost, before, after)


def cpu_figures(
    b: ThroughputBench, processes: list[Watched], cost: WindowCost, before: WindowCost, after: WindowCost
) -> None:
    b.say(
        "    CPU, core-s per run: utime+stime+cutime+cstime (/proc/<pid>/stat) of each process and its live "
        f"descendants over the burst's {cost.seconds:.0f} s window, and the idle windows' background "
        "scaled to it:"
    )
    totals = [0.0, 0.0, 0.0]
    shares: list[tuple[str, float]] = []
    for p in processes:
        raw = cost.cpu[p.name] / N_RUNS
        pre = per_run(before.cpu[p.name], before.seconds, cost.seconds)
        post = per_run(after.cpu[p.name], after.seconds, cost.seconds)
        est = Estimate(raw, pre, post, tolerance=0.005)
        took_cpu = est.net > 0.001
        counted = p.counted or (p.group == "data plane" and took_cpu)
        if counted:
            totals = [totals[0] + raw, totals[1] + pre, totals[2] + post]
            shares.append((p.name.split(" ")[0], est.net))
        note = (
            ("counted" if p.counted else "counted: a data plane that took CPU")
            if counted
            else (f"not counted: {p.group}")
        )
        if p.name in cost.notes:
            note += f"; {cost.notes[p.name]}"
        b.say(f"      {p.name:<38} {est.text(4)}  [{note}]")
    total = Estimate(totals[0], totals[1], totals[2], tolerance=0.01)
    verdict = total.verdict(TARGETS["cpu"])
    partial = {n: note for n, note in cost.notes.items() if "lower bound" in note}
    if partial:
        verdict = f"a LOWER BOUND ({'; '.join(f'{n} {note}' for n, note in partial.items())}): " + (
            verdict if "NOT met" in verdict else "target NOT judged"
        )
    b.row(
        "7b CPU per run, all stack processes + the bench's worker",
        f"{total.text()} core-s -- {verdict}; net per process: "
        + ", ".join(f"{n} {v:.3f}" for n, v in sorted(shares, key=lambda kv: -kv[1])),
        "utime+stime (+cutime+cstime of waited-for children, + live descendants) from /proc/<pid>/stat of "
        "every running component in the stack's state.json (pid + start time) and the bench's worker, "
        "before and after the burst until every workflow closed; background = mean of idle windows "
        f"of {before.seconds:.0f} s right before and after, scaled to the burst's length",
    )


def write_figures(b: ThroughputBench, cost: WindowCost, before: WindowCost, after: WindowCost) -> None:
    b.say(
        "    apiserver writes per run (apiserver_request_total, verbs "
        + "/".join(sorted(WRITE_VERBS))
        + ", every answer code; cluster-wide: other tests on the stack count too):"
    )
    buckets = {
        name: [split_writes(w)[i] for w in (cost.writes, before.writes, after.writes)]
        for i, name in enumerate(("product", "agent pod and cluster", "other"))
    }
    estimates: dict[str, Estimate] = {}
    for name, (burst, pre, post) in buckets.items():
        estimates[name] = Estimate(
            sum(burst.values()) / N_RUNS,
            per_run(sum(pre.values()), before.seconds, cost.seconds),
            per_run(sum(post.values()), after.seconds, cost.seconds),
            tolerance=0.25,
        )
        b.say(f"      {name}: {estimates[name].text(2)}")
        b.say(f"        burst, by resource: {fmt_counts(by_target(burst), per=N_RUNS)}")
        for label, idle, w in (("before", pre, before), ("after", post, after)):
            if idle:
                scale = N_RUNS * w.seconds / cost.seconds
                b.say(f"        idle {label}, by resource: {fmt_counts(by_target(idle), per=scale)}")
    product = estimates["product"]
    conflicts = sum(n for k, n in buckets["product"][0].items() if k.code == "409") / N_RUNS
    cluster, other = estimates["agent pod and cluster"], estimates["other"]
    b.row(
        "7c apiserver writes per run by the product",
        f"{product.text(2)}, {conflicts:.2f} of the raw ones 409 conflicts -- "
        f"{product.verdict(TARGETS['writes'])}; agent pod and cluster (Jenkins' and the cluster's): "
        f"{cluster.net:.2f} net ({cluster.raw:.2f} raw); other: {other.net:.2f} net ({other.raw:.2f} raw)",
        "the apiserver's own apiserver_request_total (scraped with the admin client cert) before and after "
        "the burst; writes = POST/PUT/PATCH/DELETE/DELETECOLLECTION/APPLY; product = the devops.cubepaas.io "
        "kinds, the namespaces, RBAC, Secrets, ServiceAccounts, quotas it provisions and its Events on its "
        "runs (a POST per Event of source cubepaas-devops on a burst run, and every Event PATCH); agent pod "
        "and "
        "cluster = pods (+binding, status), serviceaccounts/token, other events, leases, nodes, reviews; "
        "other = the rest (e.g. a namespace controller emptying namespaces); background from the idle "
        "windows",
    )


def history_figures(b: ThroughputBench, ns: str, one_sha: str, three_sha: str) -> None:
    for stages, pipeline, sha in ((1, "one", one_sha), (3, "three", three_sha)):
        _, obj = b.run_alone(ns, pipeline, sha)
        wid = str(((obj.get("status") or {}).get("workflow") or {}).get("id"))
        events = b.history(wid)
        target = TARGETS[f"history-{stages}"]
        b.say(f"    {stages}-stage run {obj['metadata']['name']}: {len(events)} history events")
        b.say(f"      by type: {fmt_counts(event_type_counts(events), limit=40)}")
        b.say(f"      activities scheduled: {fmt_counts(activity_counts(events), limit=40)}")
        b.row(
            f"7d history events per run, {stages} stage{'s' if stages > 1 else ''}",
            f"{len(events)} -- {target.verdict(len(events))} (activities: "
            f"{fmt_counts(activity_counts(events), limit=40)})",
            "len(fetch_history().events) of one run alone (a `true` step per stage), after its workflow "
            "closed; the per-type breakdown is printed above",
        )


def direct_jenkinsfile(
    text: str, namespace: str, pipeline: str, url: str, sha: str, agent_namespace: str
) -> str:
    """The Jenkinsfile the product renders for this pipeline (activities/build.py's inputs for a manual
    run), without its gates: ``render_jenkinsfile`` always puts an ``input`` before every user stage, so
    the plan is built, its stages' ``gate`` cleared, and rendered (jenkins-lite runs the plan line)."""
    inp = JenkinsfileInput(
        config=parse_pipeline_file(text),
        namespace=namespace,
        pipeline=pipeline,
        run=1,
        execution_id=f"{namespace}/bench-direct/{uuid.uuid4()}",
        git_url=url,
        commit=sha,
        branch="main",
        project_id=namespace,
        agent_namespace=agent_namespace,
        service_account=AGENT_SERVICE_ACCOUNT,
    )
    plan = build_plan(inp)
    for stage in plan["stages"]:
        stage["gate"] = None
    return render_plan(inp, plan)


def direct_build(server: jenkins.Jenkins, job: str) -> float:
    """Seconds from the build request (``build_job``) to ``get_build_info`` showing a result."""
    number = int(server.get_job_info(job)["nextBuildNumber"])
    began = time.monotonic()
    # delay=0sec as the product's trigger passes it: else jenkins-lite's 5 s quiet period would be timed.
    server.build_job(job, {EXECUTION_ID_PARAM: f"bench/{job}/{number}", "delay": "0sec"})
    while True:
        try:
            info = server.get_build_info(job, number)
        except jenkins.JenkinsException:  # not started yet: python-jenkins reports it as missing
            info = {}
        if info and not info.get("building") and info.get("result"):
            seconds = time.monotonic() - began
            break
        if time.monotonic() - began > RUN_TIMEOUT:
            raise ThroughputError(f"direct build {job} #{number} not finished after {RUN_TIMEOUT:.0f} s")
        time.sleep(DIRECT_POLL)
    if info["result"] != "SUCCESS":
        raise ThroughputError(f"direct build {job} #{number} ended {info['result']}")
    return seconds


def overhead_figures(
    b: ThroughputBench, ns: str, text: str, url: str, sha: str, agent_namespace: str
) -> None:
    server = jenkins.Jenkins(b.env["JENKINS_URL"], b.env["JENKINS_USER"], b.env["JENKINS_TOKEN"], timeout=30)
    job = f"bench-direct-{uuid.uuid4().hex[:8]}"
    script = direct_jenkinsfile(text, ns, "one", url, sha, agent_namespace)
    server.create_job(job, pipeline_job_config(script, "devstack.bench: the product's Jenkinsfile, no gates"))
    product: list[float] = []
    direct: list[float] = []
    try:
        for _ in range(OVERHEAD_REPEATS):  # alternated, so drift in the machine's load hits both alike
            product.append(b.run_alone(ns, "one", sha)[0])
            direct.append(direct_build(server, job))
    finally:
        with contextlib.suppress(jenkins.JenkinsException):
            server.delete_job(job)
    p, d = statistics.median(product), statistics.median(direct)
    ratio = p / d
    b.say("    product, CR created -> Success (s): " + ", ".join(f"{x:.2f}" for x in product))
    b.say("    direct python-jenkins build -> result (s): " + ", ".join(f"{x:.2f}" for x in direct))
    b.row(
        "7e start overhead: product / direct build, one run alone",
        f"{p:.2f} s / {d:.2f} s = {ratio:.1f}x (medians of {OVERHEAD_REPEATS}) -- "
        f"{TARGETS['overhead'].verdict(ratio)}",
        f"product: create_run returned -> CR phase Success, CR read every {CR_POLL * 1000:.0f} ms; direct: "
        "the same generated Jenkinsfile without its gates in a job made with python-jenkins on the same "
        f"jenkins-lite, build_job (delay=0sec) -> get_build_info not building with a result, every "
        f"{DIRECT_POLL * 1000:.0f} ms; alternated",
    )


def bridge_figures(b: ThroughputBench, enabled: bool) -> None:
    if not enabled:
        b.row("7f bridge figures", "not measured (--no-bridge)", "devstack.bench_bridge.measure_bridge")
        return
    try:
        module = importlib.import_module("devstack.bench_bridge")
    except ImportError:
        module = None
    measure = getattr(module, "measure_bridge", None)
    if measure is None:
        b.row(
            "7f bridge figures",
            "TODO: not measured (devstack/bench_bridge.py missing)",
            "devstack.bench_bridge.measure_bridge is not there yet",
        )
        return
    b.say("    bridge figures (devstack.bench_bridge.measure_bridge; a few minutes)")
    try:
        figures = measure(b.env, say=lambda line: b.say(f"      {line}"))
    except RuntimeError as err:
        raise ThroughputError(f"bridge figures: {err}") from err
    for line in figures.lines():
        label, _, value = str(line).removeprefix("bridge: ").partition(": ")
        b.row(f"7f bridge: {label}", value, "devstack.bench_bridge.measure_bridge (see its docstring)")


__all__ = [
    "TARGETS",
    "ProcStat",
    "RequestKey",
    "Target",
    "ThroughputBench",
    "ThroughputError",
    "by_target",
    "measure_throughput",
    "parse_proc_stat",
    "parse_request_totals",
    "split_writes",
    "tree_ticks",
    "write_deltas",
]
