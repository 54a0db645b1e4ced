"""Pipeline: a repository, its triggers and (optionally) an inline pipeline config."""

from __future__ import annotations

from typing import ClassVar, Final, Literal

from pydantic import Field

from crds.meta import AGE_COLUMN, CrdInfo, CustomResource, KubeModel, PrinterColumn, Timestamp
from crds.pipeline_file import Constraint, Duration, PipelineConfig
from crds.reasons import ExecutionPhase, OverlapPolicy
from crds.status import HasConditions

WEBHOOK_SECRET_KEY: Final = "secret"
"""Key of the webhook Secret holding the shared secret providers sign with."""
MAX_DELIVERIES: Final = 50


class CronTrigger(KubeModel):
    """Run on a schedule."""

    schedule: str = Field(min_length=1, max_length=128)
    """Cron expression, e.g. "0 3 * * *"."""
    timezone: str | None = None
    """IANA time zone of the schedule; default UTC."""
    branch: str | None = None
    """Branch to build; default the pipeline's defaultBranch."""
    paused: bool = False
    """Keep the schedule but start nothing while true (the Temporal Schedule is paused)."""
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    """When the previous scheduled run has not ended: Skip (default), BufferOne, BufferAll, CancelOther
    (cancels the running one) or AllowAll."""
    catchup_window: Duration = Duration("10m")
    """Runs missed while Temporal was down are started if they are at most this late."""


class PollScmTrigger(KubeModel):
    """Poll the repository (git ls-remote) and run when the branch head moved."""

    interval: Duration = Duration("1m")
    """How often to poll."""
    branch: str | None = None
    """Branch to watch; default the pipeline's defaultBranch."""


class ImagePushTrigger(KubeModel):
    """Run when an image is pushed to the project's registry."""

    repository: str = Field(min_length=1)
    """Image repository, e.g. library/base."""
    tag: Constraint | None = None
    """Tags (globs) that trigger a run; default every tag."""


class Triggers(KubeModel):
    """What starts a run besides a user."""

    webhook_push: bool = True
    webhook_pull_request: bool = True
    webhook_tag: bool = True
    image_push: ImagePushTrigger | None = None
    cron: CronTrigger | None = None
    poll_scm: PollScmTrigger | None = None
    fork_pull_request_secrets: bool = False
    """Give steps their envFrom secrets also for pull requests from forks (default: withheld)."""


DEFAULT_SUCCESSFUL_HISTORY: Final = 50
DEFAULT_FAILED_HISTORY: Final = 50


class ExecutionHistoryLimit(KubeModel):
    """How many finished PipelineExecutions of this pipeline are kept (older ones are deleted)."""

    successful: int = Field(default=DEFAULT_SUCCESSFUL_HISTORY, ge=1, le=10000)
    """Runs that ended Success."""
    failed: int = Field(default=DEFAULT_FAILED_HISTORY, ge=1, le=10000)
    """Runs that ended Failed, Aborted or Denied."""


class PipelineSpec(KubeModel):
    """Where the code is and what starts a run."""

    display_name: str | None = None
    repository_url: str = Field(min_length=1, max_length=2048)
    """Clone URL of the repository."""
    source_code_credential_name: str | None = None
    """SourceCodeCredential (same namespace) used to clone and to register webhooks; empty = public."""
    default_branch: str = "main"
    triggers: Triggers = Field(default_factory=Triggers)
    config: PipelineConfig | None = None
    """Inline pipeline file; empty = read .cubepaas.devops.yml from the repository at each run."""
    execution_history_limit: ExecutionHistoryLimit = Field(default_factory=ExecutionHistoryLimit)
    """Finished runs kept as PipelineExecutions; running and paused ones are never deleted."""


class CacheNode(KubeModel):
    """A node that holds this pipeline's step caches."""

    node_name: str
    last_used: Timestamp | None = None


class DeliveryRecord(KubeModel):
    """One delivery (webhook, schedule firing, poll) and the run number it took."""

    key: str = Field(max_length=64)
    """sha256 (hex, 40 characters) of ``<source>:<delivery id>``."""
    run: int = Field(ge=1)


class PipelineStatus(HasConditions):
    """Run counter, the last run, and the webhook registered for the Pipeline (condition ``Webhook``)."""

    next_run: int = Field(default=1, ge=1)
    """Run number of the next execution."""
    last_execution_name: str | None = None
    last_run_state: ExecutionPhase | None = None
    last_started: Timestamp | None = None
    cache_nodes: list[CacheNode] = Field(
        default_factory=list,
        max_length=100,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["nodeName"]},
    )
    """Nodes with warm caches, most recently used first."""
    deliveries: list[DeliveryRecord] = Field(default_factory=list, max_length=MAX_DELIVERIES)
    """The most recent webhook deliveries, schedule firings and polls that started a run (newest last):
    a redelivery finds the run it started here."""
    last_polled_commit: str | None = None
    """The branch head SCM polling saw last (a run was created for it, except for the first poll)."""
    triggers_message: str | None = None
    """Why a cron or pollScm trigger is not scheduled (e.g. an invalid cron expression); empty when fine."""
    webhook_id: str | None = None
    """The id of the webhook the worker registered at the provider (deleted with the Pipeline)."""
    webhook_repository: str | None = None
    """``owner/name`` of the repository that hook is on."""
    webhook_credential: str | None = None
    """The SourceCodeCredential the hook was registered with (and is deleted with)."""
    observed_generation: int | None = None


class Pipeline(CustomResource):
    """A CI/CD pipeline of a repository."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="pipelines",
        short_names=("pl",),
        printer_columns=(
            PrinterColumn("Repository", ".spec.repositoryUrl"),
            PrinterColumn("Last Run", ".status.lastExecutionName"),
            PrinterColumn("State", ".status.lastRunState"),
            AGE_COLUMN,
            PrinterColumn("Next Run", ".status.nextRun", "integer", priority=1),
        ),
    )

    kind: Literal["Pipeline"] = "Pipeline"
    spec: PipelineSpec
    status: PipelineStatus | None = None

    def execution_name(self, run: int) -> str:
        """Name of this pipeline's execution number ``run``."""
        return f"{self.name}-{run}"

    def webhook_secret_name(self) -> str:
        """``<pipeline>-webhook``: the Secret holding the webhook secret of this Pipeline."""
        return f"{self.name}-webhook"


__all__ = [
    "MAX_DELIVERIES",
    "WEBHOOK_SECRET_KEY",
    "CacheNode",
    "CronTrigger",
    "DeliveryRecord",
    "ExecutionHistoryLimit",
    "ImagePushTrigger",
    "Pipeline",
    "PipelineSpec",
    "PipelineStatus",
    "PollScmTrigger",
    "Triggers",
]
