"""PipelineExecution: one run of a Pipeline, driven by one durable Temporal workflow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal
from urllib.parse import quote

from pydantic import Field

from crds.meta import (
    AGE_COLUMN,
    CrdInfo,
    CustomResource,
    KubeModel,
    PrinterColumn,
    Timestamp,
)
from crds.pipeline_file import Duration, PipelineConfig
from crds.reasons import (
    ConditionStatus,
    ConditionType,
    ExecutionPhase,
    GitEvent,
    NotificationState,
    StageState,
    TriggeredBy,
)
from crds.status import HasConditions
from crds.text import SafeMessage

PIPELINE_LABEL: Final = "devops.cubepaas.io/pipeline"
"""Label on each execution naming its Pipeline (for list selectors)."""
RUN_LABEL: Final = "devops.cubepaas.io/run"


def pipeline_selector(pipeline: str) -> str | None:
    """The label selector of a Pipeline's runs (every run carries ``PIPELINE_LABEL``: ``create_run`` sets
    it, and the load adds it to one created by hand); None for a name too long to be a label value."""
    return f"{PIPELINE_LABEL}={pipeline}" if len(pipeline) <= 63 else None


DELIVERY_LABEL: Final = "devops.cubepaas.io/delivery"
"""Label on an execution started by a delivery (webhook, schedule, poll): the delivery's key."""


class PipelineExecutionSpec(KubeModel):
    """What to run: a pipeline's config at one commit."""

    pipeline_name: str = Field(
        min_length=1,
        max_length=253,
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "pipelineName is immutable"}]
        },
    )
    """Name of the Pipeline (same namespace) this execution belongs to."""
    run: int = Field(
        ge=1,
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "run is immutable"}]
        },
    )
    """Run number within the pipeline (1, 2, ...)."""
    triggered_by: TriggeredBy = TriggeredBy.USER
    """Who or what started the run: user, webhook, cron or image."""
    trigger_user_name: str | None = None
    """The user who started (or, for webhooks, pushed) the run."""
    branch: str | None = None
    """Git branch built (empty for tags)."""
    ref: str | None = None
    """Full git ref, e.g. refs/heads/main or refs/tags/v1.0."""
    commit: str | None = None
    """Commit SHA built; empty = the head of branch when the run starts."""
    event: GitEvent = GitEvent.MANUAL
    """push, pull_request, tag, image, cron or manual."""
    author: str | None = None
    """Commit author."""
    commit_message: str | None = None
    html_link: str | None = None
    """Link to the commit, tag or pull request in the provider's UI."""
    repository_url: str | None = None
    """Repository URL; empty = the Pipeline's repositoryUrl."""
    variables: dict[str, str] = Field(default_factory=dict, max_length=50)
    """Extra CICD_* variables of the run, e.g. CICD_IMAGE_REPO/TAG/DIGEST of an image-push run."""
    secrets_withheld: bool = False
    """Steps get no envFrom secrets (a pull request from a fork, without triggers.forkPullRequestSecrets)."""
    pipeline_config: PipelineConfig | None = None
    """The pipeline file this run uses (a snapshot); empty = read from the repository at commit."""
    paused: bool = False
    """Hold the run before its next stage while true."""
    cancelled: bool = Field(
        default=False,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self || !oldSelf", "message": "cancelled cannot be set back to false"}
            ]
        },
    )
    """Stop the run. Once true it cannot be set back to false."""


class PublishedImage(KubeModel):
    """What a publishImage step pushed."""

    repository: str = Field(max_length=512)
    """Registry host and repository, e.g. 127.0.0.1:5000/demo/app."""
    tag: str = Field(max_length=128)
    digest: str = Field(max_length=128)
    """Manifest digest as the registry stores it, e.g. sha256:...; pin deployments to it."""


class HelmRelease(KubeModel):
    """What an applyApp step installed or upgraded."""

    name: str = Field(max_length=53)
    namespace: str = Field(max_length=63)
    revision: int


