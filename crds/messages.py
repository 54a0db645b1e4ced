"""Inputs and outputs of the workflows, activities, signals, updates and queries.

One pydantic model per call, so fields can be added compatibly. No secret value ever travels in
these models: only references (Secret names and keys) that activities resolve themselves, because
every payload is stored in the workflow history and shown in the Temporal UI.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crds.execution import HelmRelease, PipelineExecutionStatus, PublishedImage, workflow_id_for
from crds.meta import SecretReference
from crds.pipeline_file import PipelineConfig
from crds.setting import PipelineSettingSpec

TASK_QUEUE = "cubepaas-devops"
EXECUTION_WORKFLOW = "PipelineExecutionWorkflow"
QUOTA_WORKFLOW = "ExecutorQuotaWorkflow"
SCHEDULED_RUN_WORKFLOW = "ScheduledRunWorkflow"
SCM_POLL_WORKFLOW = "ScmPollWorkflow"
LOG_RETENTION_WORKFLOW = "LogRetentionWorkflow"
LOG_RETENTION_SCHEDULE = "devops-log-retention"
SCM_SYNC_WORKFLOW = "SourceCodeSyncWorkflow"
"""Id of the daily Temporal Schedule that starts :data:`LOG_RETENTION_WORKFLOW`."""
PROJECT_LABEL = "devops.cubepaas.io/project"
"""Label on a namespace naming the project (namespace) it belongs to."""


class Msg(BaseModel):
    """Base of every message: unknown fields are ignored so old histories still decode."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Activity(StrEnum):
    """Activity names: explicit, unique, stable (they are recorded in histories)."""

    LOAD_EXECUTION = "devops.execution.load"
    WRITE_STATUS = "devops.execution.write_status"
    UPDATE_PIPELINE = "devops.pipeline.update_status"
    BOOTSTRAP_NAMESPACE = "devops.namespace.bootstrap"
    RECONCILE_ROLEBINDINGS = "devops.rbac.reconcile"
    NAMESPACE_VERIFIED = "devops.namespace.verified"
    JENKINS_PREPARE = "devops.jenkins.prepare"
    JENKINS_TRIGGER = "devops.jenkins.trigger"
    JENKINS_FOLLOW = "devops.jenkins.follow"
    JENKINS_FOLLOW_THROUGH = "devops.jenkins.follow_through"
    JENKINS_GATE = "devops.jenkins.gate"
    JENKINS_STOP = "devops.jenkins.stop"
    JENKINS_CONSOLE_TAIL = "devops.jenkins.console_tail"
    STORE_STEP_LOG = "devops.logs.store_step"
    CLEANUP = "devops.execution.cleanup"
    QUOTA_ACQUIRE = "devops.quota.acquire"
    QUOTA_GONE_HOLDERS = "devops.quota.gone_holders"
    TRIGGER_CREATE_RUN = "devops.trigger.create_run"
    TRIGGER_WAIT_RUN = "devops.trigger.wait_run"
    TRIGGER_CANCEL_RUN = "devops.trigger.cancel_run"
    TRIGGER_POLL_SCM = "devops.trigger.poll_scm"
    RUN_FINISHED = "devops.execution.finished"
    FINISH = "devops.execution.finish"
    SWEEP_LOGS = "devops.logs.sweep"
    SCM_SYNC = "devops.scm.sync_credential"


