"""Activities that drive this run's Jenkins build and keep its logs.

Secrets (the Jenkins token, the git token, ``envFrom`` values, the object store keys) are read here,
inside the activities, from Kubernetes Secrets or the worker's own settings. None of them is ever an
input, a result, a heartbeat detail or an error message, so none reaches the workflow history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from temporalio import activity
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError

from activities.bootstrap import JENKINS, JENKINS_SECRET, REGISTRY_SECRET, SERVICE_ACCOUNT
from activities.dataplane import DataPlanes
from activities.errors import (
    ConfigError,
    DataPlaneUnavailableError,
    DevopsError,
    JenkinsTransientError,
    KubeConflictError,
    KubeNotFoundError,
    to_application_error,
)
from activities.execution import CAS_ATTEMPTS, ExecutionActivities, git_credentials
from activities.heartbeat import beating, heartbeating, seconds_left
from activities.jenkins.client import BuildStatus, JenkinsEngine, job_name
from activities.jenkins.jenkinsfile import (
    EXECUTION_LABEL,
    JenkinsfileError,
    JenkinsfileInput,
    cache_paths,
    credential_id,
    env_from_key,
    execution_label_value,
    image_registry,
    render_jenkinsfile,
)
from activities.jenkins.jobs import JobChange
from activities.jenkins.logs import last_line
from activities.jenkins.stepreport import read_report_file
from activities.kube import Kube
from activities.logstore import LogStore, StoreConfig, log_object_name, resolve_store
from activities.registry import DOCKER_CONFIG_KEY, RegistryLogin, docker_config_logins, local_registry
from crds import build_status
from crds.execution import PipelineExecutionStatus, pipeline_selector
from crds.messages import (
    Activity,
    BuildRef,
    BuildSnapshot,
    CleanupInput,
    ConsoleTail,
    ConsoleTailInput,
    ControlsQueryResult,
    ExecutionContext,
    FollowInput,
    FollowResult,
    FollowThroughInput,
    GateInput,
    JenkinsJob,
    JenkinsPrepareInput,
    JenkinsTarget,
    Query,
    StepKey,
    StepSnapshot,
    StopInput,
    StopResult,
    StoredLog,
    StoreStepLogInput,
    StoreStepLogResult,
    TriggerInput,
    WriteStatusInput,
    gate_input_id,
    gate_stage,
)
from crds.meta import API_VERSION
from crds.pipeline import CacheNode, Pipeline
from crds.pipeline_file import PublishCatalogConfig, PublishImageConfig, Resources, RunScriptConfig
from crds.reasons import ExecutionPhase, JenkinsMode, Reason, StageState

logger = logging.getLogger(__name__)

TRIGGER_WAIT_SECONDS = 90.0
SECRET_TTL_SECONDS = 10.0
MAX_CACHED_SECRETS = 1024
MAX_CACHED_STORES = 64
LOG_WAIT_SECONDS = 120.0


@dataclass(frozen=True)
class ServiceDefaults:
    """The worker's own Jenkins and object store, used when a PipelineSetting names none."""

    jenkins_url: str = ""
    jenkins_user: str = ""
    jenkins_token: str = field(default="", repr=False)
    store: StoreConfig | None = None


def execution_id(ctx: ExecutionContext) -> str:
    return f"{ctx.execution.namespace}/{ctx.execution.name}/{ctx.execution.uid}"


def credential_prefix(ctx: ExecutionContext) -> str:
    return job_name(ctx.execution.namespace, ctx.pipeline, ctx.run)


def skipped_stage_indexes(ctx: ExecutionContext) -> frozenset[int]:
    """Plan indexes (clone = 0) of the stages whose ``when`` does not match this run."""
    return frozenset(
        i + 1 for i, stage in enumerate(ctx.config.stages) if not stage.applies(ctx.branch, ctx.event)
    )


def snapshot_of(status: BuildStatus) -> BuildSnapshot:
    steps = [
        StepSnapshot(
            stage=st.stage_index,
            step=st.step_index,
            state=st.state.value,
            started_ms=st.start_millis,
            ended_ms=st.end_millis,
            node_id=st.node_id,
            message=st.error or "",
        )
        for stage in status.stages
        for st in stage.steps
    ]
    return BuildSnapshot(
        number=status.number,
        building=status.building,
        result=status.result,
        steps=steps,
        pending_gates=[g for p in status.pending_inputs if (g := gate_stage(p.id)) is not None],
        started_ms=status.start_millis,
        ended_ms=status.end_millis,
    )


