"""Activities that drive this run's Jenkins build and keep its logs.

Secrets (the Jenkins token, the git token, ``envFrom`` values, the object store keys) are read here,
inside the activities, from Kubernetes Secrets or the worker's own settings. None of them is ever an
input, a result, a heartbeat detail or an error message, so none reaches the workflow history.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from temporalio import activity

from activities.bootstrap import JENKINS, JENKINS_SECRET, SERVICE_ACCOUNT
from activities.errors import (
    ConfigError,
    DevopsError,
    JenkinsTransientError,
    KubeConflictError,
    KubeNotFoundError,
    to_application_error,
)
from activities.execution import CAS_ATTEMPTS, git_credentials
from activities.heartbeat import beating, heartbeating, seconds_left
from activities.jenkins.client import BuildStatus, JenkinsEngine, job_name
from activities.jenkins.jenkinsfile import (
    EXECUTION_LABEL,
    JenkinsfileInput,
    cache_paths,
    credential_id,
    env_from_key,
    execution_label_value,
    render_jenkinsfile,
)
from activities.jenkins.logs import last_line
from activities.kube import Kube
from activities.logstore import LogStore, StoreConfig, log_object_name
from crds.messages import (
    Activity,
    BuildRef,
    BuildSnapshot,
    CleanupInput,
    ConsoleTail,
    ConsoleTailInput,
    ExecutionContext,
    FollowInput,
    GateInput,
    JenkinsJob,
    JenkinsPrepareInput,
    JenkinsTarget,
    StepSnapshot,
    StopInput,
    StopResult,
    StoreStepLogInput,
    StoreStepLogResult,
    TriggerInput,
    gate_input_id,
    gate_stage,
)
from crds.pipeline import CacheNode, Pipeline
from crds.reasons import JenkinsMode, Reason

logger = logging.getLogger(__name__)

TRIGGER_WAIT_SECONDS = 90.0
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


class BuildActivities:
    """Jenkins and object-store work for one run; holds the Kubernetes client and the defaults."""

    def __init__(self, kube: Kube, defaults: ServiceDefaults) -> None:
        self.kube = kube
        self.defaults = defaults
        self._engines: dict[tuple[str, str], JenkinsEngine] = {}
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
            data = self._secret(ctx.pipeline_namespace, JENKINS_SECRET)
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
        os_ = ctx.setting.object_store
        if os_.endpoint:
            access, secret = "", ""
            if os_.credentials_secret_ref is not None:
                ref = os_.credentials_secret_ref
                data = self._secret(ref.namespace or ctx.execution.namespace, ref.name)
                access, secret = data.get("accessKey", ""), data.get("secretKey", "")
            cfg = StoreConfig(
                endpoint=os_.endpoint,
                access_key=access,
                secret_key=secret,
                bucket=os_.bucket,
                secure=os_.secure,
            )
        elif self.defaults.store is not None:
            d = self.defaults.store
            cfg = StoreConfig(
                endpoint=d.endpoint,
                access_key=d.access_key,
                secret_key=d.secret_key,
                bucket=os_.bucket or d.bucket,
                secure=d.secure,
            )
        else:
            raise ConfigError(
                "the PipelineSetting names no object store and the worker has no default",
                reason=Reason.CONFIG_INVALID,
            )
        return LogStore(cfg)

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        try:
            return self.kube.read_secret(namespace, name)
        except KubeNotFoundError as err:
            raise ConfigError(f"Secret {namespace}/{name} not found", reason=Reason.CONFIG_INVALID) from err

    # -- job -----------------------------------------------------------------------------------

    @activity.defn(name=Activity.JENKINS_PREPARE)
    @heartbeating
    def prepare(self, inp: JenkinsPrepareInput) -> JenkinsJob:
        try:
            return self._prepare(inp.context)
        except DevopsError as err:
            raise to_application_error(err) from err

    def _prepare(self, ctx: ExecutionContext) -> JenkinsJob:
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
        for _, _, _, step in ctx.config.iter_steps():
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
                local_registry=ctx.setting.registry.host or "",
                executor_resources=None,
                agent_namespace=ctx.pipeline_namespace,
                service_account=SERVICE_ACCOUNT,
                git_credential_id=git_cred,
                env_from_credentials=env_from,
                cache_root=ctx.setting.cache.host_path_root if ctx.setting.cache.enabled else None,
                cache_nodes=self._cache_nodes(ctx),
            )
        )
        changed = eng.ensure_job(job, script, description=f"{ns}/{ctx.execution.name}")
        logger.info("job %s %s", job, "written" if changed else "unchanged")
        return JenkinsJob(job=job, credential_ids=cred_ids)

    @activity.defn(name=Activity.JENKINS_TRIGGER)
    @heartbeating
    def trigger(self, inp: TriggerInput) -> BuildRef:
        try:
            eng = self.engine(inp.target.context)
            ref = eng.trigger(inp.target.job, inp.execution_id)
            wait = seconds_left(TRIGGER_WAIT_SECONDS)
            ref = eng.wait_for_start(inp.target.job, ref, inp.execution_id, wait)
            if ref.number is None:
                raise JenkinsTransientError(f"{inp.target.job}: build still queued after {wait:.0f}s")
            return BuildRef(job=inp.target.job, queue_id=ref.queue_id, number=ref.number)
        except DevopsError as err:
            raise to_application_error(err) from err

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
        skipped = skipped_stage_indexes(ctx)
        known_key = inp.known.key() if inp.known is not None else None
        try:
            eng = await asyncio.to_thread(self.engine, ctx)
            while True:
                # A slow Jenkins must not look like a dead worker: heartbeat while the request runs.
                status = await beating(
                    asyncio.to_thread(eng.describe, inp.target.job, number, skipped_stages=skipped),
                    {"build": number, "describing": True},
                )
                snap = snapshot_of(status)
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
            ctx = inp.target.context
            name = log_object_name(ctx.execution.namespace, ctx.pipeline, ctx.run, inp.stage, inp.step)
            # Through a temporary file: memory stays bounded however long the log is.
            with tempfile.TemporaryFile(prefix="cubepaas-log-") as spool:
                size = 0
                if inp.node_id and inp.build.number is not None:
                    size = self.engine(ctx).copy_step_log(
                        inp.target.job,
                        inp.build.number,
                        inp.node_id,
                        spool,
                        timeout=seconds_left(LOG_WAIT_SECONDS),
                    )
                spool.seek(0)
                self.store(ctx).put_file(name, spool, size)
            return StoreStepLogResult(object_name=name, size=size)
        except DevopsError as err:
            raise to_application_error(err) from err

    # -- build caches --------------------------------------------------------------------------

    def _cache_nodes(self, ctx: ExecutionContext) -> list[str]:
        """The pipeline's cache nodes, most recently used first (empty when caches are off)."""
        if not ctx.setting.cache.enabled or not cache_paths(ctx.config):
            return []
        pipeline = self.kube.find(Pipeline, ctx.execution.namespace, ctx.pipeline)
        nodes = pipeline.status.cache_nodes if pipeline and pipeline.status else []
        return [n.node_name for n in nodes]

    def _record_cache_node(self, ctx: ExecutionContext, pods: list[dict[str, object]]) -> None:
        """Put the node the agent pod ran on first in ``Pipeline.status.cacheNodes`` (compare-and-swap)."""
        cache = ctx.setting.cache
        if not cache.enabled or cache.node_history_size == 0 or not cache_paths(ctx.config):
            return
        spec = next((p.get("spec") for p in pods if isinstance(p.get("spec"), dict)), None)
        node = spec.get("nodeName") if isinstance(spec, dict) else None
        if not isinstance(node, str) or not node:
            return
        now = datetime.now(UTC)
        for _ in range(CAS_ATTEMPTS):
            pipeline = self.kube.find(Pipeline, ctx.execution.namespace, ctx.pipeline)
            if pipeline is None:
                return
            old = pipeline.status.cache_nodes if pipeline.status else []
            nodes = [CacheNode(node_name=node, last_used=now)] + [n for n in old if n.node_name != node]
            nodes = nodes[: cache.node_history_size]
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
                return
            except KubeConflictError:
                continue

    # -- cleanup -------------------------------------------------------------------------------

    @activity.defn(name=Activity.CLEANUP)
    @heartbeating
    def cleanup(self, inp: CleanupInput) -> None:
        """Agent pods, then (logs are stored by now) the Jenkins job and credentials, keeping the last N."""
        try:
            ctx = inp.target.context
            selector = f"{EXECUTION_LABEL}={execution_label_value(execution_id(ctx))}"
            pods = self.kube.list_objects(
                "v1", "Pod", namespace=ctx.pipeline_namespace, label_selector=selector
            )
            self._record_cache_node(ctx, pods)
            for pod in pods:
                meta = pod.get("metadata") or {}
                self.kube.delete_object("v1", "Pod", meta["name"], ctx.pipeline_namespace, missing_ok=True)
            eng = self.engine(ctx)
            keep = ctx.setting.keep_jenkins_jobs
            prefix = f"{ctx.execution.namespace}-{ctx.pipeline}-"
            if keep > 0 and inp.target.job == f"{prefix}{ctx.run}":
                eng.keep_last_jobs(prefix, keep)
            else:
                # No keeping asked, or a name job_name() had to shorten or sanitise (it then carries a
                # hash, so no prefix finds the pipeline's other jobs): delete this run's job.
                eng.delete_job(inp.target.job)
            for cid in inp.credential_ids:
                eng.delete_credential(cid)
        except DevopsError as err:
            raise to_application_error(err) from err


__all__ = ["BuildActivities", "JenkinsTarget", "ServiceDefaults"]