class Signal(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    APPROVE = "approve"
    REJECT = "reject"
    # Sent by the per-project quota workflow to an execution workflow.
    SLOT_GRANTED = "slot_granted"
    QUEUE_POSITION = "queue_position"
    # Sent by execution workflows (through an activity) to the quota workflow.
    QUOTA_ACQUIRE = "acquire"
    QUOTA_RELEASE = "release"


class Update(StrEnum):
    APPROVE = "approve_stage"
    REJECT = "reject_stage"


class Query(StrEnum):
    STATUS = "status"
    #: Just whether the run is paused or cancelled: what the follow activity asks before each gate it
    #: proceeds (the status query would carry the whole status there and back every time).
    CONTROLS = "controls"
    QUOTA = "quota"


# --- the execution workflow -------------------------------------------------------------------


class ExecutionRef(Msg):
    """Which PipelineExecution a call is about."""

    namespace: str
    name: str
    uid: str = ""


class ExecutionWorkflowInput(Msg):
    """Started by the bridge (or the CLI) for one PipelineExecution."""

    execution: ExecutionRef
    #: Base URL of the Temporal UI, for links written into the CR (optional).
    ui_base_url: str = ""
    #: Continue as new once the history holds this many events (0: when Temporal suggests it). The bridge
    #: takes it from the CR's ``devops.cubepaas.io/history-limit`` annotation.
    history_limit: int = 0
    #: Set only by the workflow itself when it continues as new: its whole state.
    carried: ExecutionState | None = None


def execution_workflow_id(namespace: str, name: str, uid: str) -> str:
    """Stable id: a second start for the same CR is a no-op, a re-created CR gets a new run."""
    return workflow_id_for(namespace, name, uid)


class ControlInput(Msg):
    """Input of pause, resume and cancel; every field is optional, so a bare signal works."""

    reason: str = ""
    user: str = ""


class RunStep(StrEnum):
    """The phases of an execution workflow, in order; an error is reported against the one it hit."""

    LOAD = "load"
    QUEUE = "queue"
    PROVISION = "provision"
    BUILD = "build"
    FOLLOW = "follow"
    FINISH = "finish"


class StepKey(NamedTuple):
    """One step of the run: its stage index (0 is the clone stage) and its index in the stage."""

    stage: int
    step: int


class ExecutionState(Msg):
    """The whole state of one execution workflow, and what it carries over continue-as-new.

    The field names of the earlier ``CarriedState`` are kept, so a history recorded before still
    decodes into this model.
    """

    status: PipelineExecutionStatus = Field(default_factory=PipelineExecutionStatus)
    step: RunStep = RunStep.LOAD
    context: ExecutionContext | None = None
    job: JenkinsJob | None = None
    build: BuildRef | None = None
    #: The last build snapshot the workflow acted on (the follow activity returns when it changes).
    known: BuildSnapshot | None = None
    stored_logs: list[StepKey] = Field(default_factory=list)
    quota_held: bool = False
    slot_granted: bool = False
    #: Runs ahead in the project's queue, as last told by the quota workflow.
    ahead: int | None = None
    paused: bool = False
    cancel: ControlInput | None = None
    #: The workflow asked Jenkins to stop the build: an ABORTED result is ours, not Jenkins' own.
    stop_requested: bool = False
    approved: list[int] = Field(default_factory=list)
    rejected: dict[int, str] = Field(default_factory=dict)
    #: Stage index waiting for an approval decision.
    awaiting_approval: int | None = None
    #: Stage index whose gate is held (paused or waiting for approval).
    held_gate: int | None = None
    last_written: str | None = None
    cr_exists: bool = True
    #: Last value of the DevopsPhase search attribute (upserted only when it changes).
    phase_attribute: str | None = None
    generation: int = 1


class GateDecisionInput(Msg):
    """Input of approve and reject. ``stage`` defaults to the stage that is waiting."""

    stage: int | None = None
    reason: str = ""
    user: str = ""


class StatusQueryResult(Msg):
    phase: str
    paused: bool
    cancel_requested: bool
    pending_gate: int | None = None
    waiting_for_approval: bool = False
    status: PipelineExecutionStatus


class ControlsQueryResult(Msg):
    paused: bool
    cancel_requested: bool


# --- activities ---------------------------------------------------------------------------------


class LoadExecutionInput(Msg):
    execution: ExecutionRef


class ExecutionContext(Msg):
    """Everything a run needs, resolved once at its start (a snapshot: later edits don't change it)."""

    execution: ExecutionRef
    pipeline: str
    run: int
    branch: str = ""
    ref: str = ""
    commit: str = ""
    event: str = "manual"
    triggered_by: str = "user"
    trigger_user: str = ""
    repository_url: str = ""
    source_code_credential: str = ""
    #: Extra CICD_* variables of the run (e.g. CICD_IMAGE_* of an image-push run).
    variables: dict[str, str] = Field(default_factory=dict)
    #: Steps get no envFrom secrets (a pull request from a fork).
    secrets_withheld: bool = False
    config: PipelineConfig
    setting: PipelineSettingSpec
    #: Where Jenkins, the registry and MinIO run for this project.
    pipeline_namespace: str
    started: datetime | None = None


class WriteStatusInput(Msg):
    execution: ExecutionRef
    status: PipelineExecutionStatus


class WriteStatusResult(Msg):
    written: bool
    #: False when the CR is gone (deleted): the workflow stops writing.
    exists: bool = True


class FinishInput(Msg):
    """The run's last local steps in one call: the Pipeline's status, then the terminal status, then
    the history limit (``history``: None when notifications are due; their own activity does both)."""

    pipeline: UpdatePipelineInput
    write: WriteStatusInput
    history: RunFinishedInput | None = None


class FinishResult(Msg):
    write: WriteStatusResult
    #: Why the Pipeline's status could not be written (the terminal status then says so too).
    pipeline_failed: str | None = None
    #: Why the history limit could not be applied (the next run's finish applies it).
    history_failed: str | None = None
    deleted_executions: list[str] = Field(default_factory=list)


class RunFinishedInput(Msg):
    """After the terminal status is written: send the run's notifications once, trim the history."""

    context: ExecutionContext


class RunFinishedResult(Msg):
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    """Sends interrupted by a stopped worker: not repeated (they may have arrived)."""
    deleted_executions: list[str] = Field(default_factory=list)
    """Older PipelineExecutions of the pipeline deleted by its executionHistoryLimit."""


class LogRetentionInput(Msg):
    """Input of the retention workflow; ``as_of`` (tests, catch-up) replaces the workflow's clock."""

    as_of: datetime | None = None


class SweepLogsInput(Msg):
    as_of: datetime
    """Logs last written before ``as_of - logRetentionDays`` are deleted."""


class SweepLogsResult(Msg):
    projects: int = 0
    """PipelineSettings with a retention that were swept."""
    deleted_objects: int = 0
    expired_runs: list[str] = Field(default_factory=list)
    """``namespace/execution`` of the PipelineExecutions marked ``status.logsExpired``."""


class UpdatePipelineInput(Msg):
    namespace: str
    pipeline: str
    execution: str
    run: int
    state: str
    started: datetime | None = None


class JenkinsPrepareInput(Msg):
    context: ExecutionContext
    #: Also trigger the build, with this execution id, once the job is written (one activity where
    #: there were two). None: the job only, the trigger activity starts the build.
    trigger_execution_id: str | None = None


class JenkinsJob(Msg):
    job: str
    credential_ids: list[str] = Field(default_factory=list)
    #: The started build, when the prepare was asked to trigger it and could (else the trigger
    #: activity is still to run: it finds a build this trigger started but could not report).
    build: BuildRef | None = None


class JenkinsTarget(Msg):
    """How an activity reaches this run's Jenkins; credentials stay in the referenced Secret."""

    context: ExecutionContext
    job: str


class TriggerInput(Msg):
    target: JenkinsTarget
    execution_id: str


class BuildRef(Msg):
    job: str
    queue_id: int | None = None
    number: int | None = None


class StepSnapshot(Msg):
    stage: int
    step: int
    state: str
    started_ms: int | None = None
    ended_ms: int | None = None
    node_id: str | None = None
    message: str = ""


GATE_INPUT_PREFIX = "Gate"


def gate_input_id(stage: int) -> str:
    """The id of the Jenkins ``input`` step that holds stage ``stage`` (the generated Jenkinsfile's)."""
    return f"{GATE_INPUT_PREFIX}{stage}"


def gate_stage(input_id: str) -> int | None:
    """The stage a gate input holds (``Gate3`` -> 3); None for an input that is no gate of ours."""
    digits = input_id.removeprefix(GATE_INPUT_PREFIX)
    return int(digits) if digits != input_id and digits.isdigit() else None


class BuildSnapshot(Msg):
    """What Jenkins reports about the build, reduced to what the workflow acts on."""

    number: int | None = None
    building: bool = True
    result: str | None = None
    steps: list[StepSnapshot] = Field(default_factory=list)
    #: Stage indexes whose gate is pending, in order.
    pending_gates: list[int] = Field(default_factory=list)
    started_ms: int | None = None
    ended_ms: int | None = None
    agent_waiting: str | None = None
    """Why the build's agent pod is not running yet (the scheduler's PodScheduled condition), if it is not."""
    data_plane_waiting: str | None = None
    """Why the project's data-plane cluster cannot be asked about the agent pod, while it cannot."""
    failure: str | None = None
    """Why a build that failed outside every step failed: the console's last ``ERROR:`` line (e.g. the agent
    pod refused by the namespace's ResourceQuota)."""

    @field_validator("pending_gates", mode="before")
    @classmethod
    def _gate_ids(cls, value: Any) -> Any:
        """Histories recorded before carry the input ids (``Gate3``): read them as stage indexes."""
        if not isinstance(value, list):
            return value
        stages = (gate_stage(v) if isinstance(v, str) and not v.isdigit() else v for v in value)
        return [s for s in stages if s is not None]

    def step(self, stage: int, step: int) -> StepSnapshot | None:
        for s in self.steps:
            if s.stage == stage and s.step == step:
                return s
        return None

    def key(self) -> tuple[object, ...]:
        """What counts as a change worth returning to the workflow for."""
        return (
            self.number,
            self.building,
            self.result,
            tuple((s.stage, s.step, s.state) for s in self.steps),
            tuple(self.pending_gates),
            self.agent_waiting,
            self.data_plane_waiting,
        )


class FollowInput(Msg):
    target: JenkinsTarget
    build: BuildRef
    known: BuildSnapshot | None = None
    poll_interval_seconds: float = 2.0


class FollowThroughInput(Msg):
    """Follow the build and do, on the way, what needs no decision of the workflow: proceed the gates of
    ``proceed_gates``, store the log of every step that ends, write each change of ``status`` into the
    CR. Returns when the build ends or reaches a gate the workflow must hold (paused, approval)."""

    target: JenkinsTarget
    build: BuildRef
    execution: ExecutionRef
    status: PipelineExecutionStatus
    #: The status body last written into the CR (the activity writes only what differs).
    last_written: str | None = None
    #: False once a write found the CR deleted: nothing is written any more.
    cr_exists: bool = True
    stored_logs: list[StepKey] = Field(default_factory=list)
    proceed_gates: list[int] = Field(default_factory=list)
    poll_interval_seconds: float = 2.0


class StoredLog(Msg):
    stage: int
    step: int
    object_name: str
    size: int = 0
    report: StepReport | None = None


class FollowResult(Msg):
    snapshot: BuildSnapshot
    #: The status as the activity applied it: the workflow takes its stages and message.
    status: PipelineExecutionStatus
    stored: list[StoredLog] = Field(default_factory=list)
    #: The status body the activity last wrote (the input's ``last_written`` when it wrote nothing).
    last_written: str | None = None
    cr_exists: bool = True


class GateInput(Msg):
    target: JenkinsTarget
    build: BuildRef
    #: The stage whose gate is proceeded (or aborted).
    stage: int
    proceed: bool = True


class StopInput(Msg):
    target: JenkinsTarget
    build: BuildRef
    grace_seconds: float = 10.0


class StopResult(Msg):
    result: str | None = None


class ConsoleTailInput(Msg):
    target: JenkinsTarget
    build: BuildRef


class ConsoleTail(Msg):
    #: The console's last non-empty line (empty when there is none).
    last_line: str = ""


class StoreStepLogInput(Msg):
    target: JenkinsTarget
    build: BuildRef
    stage: int
    step: int
    node_id: str | None = None


class StepReport(Msg):
    """What a generated step script reported in its log (:mod:`activities.jenkins.stepreport`)."""

    image: PublishedImage | None = None
    release: HelmRelease | None = None
    error: str | None = None
    """Why the step failed, in the words of the tool that refused (e.g. the apiserver's message)."""

    def empty(self) -> bool:
        return self.image is None and self.release is None and self.error is None


class StoreStepLogResult(Msg):
    object_name: str
    size: int
    report: StepReport | None = None


class CleanupInput(Msg):
    target: JenkinsTarget
    credential_ids: list[str] = Field(default_factory=list)


class QuotaAcquireInput(Msg):
    project_namespace: str
    workflow_id: str
    run: int
    capacity: int
    #: When the PipelineExecution was created: the project's queue is ordered by it.
    created: datetime | None = None


def quota_workflow_id(project_namespace: str) -> str:
    return f"quota/{project_namespace}"


# --- the per-project quota workflow -------------------------------------------------------------


class QuotaWorkflowInput(Msg):
    project_namespace: str
    capacity: int = 2
    holders: list[str] = Field(default_factory=list)
    waiting: list[QuotaRequest] = Field(default_factory=list)


class QuotaRequest(Msg):
    workflow_id: str
    run: int
    capacity: int = 2
    #: When the PipelineExecution was created (its arrival in the project).
    created: datetime | None = None


class QuotaRelease(Msg):
    workflow_id: str


class QueuePosition(Msg):
    ahead: int


class SlotGranted(Msg):
    project_namespace: str = ""


class QuotaHolders(Msg):
    """Workflow ids of slot holders (as input: to check; as result: those that no longer run)."""

    workflow_ids: list[str] = Field(default_factory=list)


class QuotaState(Msg):
    capacity: int
    holders: list[str]
    waiting: list[QuotaRequest]


QuotaWorkflowInput.model_rebuild()


# --- the pipeline namespace ---------------------------------------------------------------------


class BootstrapInput(Msg):
    """What the pipeline namespace of one project must contain."""

    project_namespace: str
    """The project's namespace (where its PipelineSetting and Pipelines live)."""
    pipeline_namespace: str
    """The namespace that runs Jenkins, the registry and MinIO for the project."""
    jenkins_mode: Literal["Managed", "External"] = "Managed"
    """``External``: the setting names a Jenkins elsewhere; no Jenkins workload is created."""
    persistent_volumes: bool = False
    """Back Jenkins home, the registry and MinIO with PersistentVolumeClaims (else emptyDir)."""
    storage_class: str | None = None
    """StorageClass of the claims (None: the cluster's default)."""
    jenkins_volume_size: str = "10Gi"
    registry_volume_size: str = "20Gi"
    minio_volume_size: str = "20Gi"
    project_label: str = PROJECT_LABEL
    """Namespaces labelled ``<project_label>=<project_namespace>`` may reach the pipeline namespace."""
    allowed_ingress_namespaces: list[str] = Field(default_factory=list)
    """Further namespaces allowed by the NetworkPolicy (e.g. the worker's)."""
    agents_cluster_role: str = "edit"
    """ClusterRole bound to the jenkins ServiceAccount in the pipeline namespace (agent pods)."""
    ready_timeout_seconds: int = Field(default=300, ge=0)
    """Deadline for every Deployment to become available."""
    ready_poll_seconds: float = Field(default=2.0, gt=0)
    jenkins_image: str = "jenkins/jenkins:2.492.3-lts-jdk17"
    registry_image: str = "registry:2.8.3"
    minio_image: str = "minio/minio:RELEASE.2025-04-22T22-12-26Z"
    htpasswd_image: str = "httpd:2.4-alpine"
    """Runs ``htpasswd -B`` in the registry's init container (bcrypt stays out of Python)."""
    resource_quota: dict[str, str] = Field(default_factory=dict)
    """``spec.hard`` of the ResourceQuota ``cubepaas-executors``; empty: no quota (an old one is deleted)."""
    default_requests: dict[str, str] = Field(default_factory=dict)
    """LimitRange ``cubepaas-executors`` container defaults (requests, then limits); both empty: none."""
    default_limits: dict[str, str] = Field(default_factory=dict)
    data_plane: SecretReference | None = None
    """The data-plane kubeconfig Secret (in the project namespace unless it names one); None: this cluster.
    Only its name travels through the history, never the kubeconfig."""

    @classmethod
    def for_setting(
        cls, project_namespace: str, pipeline_namespace: str, setting: PipelineSettingSpec
    ) -> BootstrapInput:
        """What the PipelineSetting asks of the pipeline namespace."""
        persistence = setting.persistence
        return cls(
            project_namespace=project_namespace,
            pipeline_namespace=pipeline_namespace,
            jenkins_mode=setting.jenkins_mode(),
            persistent_volumes=setting.persistent_volumes(),
            storage_class=persistence.storage_class_name,
            jenkins_volume_size=persistence.jenkins_size,
            registry_volume_size=persistence.registry_size,
            minio_volume_size=persistence.object_store_size,
            resource_quota=setting.resource_quota.hard(),
            default_requests=setting.executor_resources.default_requests(),
            default_limits=setting.executor_resources.default_limits(),
            project_label=setting.project_label,
            data_plane=setting.data_plane.kubeconfig_secret_ref,
        )


class BootstrapResult(Msg):
    """What the bootstrap did and where the services are."""

    pipeline_namespace: str
    applied: int = 0
    """Objects created or changed by this run."""
    unchanged: int = 0
    """Objects that already matched (they cost one read each)."""
    writes: int = 0
    """Write requests sent (applies and deletes); 0 for a correct namespace."""
    applied_objects: list[str] = Field(default_factory=list)
    """``Kind/name`` of each object created or changed, in order."""
    jenkins_url: str | None = None
    """In-cluster URL of the managed Jenkins (None in External mode)."""
    jenkins_credentials_secret: str | None = None
    """Secret with keys ``username``, ``password``, ``token`` (None in External mode)."""
    registry_host: str = ""
    registry_credentials_secret: str = ""
    """Secret with keys ``username`` and ``password``."""
    object_store_endpoint: str = ""
    object_store_credentials_secret: str = ""
    """Secret with keys ``accessKey`` and ``secretKey``."""
    shared: bool = False
    """Done by another run of this worker, a moment ago or at the same time: this run sent no request."""

    def as_shared(self) -> BootstrapResult:
        return self.model_copy(
            update={"applied": 0, "unchanged": 0, "writes": 0, "applied_objects": [], "shared": True}
        )


class RoleBindingInput(Msg):
    """Grant the jenkins ServiceAccount a ClusterRole in each of the project's namespaces."""

    project_namespace: str
    pipeline_namespace: str
    cluster_role: str = "admin"
    project_label: str = PROJECT_LABEL
    service_account: str = "jenkins"
    data_plane: SecretReference | None = None
    """The data-plane kubeconfig Secret; the project's namespaces are those of the data plane."""


class NamespaceCheckInput(Msg):
    """Were this bootstrap and this RoleBinding reconcile both done by this worker a moment ago?"""

    bootstrap: BootstrapInput
    rolebindings: RoleBindingInput


class NamespaceCheckResult(Msg):
    verified: bool
    #: Seconds since the older of the two was last verified (when ``verified``).
    age_seconds: float = 0.0


class RoleBindingResult(Msg):
    created: int = 0
    updated: int = 0
    """Changed in place, or deleted and created again when the roleRef changed."""
    deleted: int = 0
    """Stale RoleBindings removed from namespaces that are no longer the project's."""
    unchanged: int = 0
    writes: int = 0
    namespaces: list[str] = Field(default_factory=list)
    """The project's namespaces, sorted."""
    shared: bool = False
    """Done by another run of this worker, a moment ago or at the same time: this run sent no request."""

    def as_shared(self) -> RoleBindingResult:
        return self.model_copy(
            update={"created": 0, "updated": 0, "deleted": 0, "unchanged": 0, "writes": 0, "shared": True}
        )


# --- schedules: cron and SCM polling -------------------------------------------------------------


def cron_schedule_id(namespace: str, pipeline: str) -> str:
    """The Temporal Schedule of a Pipeline's ``triggers.cron``."""
    return f"devops-cron/{namespace}/{pipeline}"


def poll_schedule_id(namespace: str, pipeline: str) -> str:
    """The Temporal Schedule of a Pipeline's ``triggers.pollScm``."""
    return f"devops-poll/{namespace}/{pipeline}"


class ScheduledRunInput(Msg):
    """Input of the workflow a cron Schedule starts (one per firing)."""

    namespace: str
    pipeline: str
    branch: str = ""


class CreateScheduledRunInput(Msg):
    namespace: str
    pipeline: str
    branch: str = ""
    #: The firing's workflow id (unique per firing, stable across retries): the run's delivery.
    delivery: str


class ScheduledRunResult(Msg):
    run: str = ""
    """The execution created (empty: none, see ``reason``)."""
    reason: str = ""
    phase: str = ""
    """How the run ended (the workflow waits for it, so the Schedule's overlap policy applies to runs)."""


class RunRefInput(Msg):
    namespace: str
    name: str


class ScmPollInput(Msg):
    """Input of the workflow a polling Schedule starts."""

    namespace: str
    pipeline: str
    branch: str = ""


class ScmSyncInput(Msg):
    """Input of the workflow a credential's Schedule starts: verify the token, mirror its repositories."""

    namespace: str
    credential: str


class ScmSyncResult(Msg):
    ready: str = ""
    """The ``Ready`` condition's status after this sync (True, False, Unknown; empty: credential gone)."""
    reason: str = ""
    message: str = ""
    repositories: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    complete: bool = False
    """The listing reached its end (only then are vanished repositories deleted)."""


class ScmPollResult(Msg):
    commit: str = ""
    """The branch head seen."""
    run: str = ""
    """The execution created for it (empty: none, see ``reason``)."""
    reason: str = ""


ExecutionWorkflowInput.model_rebuild()
ExecutionState.model_rebuild()
JenkinsJob.model_rebuild()
FinishInput.model_rebuild()
FinishResult.model_rebuild()