def console_failure(console: str) -> str | None:
    """The last ``ERROR:`` line of a build console with the lines that continue it, up to the next blank,
    ``[Pipeline]`` or ``Finished:`` line: the kubernetes plugin and jenkins-lite say so why an agent could not
    be provisioned ("Unable to create pod ..." and the apiserver's message)."""
    lines = console.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("ERROR:")]
    if not starts:
        return None
    parts = [lines[starts[-1]].strip()]
    for line in lines[starts[-1] + 1 : starts[-1] + 4]:
        if not line.strip() or line.startswith(("[Pipeline]", "Finished:", "ERROR:")):
            break
        parts.append(line.strip())
    return " ".join(parts)[:1000]


def _reports(ctx: ExecutionContext, stage: int, step: int) -> bool:
    """Whether the step's script is one we generate, which reports its work in its log (not a user's
    runScript, which could print anything; not the clone, which has nothing to report)."""
    if stage < 1 or stage > len(ctx.config.stages) or step >= len(ctx.config.stages[stage - 1].steps):
        return False
    return not isinstance(ctx.config.stages[stage - 1].steps[step].config, RunScriptConfig)


_TERMINAL_PHASES = frozenset(p.value for p in ExecutionPhase if p.is_terminal)


@dataclass
class _Watch:
    """What a follow keeps between polls: the build's Jenkins, and whether its agent's node (for the
    pipeline's caches) is still to be recorded."""

    engine: JenkinsEngine
    node_pending: bool
    #: Ask for the agent pod's state only once the build has waited this long for it (a pod is usually
    #: running within moments, and each look is a LIST of pods).
    agent_check_after: float = 0.0
    started: float = field(default_factory=time.monotonic)
    #: When the agent pod's state was last asked for (0: never), and why it waited then.
    agent_checked: float = 0.0
    agent_waiting: str | None = None

    def agent_check_due(self, now: float) -> bool:
        """Once the build has waited ``agent_check_after`` for its agent, and then every
        ``AGENT_CHECK_EVERY_SECONDS``: the polls after a change come 50 ms apart, and the reason a pod
        waits (a full cluster, a quota) does not change that fast."""
        if (
            now - self.started < self.agent_check_after
            or now - self.agent_checked < AGENT_CHECK_EVERY_SECONDS
        ):
            return False
        self.agent_checked = now
        return True


AGENT_CHECK_AFTER_SECONDS = 3.0
AGENT_CHECK_EVERY_SECONDS = 5.0
#: The first poll after a change comes this soon: a short step (most are) ends long before a whole poll
#: interval, and its run should not wait for one.
FIRST_POLL_SECONDS = 0.05
POLL_GROWTH = 2.0


class _FastFirst:
    """Poll intervals that start short after each change and double up to the setting's pollInterval:
    a quick build is seen ending at once, a long one costs no more polls than the interval allows."""

    def __init__(self, interval: float) -> None:
        self.interval = max(interval, FIRST_POLL_SECONDS)
        self._next = FIRST_POLL_SECONDS

    def changed(self) -> None:
        self._next = FIRST_POLL_SECONDS

    def next(self) -> float:
        wait = self._next
        self._next = min(self._next * POLL_GROWTH, self.interval)
        return wait


def logs_due(snap: BuildSnapshot, stored: set[StepKey]) -> list[tuple[StepKey, str | None]]:
    """Steps whose log is to be stored now: those that ended, and at the build's end every step that
    started (an aborted build leaves running steps behind), each once."""
    due = []
    for step in snap.steps:
        key = StepKey(step.stage, step.step)
        if key in stored:
            continue
        ended = StageState(step.state).is_terminal and step.state != StageState.SKIPPED
        if ended or (not snap.building and step.node_id):
            due.append((key, step.node_id))
    return due


def _stage_name(status: PipelineExecutionStatus, stage: int) -> str:
    return status.stages[stage].name if stage < len(status.stages) else f"#{stage}"


def _stage_states(status: PipelineExecutionStatus) -> list[str]:
    """The heartbeat's details (shown as the pending activity's progress in the Temporal UI)."""
    return [f"{stage.name}: {stage.state}" for stage in status.stages]


@dataclass(frozen=True)
class EndedRuns:
    """Run numbers whose run has ended: every number but those of runs still at work."""

    still_running: frozenset[int]

    def __contains__(self, run: object) -> bool:
        return run not in self.still_running