class StepStatus(KubeModel):
    """State of one step of a stage."""

    name: str = Field(max_length=256)
    state: StageState = StageState.WAITING
    started: Timestamp | None = None
    ended: Timestamp | None = None
    log_object: str | None = None
    """Object-store key of the step's complete log (set when the step ends)."""
    message: SafeMessage | None = None
    image: PublishedImage | None = None
    """The image a publishImage step pushed (set when the step ends)."""
    release: HelmRelease | None = None
    """The Helm release an applyApp step installed or upgraded (set when the step ends)."""


class StageStatus(KubeModel):
    """State of one stage (index 0 is the clone stage; user stages follow)."""

    name: str = Field(max_length=256)
    state: StageState = StageState.WAITING
    started: Timestamp | None = None
    ended: Timestamp | None = None
    steps: list[StepStatus] = Field(default_factory=list, max_length=64)


class WorkflowRef(KubeModel):
    """The Temporal workflow that drives this execution."""

    id: str
    run_id: str | None = None
    namespace: str | None = None
    """Temporal namespace."""
    ui_url: str | None = None
    """Link to the workflow in the Temporal UI."""

    @classmethod
    def of(cls, ui_base_url: str, namespace: str, workflow_id: str, run_id: str | None) -> WorkflowRef:
        """The reference the workflow writes for itself and the bridge for the workflows it starts: both
        build it here, so they never disagree (and never rewrite each other's)."""
        url = workflow_ui_url(ui_base_url, namespace, workflow_id, run_id)
        return cls(id=workflow_id, run_id=run_id, namespace=namespace, ui_url=url or None)


def workflow_ui_url(ui_base_url: str, namespace: str, workflow_id: str, run_id: str | None = None) -> str:
    """``<ui>/namespaces/<ns>/workflows/<id>/<runId>/history``; "" without a UI.

    The id is percent-encoded (ours contain ``/``), as the UI's own links do.
    """
    if not ui_base_url:
        return ""
    base = ui_base_url.rstrip("/")
    url = f"{base}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
    if run_id:
        url += f"/{quote(run_id, safe='')}/history"
    return url


class JenkinsBuildRef(KubeModel):
    """The Jenkins job and build of this execution."""

    job: str
    build: int | None = None
    """Build number (empty while queued)."""


class NotificationRecord(KubeModel):
    """What was sent to one recipient for this run (never a credential, never the message body)."""

    notifier: str = Field(max_length=63)
    recipient: str = Field(max_length=320)
    kind: str = Field(max_length=16)
    """smtp, slack, msteams or webhook."""
    state: NotificationState = NotificationState.PENDING
    attempts: int = Field(default=0, ge=0)
    last_attempt: Timestamp | None = None
    sent: Timestamp | None = None
    id: str = Field(max_length=128)
    """Stable per run and recipient: the CloudEvent id and the e-mail Message-ID (receivers can dedupe)."""
    message: str | None = Field(default=None, max_length=1024)
    """The last error, or why it was not sent."""


class PipelineExecutionStatus(HasConditions):
    """Observed state of the run, written by its workflow."""

    phase: ExecutionPhase | None = None
    started: Timestamp | None = None
    ended: Timestamp | None = None
    duration: str | None = None
    """Run time, e.g. 1m32s (written when the run ends; shown by kubectl get -o wide)."""
    stages: list[StageStatus] = Field(default_factory=list, max_length=64)
    workflow: WorkflowRef | None = None
    jenkins: JenkinsBuildRef | None = None
    message: SafeMessage | None = None
    """Human-readable summary of the current phase."""
    observed_generation: int | None = None
    pending_gate: int | None = Field(default=None, ge=0)
    """Index (in stages) of the stage waiting for approval; empty when none waits."""
    paused: bool = False
    """The run is held before its next stage (spec.paused acknowledged)."""
    notifications: list[NotificationRecord] = Field(default_factory=list, max_length=50)
    """One entry per recipient the run's notification went to (written after the run ended)."""
    logs_expired: Timestamp | None = None
    """When the log retention sweep deleted this run's step logs."""

    def finish(self, phase: ExecutionPhase, ended: Timestamp, message: str | None = None) -> None:
        """Record the end: phase, end time, duration."""
        self.phase = phase
        self.ended = ended
        if message is not None:
            self.message = message
        if self.started is not None:
            self.duration = str(Duration.from_seconds(int((ended - self.started).total_seconds())))

    @property
    def is_finished(self) -> bool:
        return self.phase is not None and self.phase.is_terminal


