"""Pipeline: a repository, its triggers and (optionally) an inline pipeline config."""

from __future__ import annotations

from typing import ClassVar, Final, Literal

from pydantic import Field

from crds.meta import AGE_COLUMN, CrdInfo, CustomResource, KubeModel, PrinterColumn, Timestamp
from crds.pipeline_file import Constraint, PipelineConfig
from crds.reasons import ExecutionPhase


class CronTrigger(KubeModel):
    """Run on a schedule."""

    schedule: str = Field(min_length=1, max_length=128)
    """Cron expression, e.g. "0 3 * * *"."""
    timezone: str | None = None
    """IANA time zone of the schedule; default UTC."""
    branch: str | None = None
    """Branch to build; default the pipeline's defaultBranch."""


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


class PipelineStatus(KubeModel):
    """Run counter and the last run."""

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
    webhook_id: str | None = None
    """Id of the webhook registered with the provider."""
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


__all__ = [
    "CacheNode",
    "CronTrigger",
    "ExecutionHistoryLimit",
    "ImagePushTrigger",
    "Pipeline",
    "PipelineSpec",
    "PipelineStatus",
    "Triggers",
]