class BuildActivities:
    """Jenkins and object-store work for one run; holds the Kubernetes client and the defaults."""

    def __init__(
        self,
        kube: Kube,
        defaults: ServiceDefaults,
        planes: DataPlanes | None = None,
        statuses: ExecutionActivities | None = None,
        temporal: Client | None = None,
    ) -> None:
        self.kube = kube  # the management cluster: CRs, the Secrets the setting names, git credentials
        self.planes = planes or DataPlanes(kube)  # the pipeline namespace and its agent pods
        self.defaults = defaults
        self.statuses = statuses or ExecutionActivities(kube)  # writes the status while following
        self.temporal = temporal  # asks the run's workflow about pause and cancel before a gate
        self._engines: dict[tuple[str, str], JenkinsEngine] = {}
        self._secrets: dict[tuple[int, str, str], tuple[float, dict[str, str]]] = {}
        self._stores: dict[StoreConfig, LogStore] = {}
        self._lock = threading.Lock()

    # -- connections ---------------------------------------------------------------------------

    def engine(self, ctx: ExecutionContext) -> JenkinsEngine:
        """This run's Jenkins: the setting's (Managed: the pipeline namespace's), else the worker's."""
        jenkins = ctx.setting.jenkins
        url = jenkins.url or ""
        user, token = "", ""
        if jenkins.credentials_secret_ref is not None:
            ref = jenkins.credentials_secret_ref
            data = self._secret(ref.namespace or ctx.execution.namespace, ref.name)
            user, token = data.get("username", ""), data.get("token", "")
        elif jenkins.mode == JenkinsMode.MANAGED and not url:
            data = self._pipeline_secret(ctx, JENKINS_SECRET)
            user, token = data.get("username", ""), data.get("token", "")
        if not url:
            if jenkins.mode == JenkinsMode.MANAGED:
                url = f"http://{JENKINS}.{ctx.pipeline_namespace}.svc:8080/"
            else:
                url = self.defaults.jenkins_url
        if not user and url == self.defaults.jenkins_url:
            user, token = self.defaults.jenkins_user, self.defaults.jenkins_token
        if not url:
            raise ConfigError(
                "the PipelineSetting names no Jenkins url and the worker has no default",
                reason=Reason.CONFIG_INVALID,
            )
        key = (url, user)
        with self._lock:
            eng = self._engines.get(key)
            if eng is None or getattr(eng, "_cubepaas_token", None) != token:
                eng = JenkinsEngine(url, user, token)
                eng._cubepaas_token = token  # type: ignore[attr-defined]  # remembers which token it uses
                self._engines[key] = eng
            return eng

    def store(self, ctx: ExecutionContext) -> LogStore:
        """The run's object store, one client per configuration (a new client asked the store for the
        bucket's region and existence again, on a new connection, for every log it stored)."""
        settings = ctx.setting.object_store
        cfg = resolve_store(settings, ctx.execution.namespace, self._secret, self.defaults.store)
        with self._lock:
            store = self._stores.get(cfg)
            if store is None:
                store = self._stores[cfg] = LogStore(cfg)
                while len(self._stores) > MAX_CACHED_STORES:
                    del self._stores[next(iter(self._stores))]
            return store

    def _registry_logins(self, ctx: ExecutionContext, local: str) -> dict[str, RegistryLogin]:
        """Logins for the registries this run's publishImage steps push to (none when it has no such step)."""
        hosts = {
            image_registry(step.config, local)
            for _, _, _, step in ctx.config.iter_steps()
            if isinstance(step.config, PublishImageConfig)
        }
        if not hosts:
            return {}
        ref = ctx.setting.registry.credentials_secret_ref
        if ref is not None:
            namespace = ref.namespace or ctx.execution.namespace
            data = self._secret(namespace, ref.name)
            if DOCKER_CONFIG_KEY not in data:
                raise ConfigError(
                    f"Secret {namespace}/{ref.name} has no key {DOCKER_CONFIG_KEY}"
                    " (registry.credentialsSecretRef)",
                    reason=Reason.CONFIG_INVALID,
                )
            logins = docker_config_logins(data[DOCKER_CONFIG_KEY], f"Secret {namespace}/{ref.name}")
        elif not ctx.setting.registry.host:  # the managed registry: the credentials the bootstrap made
            data = self._pipeline_secret(ctx, REGISTRY_SECRET)
            logins = {local: RegistryLogin(data.get("username", ""), data.get("password", ""))}
        else:
            logins = {}
        return {host: login for host, login in logins.items() if host in hosts}

    def plane(self, ctx: ExecutionContext) -> Kube:
        """The cluster of the run's pipeline namespace (the project's data plane, or this one)."""
        return self.planes.kube(ctx.execution.namespace, ctx.setting.data_plane.kubeconfig_secret_ref)

    def _pipeline_secret(self, ctx: ExecutionContext, name: str) -> dict[str, str]:
        """A Secret the bootstrap made in the pipeline namespace."""
        try:
            return self._read_secret(self.plane(ctx), ctx.pipeline_namespace, name)
        except KubeNotFoundError as err:
            raise ConfigError(
                f"Secret {ctx.pipeline_namespace}/{name} not found", reason=Reason.CONFIG_INVALID
            ) from err

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        try:
            return self._read_secret(self.kube, namespace, name)
        except KubeNotFoundError as err:
            raise ConfigError(f"Secret {namespace}/{name} not found", reason=Reason.CONFIG_INVALID) from err

    def _read_secret(self, kube: Kube, namespace: str, name: str) -> dict[str, str]:
        """A Secret read at most once per ``SECRET_TTL_SECONDS`` and cluster: every activity of a run needs
        the Jenkins and object-store credentials, and so does every other run of the project. A rotated
        credential is used from the next read on."""
        key = (id(kube), namespace, name)
        now = time.monotonic()
        with self._lock:
            cached = self._secrets.get(key)
        if cached is not None and now - cached[0] < SECRET_TTL_SECONDS:
            return cached[1]
        data = kube.read_secret(namespace, name)
        with self._lock:
            self._secrets[key] = (now, data)
            if len(self._secrets) > MAX_CACHED_SECRETS:
                del self._secrets[next(iter(self._secrets))]
        return data

    # -- job -----------------------------------------------------------------------------------

    @activity.defn(name=Activity.JENKINS_PREPARE)
    @heartbeating
    def prepare(self, inp: JenkinsPrepareInput) -> JenkinsJob:
        try:
            return self._prepare(inp.context, inp.trigger_execution_id)
        except DevopsError as err:
            raise to_application_error(err) from err

    def _prepare(self, ctx: ExecutionContext, trigger_execution_id: str | None) -> JenkinsJob:
        eng = self.engine(ctx)
        ns = ctx.execution.namespace
        job = job_name(ns, ctx.pipeline, ctx.run)
        cred_ids: list[str] = []
        git_cred: str | None = None
        user, token = git_credentials(self.kube, ns, ctx.source_code_credential)
        if user or token:
            git_cred = f"{job}-git"
            eng.ensure_credential(
                git_cred,
                "usernamePassword",
                username=user,
                password=token,
                description=f"git credential of {ns}/{ctx.execution.name}",
            )
            cred_ids.append(git_cred)
        env_from: dict[str, str] = {}
        for _, _, _, step in [] if ctx.secrets_withheld else ctx.config.iter_steps():
            for ef in step.env_from:
                key = env_from_key(ef.source_name, ef.source_key)
                if key in env_from:
                    continue
                data = self._secret(ns, ef.source_name)
                if ef.source_key not in data:
                    raise ConfigError(
                        f"Secret {ns}/{ef.source_name} has no key {ef.source_key!r} (envFrom)",
                        reason=Reason.CONFIG_INVALID,
                    )
                cid = credential_id(ns, ctx.pipeline, ctx.run, ef.source_name, ef.source_key)
                eng.ensure_credential(
                    cid,
                    "string",
                    secret=data[ef.source_key],
                    description=f"envFrom {ef.source_name}/{ef.source_key}",
                )
                env_from[key] = cid
                cred_ids.append(cid)
        registry = local_registry(ctx.setting, ctx.pipeline_namespace)
        registry_creds: dict[str, str] = {}
        for host, login in self._registry_logins(ctx, registry).items():
            cid = f"{job}-registry-{len(registry_creds)}"
            eng.ensure_credential(
                cid,
                "usernamePassword",
                username=login.username,
                password=login.password,
                description=f"registry {host} for {ns}/{ctx.execution.name}",
            )
            registry_creds[host] = cid
            cred_ids.append(cid)
        catalog_creds: dict[str, str] = {}
        for _, _, _, step in ctx.config.iter_steps():
            cfg = step.config
            name = cfg.source_code_credential if isinstance(cfg, PublishCatalogConfig) else None
            if not name or name in catalog_creds:
                continue
            user, token = git_credentials(self.kube, ns, name)
            cid = f"{job}-catalog-{len(catalog_creds)}"
            eng.ensure_credential(
                cid, "usernamePassword", username=user, password=token, description=f"catalog push as {name}"
            )
            catalog_creds[name] = cid
            cred_ids.append(cid)
        executor = Resources.model_validate(ctx.setting.executor_resources.to_dict())
        try:
            script = render_jenkinsfile(
                JenkinsfileInput(
                    config=ctx.config,
                    namespace=ns,
                    pipeline=ctx.pipeline,
                    run=ctx.run,
                    execution_id=execution_id(ctx),
                    git_url=ctx.repository_url,
                    commit=ctx.commit or ctx.ref or ctx.branch,
                    ref=ctx.ref,
                    branch=ctx.branch,
                    tag=ctx.ref.removeprefix("refs/tags/") if ctx.ref.startswith("refs/tags/") else "",
                    event=ctx.event,
                    trigger_type=ctx.triggered_by,
                    project_id=ns,
                    local_registry=registry,
                    registry_credentials=registry_creds,
                    insecure_registries=[registry] if ctx.setting.registry.insecure else [],
                    catalog_credentials=catalog_creds,
                    executor_resources=executor if executor.to_dict() else None,
                    agent_namespace=ctx.pipeline_namespace,
                    service_account=SERVICE_ACCOUNT,
                    git_credential_id=git_cred,
                    env_from_credentials=env_from,
                    secrets_withheld=ctx.secrets_withheld,
                    extra_variables=ctx.variables,
                    cache_root=ctx.setting.cache.host_path_root if ctx.setting.cache.enabled else None,
                    cache_nodes=self._cache_nodes(ctx),
                )
            )
        except JenkinsfileError as err:
            raise ConfigError(str(err), reason=Reason.CONFIG_INVALID) from err
        change = eng.ensure_job(job, script, description=f"{ns}/{ctx.execution.name}")
        logger.info("job %s %s", job, change.value)
        prepared = JenkinsJob(job=job, credential_ids=cred_ids)
        if trigger_execution_id is None:
            return prepared
        try:
            prepared.build = self._start(eng, job, trigger_execution_id, fresh=change is JobChange.CREATED)
        except DevopsError as err:
            # The job and its credentials exist: the workflow must know them to clean them up, so
            # this returns them and the trigger activity, with its own retries, starts the build (it
            # finds one this call started but could not see started).
            logger.info("job %s: the build is left to the trigger activity: %s", job, err)
        return prepared

    @activity.defn(name=Activity.JENKINS_TRIGGER)
    @heartbeating
    def trigger(self, inp: TriggerInput) -> BuildRef:
        try:
            return self._start(self.engine(inp.target.context), inp.target.job, inp.execution_id)
        except DevopsError as err:
            raise to_application_error(err) from err

    @staticmethod
    def _start(eng: JenkinsEngine, job: str, execution_id: str, *, fresh: bool = False) -> BuildRef:
        """Trigger the build (idempotent) and wait until it has a number."""
        ref = eng.trigger(job, execution_id, fresh=fresh)
        wait = seconds_left(TRIGGER_WAIT_SECONDS)
        ref = eng.wait_for_start(job, ref, execution_id, wait)
        if ref.number is None:
            raise JenkinsTransientError(f"{job}: build still queued after {wait:.0f}s")
        return BuildRef(job=job, queue_id=ref.queue_id, number=ref.number)

    # -- follow --------------------------------------------------------------------------------

    @activity.defn(name=Activity.JENKINS_FOLLOW)
    async def follow(self, inp: FollowInput) -> BuildSnapshot:
        """Poll until the build differs from ``known`` (or right away without ``known``).

        Heartbeats every poll with the last state seen; a retry on another worker (after a crash)
        starts from the workflow's ``known`` again, so no change is ever skipped.
        """
        ctx, number = inp.target.context, inp.build.number
        assert number is not None
        info = activity.info()
        if info.attempt > 1:
            logger.info("follow %s #%s resumed (attempt %d)", inp.target.job, number, info.attempt)
        known_key = inp.known.key() if inp.known is not None else None
        try:
            watch = _Watch(await asyncio.to_thread(self.engine, ctx), self._caches_on(ctx))
            while True:
                snap = await self._observe(watch, inp.target, number)
                if known_key is None or snap.key() != known_key:
                    return snap
                activity.heartbeat(
                    {
                        "build": number,
                        "building": snap.building,
                        "steps": len(snap.steps),
                        "gates": snap.pending_gates,
                    }
                )
                await asyncio.sleep(inp.poll_interval_seconds)
        except DevopsError as err:
            raise to_application_error(err) from err

    @activity.defn(name=Activity.JENKINS_FOLLOW_THROUGH)
    async def follow_through(self, inp: FollowThroughInput) -> FollowResult:
        """Follow the build, doing what needs no decision of the workflow on the way: proceed the gates
        it may proceed, store the log of each step that ends, write each change into the CR. Returns when
        the build ends (every started step's log stored) or waits at a gate the workflow holds.

        Every side effect is idempotent, so a retry (another worker, after a crash) starts again from the
        workflow's input: a gate already proceeded is no longer pending, a log stored again overwrites
        the same object, a status write finds nothing left to change.
        """
        ctx, number = inp.target.context, inp.build.number
        assert number is not None
        status = inp.status.model_copy(deep=True)
        stored = set(inp.stored_logs)
        result = FollowResult(
            snapshot=BuildSnapshot(), status=status, last_written=inp.last_written, cr_exists=inp.cr_exists
        )
        poll = _FastFirst(inp.poll_interval_seconds)
        held_since: float | None = None  # when a write was first held for the build's end
        written_at: float | None = None  # when this call last wrote the status
        try:
            watch = _Watch(
                await asyncio.to_thread(self.engine, ctx),
                self._caches_on(ctx),
                agent_check_after=AGENT_CHECK_AFTER_SECONDS,
            )
            while True:
                snap = await self._observe(watch, inp.target, number)
                result.snapshot = snap
                gate = snap.pending_gates[0] if snap.pending_gates else None
                if (
                    snap.building
                    and gate is not None
                    and gate in inp.proceed_gates
                    and await self._controls_allow(activity.info().workflow_id or "")
                ):
                    # Proceeding first: the step this gate holds starts before the status is written.
                    await asyncio.to_thread(watch.engine.proceed, inp.target.job, number, gate_input_id(gate))
                    status.message = f"Running stage '{_stage_name(status, gate)}'"
                    poll.changed()
                    continue
                build_status.apply_snapshot(status, snap, ctx.config)
                for key, node_id in logs_due(snap, stored):
                    log = await asyncio.to_thread(self._store_log, inp.target, inp.build, key, node_id)
                    build_status.set_log_object(status, key.stage, key.step, log.object_name, log.report)
                    stored.add(key)
                    result.stored.append(log)
                if not snap.building or gate is not None:
                    return result  # the workflow writes what it decides next
                body = status.model_dump_json()
                due = body != result.last_written and result.cr_exists
                if due and build_status.every_stage_ended(status):
                    # The build's end is moments away, and the workflow's write of it carries this too:
                    # held for up to a poll interval, so a build that hangs on after its stages shows it.
                    if held_since is None:
                        held_since = time.monotonic()
                        poll.changed()
                    due = time.monotonic() - held_since >= inp.poll_interval_seconds
                if due and written_at is not None:
                    # The CR follows the build at most once per poll interval (what the setting says):
                    # changes seconds apart under load (a step starts, a stage ends, the next one is
                    # proceeded) reach it in one write, not one each.
                    due = time.monotonic() - written_at >= inp.poll_interval_seconds
                if due:
                    res = await asyncio.to_thread(
                        self.statuses.write, WriteStatusInput(execution=inp.execution, status=status)
                    )
                    result.last_written, result.cr_exists = body, res.exists
                    written_at = time.monotonic()
                    poll.changed()
                activity.heartbeat({"build": number, "stages": _stage_states(status)})
                await asyncio.sleep(poll.next())
        except DevopsError as err:
            raise to_application_error(err) from err

    async def _controls_allow(self, workflow_id: str) -> bool:
        """Whether the run is still neither paused nor cancelled, asked of the workflow itself right before
        a gate is proceeded: the workflow cancels this activity on a pause, but the cancel reaches it only
        with a heartbeat's answer, seconds later, and the stage must not start meanwhile. Unsure (the
        query fails): no, and the workflow decides about the gate."""
        if self.temporal is None:
            return True
        try:
            q = await self.temporal.get_workflow_handle(workflow_id).query(
                Query.CONTROLS, result_type=ControlsQueryResult
            )
        except (RPCError, WorkflowQueryFailedError) as err:
            logger.info("run %s: asking before a gate failed (%s); the workflow decides", workflow_id, err)
            return False
        return not (q.paused or q.cancel_requested)

    async def _observe(self, watch: _Watch, target: JenkinsTarget, number: int) -> BuildSnapshot:
        """One poll of the build, with what the workflow must know besides Jenkins' answer: why its agent
        pod waits, whether its data plane answers, why it failed outside a step."""
        ctx = target.context
        # A slow Jenkins must not look like a dead worker: heartbeat while the request runs.
        status = await beating(
            asyncio.to_thread(
                watch.engine.describe, target.job, number, skipped_stages=skipped_stage_indexes(ctx)
            ),
            {"build": number, "describing": True},
        )
        snap = snapshot_of(status)
        no_step_runs = not any(s.state == StageState.BUILDING for s in snap.steps)
        remote = ctx.setting.data_plane.kubeconfig_secret_ref is not None
        if snap.building and (remote or (no_step_runs and watch.agent_check_due(time.monotonic()))):
            # A data plane is asked every poll, so its outage shows in the run while it lasts.
            try:
                waiting = await asyncio.to_thread(self._agent_waiting, ctx)
                watch.agent_waiting = waiting if no_step_runs else None
            except DataPlaneUnavailableError as err:
                snap.data_plane_waiting = err.message
        if snap.building and no_step_runs:
            snap.agent_waiting = watch.agent_waiting  # the last answer stands until the next check
        else:
            watch.agent_waiting = None
        if (
            not snap.building
            and snap.result != "SUCCESS"
            and not any(s.state == StageState.FAILED for s in snap.steps)
        ):
            # Failed before or between steps: the console is short, and says why.
            console = await asyncio.to_thread(watch.engine.read_console, target.job, number, 0)
            snap.failure = console_failure(console.text)
        if watch.node_pending and snap.building and snap.data_plane_waiting is None:
            # The agent pod lives only while the build runs (the plugin deletes it at the end): the
            # node it was placed on is read while it exists.
            with contextlib.suppress(DataPlaneUnavailableError):
                watch.node_pending = not await asyncio.to_thread(self._record_agent_node, ctx)
        return snap

    @activity.defn(name=Activity.JENKINS_GATE)
    @heartbeating
    def gate(self, inp: GateInput) -> None:
        try:
            eng = self.engine(inp.target.context)
            assert inp.build.number is not None
            gate_id = gate_input_id(inp.stage)
            if inp.proceed:
                done = eng.proceed(inp.target.job, inp.build.number, gate_id)
            else:
                done = eng.abort_input(inp.target.job, inp.build.number, gate_id)
            logger.info(
                "gate %s of %s #%s: %s%s",
                gate_id,
                inp.target.job,
                inp.build.number,
                "proceed" if inp.proceed else "abort",
                "" if done else " (was not pending)",
            )
        except DevopsError as err:
            raise to_application_error(err) from err

    @activity.defn(name=Activity.JENKINS_STOP)
    @heartbeating
    def stop(self, inp: StopInput) -> StopResult:
        try:
            eng = self.engine(inp.target.context)
            result = eng.cancel(
                inp.target.job,
                inp.build.queue_id,
                inp.build.number,
                inp.grace_seconds,
                execution_id(inp.target.context),
            )
            return StopResult(result=result)
        except DevopsError as err:
            raise to_application_error(err) from err

    @activity.defn(name=Activity.JENKINS_CONSOLE_TAIL)
    @heartbeating
    def console_tail(self, inp: ConsoleTailInput) -> ConsoleTail:
        """The console's last line (to say why Jenkins aborted a build nobody asked it to stop)."""
        try:
            assert inp.build.number is not None
            chunk = self.engine(inp.target.context).read_console(inp.target.job, inp.build.number)
            return ConsoleTail(last_line=last_line(chunk.text))
        except DevopsError as err:
            raise to_application_error(err) from err

    # -- logs ----------------------------------------------------------------------------------

    @activity.defn(name=Activity.STORE_STEP_LOG)
    @heartbeating
    def store_step_log(self, inp: StoreStepLogInput) -> StoreStepLogResult:
        try:
            log = self._store_log(inp.target, inp.build, StepKey(inp.stage, inp.step), inp.node_id)
            return StoreStepLogResult(object_name=log.object_name, size=log.size, report=log.report)
        except DevopsError as err:
            raise to_application_error(err) from err

    def _store_log(
        self, target: JenkinsTarget, build: BuildRef, key: StepKey, node_id: str | None
    ) -> StoredLog:
        """Copy one step's complete log into the object store; raises DevopsError."""
        ctx = target.context
        name = log_object_name(ctx.execution.namespace, ctx.pipeline, ctx.run, key.stage, key.step)
        # Through a temporary file: memory stays bounded however long the log is.
        with tempfile.TemporaryFile(prefix="cubepaas-log-") as spool:
            size = 0
            if node_id and build.number is not None:
                size = self.engine(ctx).copy_step_log(
                    target.job, build.number, node_id, spool, timeout=seconds_left(LOG_WAIT_SECONDS)
                )
            report = read_report_file(spool) if _reports(ctx, key.stage, key.step) else None
            spool.seek(0)
            self.store(ctx).put_file(name, spool, size)
        return StoredLog(
            stage=key.stage,
            step=key.step,
            object_name=name,
            size=size,
            report=report if report and not report.empty() else None,
        )

    def _agent_waiting(self, ctx: ExecutionContext) -> str | None:
        """The scheduler's reason when the run's agent pod is Pending unscheduled (e.g. ``Unschedulable: 0/3
        nodes are available: 3 Insufficient cpu``), else None."""
        selector = f"{EXECUTION_LABEL}={execution_label_value(execution_id(ctx))}"
        pods = self.plane(ctx).list_objects(
            "v1", "Pod", namespace=ctx.pipeline_namespace, label_selector=selector
        )
        for pod in pods:
            status = pod.get("status") or {}
            if status.get("phase") != "Pending":
                continue
            for cond in status.get("conditions") or []:
                if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                    reason, message = cond.get("reason") or "", cond.get("message") or ""
                    return f"{reason}: {message}".strip(": ") or "not scheduled yet"
        return None

    # -- build caches --------------------------------------------------------------------------

    def _cache_nodes(self, ctx: ExecutionContext) -> list[str]:
        """The pipeline's cache nodes, most recently used first (empty when caches are off)."""
        if not ctx.setting.cache.enabled or not cache_paths(ctx.config):
            return []
        pipeline = self.kube.find(Pipeline, ctx.execution.namespace, ctx.pipeline)
        nodes = pipeline.status.cache_nodes if pipeline and pipeline.status else []
        return [n.node_name for n in nodes]

    @staticmethod
    def _caches_on(ctx: ExecutionContext) -> bool:
        cache = ctx.setting.cache
        return cache.enabled and cache.node_history_size > 0 and bool(cache_paths(ctx.config))

    def _record_agent_node(self, ctx: ExecutionContext) -> bool:
        """Record the node of this run's agent pod; False while no pod of the run is placed on a node."""
        selector = f"{EXECUTION_LABEL}={execution_label_value(execution_id(ctx))}"
        pods = self.plane(ctx).list_objects(
            "v1", "Pod", namespace=ctx.pipeline_namespace, label_selector=selector
        )
        return self._record_cache_node(ctx, pods)

    def _record_cache_node(self, ctx: ExecutionContext, pods: list[dict[str, object]]) -> bool:
        """Put the node the agent pod ran on first in ``Pipeline.status.cacheNodes`` (compare-and-swap);
        no write when this run recorded it already. False when no pod has a node."""
        if not self._caches_on(ctx):
            return True
        node = next(
            (
                spec["nodeName"]
                for spec in (p.get("spec") for p in pods)
                if isinstance(spec, dict) and isinstance(spec.get("nodeName"), str) and spec["nodeName"]
            ),
            None,
        )
        if node is None:
            return False
        now = datetime.now(UTC)
        for _ in range(CAS_ATTEMPTS):
            pipeline = self.kube.find(Pipeline, ctx.execution.namespace, ctx.pipeline)
            if pipeline is None:
                return True
            old = pipeline.status.cache_nodes if pipeline.status else []
            first = old[0] if old else None
            if (
                first is not None
                and first.node_name == node
                and first.last_used is not None
                and ctx.started is not None
                and first.last_used >= ctx.started
            ):
                return True  # this run's node is recorded already
            nodes = [CacheNode(node_name=node, last_used=now)] + [n for n in old if n.node_name != node]
            nodes = nodes[: ctx.setting.cache.node_history_size]
            patch = {"cacheNodes": [n.to_dict() for n in nodes]}
            try:
                self.kube.patch_status(
                    Pipeline,
                    ctx.execution.namespace,
                    ctx.pipeline,
                    patch,
                    resource_version=pipeline.metadata.resource_version,
                )
                logger.info("cache node of %s/%s: %s", ctx.execution.namespace, ctx.pipeline, node)
                return True
            except KubeConflictError:
                continue
        return True

    # -- cleanup -------------------------------------------------------------------------------

    def _finished_runs(self, ctx: ExecutionContext) -> EndedRuns:
        """The pipeline's runs that have ended: this one (it is cleaning up, its logs are stored), those
        whose CR shows a terminal phase, and those without a CR (deleted: their workflows are cancelled).
        A run whose CR is not terminal is still at work (building, or storing its logs from Jenkins)."""
        items = self.kube.list_objects(
            API_VERSION,
            "PipelineExecution",
            namespace=ctx.execution.namespace,
            label_selector=pipeline_selector(ctx.pipeline),
        )
        running: set[int] = set()
        for item in items:
            spec, status = item.get("spec") or {}, item.get("status") or {}
            run = spec.get("run")
            if spec.get("pipelineName") != ctx.pipeline or not isinstance(run, int) or run == ctx.run:
                continue
            if status.get("phase") not in _TERMINAL_PHASES:
                running.add(run)  # (two CRs with one run number: running while either is)
        return EndedRuns(frozenset(running))

    @activity.defn(name=Activity.CLEANUP)
    @heartbeating
    def cleanup(self, inp: CleanupInput) -> None:
        """Agent pods, then (logs are stored by now) the Jenkins job and credentials, keeping the last N."""
        try:
            ctx = inp.target.context
            selector = f"{EXECUTION_LABEL}={execution_label_value(execution_id(ctx))}"
            plane = self.plane(ctx)
            pods = plane.list_objects("v1", "Pod", namespace=ctx.pipeline_namespace, label_selector=selector)
            self._record_cache_node(ctx, pods)
            for pod in pods:
                meta = pod.get("metadata") or {}
                if meta.get("deletionTimestamp"):
                    continue  # being deleted already (Jenkins deletes its agent as the build ends)
                plane.delete_object("v1", "Pod", meta["name"], ctx.pipeline_namespace, missing_ok=True)
            eng = self.engine(ctx)
            keep = ctx.setting.keep_jenkins_jobs
            prefix = f"{ctx.execution.namespace}-{ctx.pipeline}-"
            if keep > 0 and inp.target.job == f"{prefix}{ctx.run}":
                eng.keep_last_jobs(prefix, keep, self._finished_runs(ctx))
            else:
                # No keeping asked, or a name job_name() had to shorten or sanitise (it then carries a
                # hash, so no prefix finds the pipeline's other jobs): delete this run's job.
                eng.delete_job(inp.target.job)
            for cid in inp.credential_ids:
                eng.delete_credential(cid)
        except DevopsError as err:
            raise to_application_error(err) from err


__all__ = ["BuildActivities", "JenkinsTarget", "ServiceDefaults"]