def workflow_id_for(namespace: str, name: str, uid: str) -> str:
    """The id of the workflow that runs the PipelineExecution ``namespace/name`` with this uid."""
    return f"pe-{namespace}-{name}-{uid}"


class PipelineExecution(CustomResource):
    """One run of a Pipeline."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="pipelineexecutions",
        short_names=("pe",),
        printer_columns=(
            PrinterColumn("Pipeline", ".spec.pipelineName"),
            PrinterColumn("Run", ".spec.run", "integer"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Branch", ".spec.branch"),
            AGE_COLUMN,
            PrinterColumn("Duration", ".status.duration", priority=1),
            PrinterColumn("Message", ".status.message", priority=1),
        ),
    )

    kind: Literal["PipelineExecution"] = "PipelineExecution"
    spec: PipelineExecutionSpec
    status: PipelineExecutionStatus | None = None

    @staticmethod
    def default_name(pipeline_name: str, run: int) -> str:
        """``<pipeline>-<run>``, the name of a pipeline's run."""
        return f"{pipeline_name}-{run}"

    def workflow_id(self) -> str:
        """``pe-<namespace>-<name>-<uid>``: one workflow per CR, a re-created CR gets a new one."""
        return workflow_id_for(self.namespace, self.name, self.metadata.uid or "")

    @property
    def is_finished(self) -> bool:
        return self.status is not None and self.status.is_finished

    def summary(self) -> RunSummary:
        st = self.status
        notified = st.condition(ConditionType.NOTIFIED) if st else None
        return RunSummary(
            name=self.name,
            uid=self.metadata.uid or "",
            pipeline=self.spec.pipeline_name,
            run=self.spec.run,
            phase=ExecutionPhase(st.phase) if st and st.phase else None,
            notifying=notified is not None and notified.status == ConditionStatus.UNKNOWN,
        )


@dataclass(frozen=True)
class RunSummary:
    """What the history limit and the notification decision need of one of a pipeline's runs. Read from the
    raw list: a whole model of each of up to a hundred runs (stages, config) cost more than the rest of the
    run's ending."""

    name: str
    uid: str
    pipeline: str
    run: int
    phase: ExecutionPhase | None
    #: ``Notified`` is Unknown: the run is still sending its notifications.
    notifying: bool = False

    @property
    def is_finished(self) -> bool:
        return self.phase is not None and self.phase.is_terminal

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> RunSummary | None:
        """From a PipelineExecution as the apiserver returns it; None for one that is not a run (no run
        number or pipeline: nothing the limit or the decision may count)."""
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        run, pipeline = spec.get("run"), spec.get("pipelineName")
        if not isinstance(run, int) or not isinstance(pipeline, str) or not meta.get("name"):
            return None
        try:
            phase = ExecutionPhase(status["phase"]) if status.get("phase") else None
        except ValueError:
            phase = None  # a phase this version does not know: not finished, as far as it can tell
        notifying = any(
            isinstance(c, Mapping)
            and c.get("type") == ConditionType.NOTIFIED.value
            and c.get("status") == ConditionStatus.UNKNOWN.value
            for c in status.get("conditions") or []
        )
        return cls(str(meta["name"]), str(meta.get("uid") or ""), pipeline, run, phase, notifying)


__all__ = [
    "DELIVERY_LABEL",
    "PIPELINE_LABEL",
    "RUN_LABEL",
    "HelmRelease",
    "JenkinsBuildRef",
    "NotificationRecord",
    "PipelineExecution",
    "PipelineExecutionSpec",
    "PipelineExecutionStatus",
    "PublishedImage",
    "RunSummary",
    "StageStatus",
    "StepStatus",
    "WorkflowRef",
    "pipeline_selector",
]
