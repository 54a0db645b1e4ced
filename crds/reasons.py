"""Enumerations and reason constants shared by the custom resources, the workflows and the activities.

Every value here is part of the public API: it is written into CR status fields and shown by
``kubectl``. StrEnums serialize as their plain string value, and the CRD generator turns each into an
``enum`` in the OpenAPI schema.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ExecutionPhase(StrEnum):
    """Phase of a PipelineExecution (``status.phase``)."""

    WAITING = "Waiting"
    QUEUEING = "Queueing"
    PROVISIONING = "Provisioning"
    BUILDING = "Building"
    PAUSED = "Paused"
    SUCCESS = "Success"
    FAILED = "Failed"
    ABORTED = "Aborted"
    DENIED = "Denied"

    @property
    def is_terminal(self) -> bool:
        """True for the phases a run never leaves (Success, Failed, Aborted, Denied)."""
        return self in _TERMINAL_PHASES


_TERMINAL_PHASES: Final = frozenset(
    {ExecutionPhase.SUCCESS, ExecutionPhase.FAILED, ExecutionPhase.ABORTED, ExecutionPhase.DENIED}
)


class StageState(StrEnum):
    """State of one stage or one step of a PipelineExecution."""

    WAITING = "Waiting"
    BUILDING = "Building"
    SUCCESS = "Success"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    ABORTED = "Aborted"
    DENIED = "Denied"

    @property
    def is_terminal(self) -> bool:
        return self not in (StageState.WAITING, StageState.BUILDING)


# A step has the same states as a stage.
StepState = StageState


class ConditionType(StrEnum):
    """Condition types of a PipelineExecution (``status.conditions[].type``)."""

    INITIALIZED = "Initialized"
    PROVISIONED = "Provisioned"
    BUILT = "Built"
    SUCCEEDED = "Succeeded"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class TriggeredBy(StrEnum):
    """Who or what started a PipelineExecution."""

    USER = "user"
    WEBHOOK = "webhook"
    CRON = "cron"
    IMAGE = "image"
    POLL = "poll"
    """SCM polling saw the branch head move."""


class GitEvent(StrEnum):
    """The git event a run builds; ``event`` constraints in the pipeline file match these values."""

    PUSH = "push"
    PULL_REQUEST = "pull_request"
    TAG = "tag"
    MANUAL = "manual"
    IMAGE = "image"
    """An image was pushed to a registry (``triggers.imagePush``)."""
    CRON = "cron"
    """A schedule fired (``triggers.cron``)."""


class OverlapPolicy(StrEnum):
    """What a schedule does when its previous run has not ended (Temporal's ScheduleOverlapPolicy)."""

    SKIP = "Skip"
    BUFFER_ONE = "BufferOne"
    BUFFER_ALL = "BufferAll"
    CANCEL_OTHER = "CancelOther"
    ALLOW_ALL = "AllowAll"


class JenkinsMode(StrEnum):
    """``Managed``: the engine deploys Jenkins in the pipeline namespace; ``External``: use ``url``."""

    MANAGED = "Managed"
    EXTERNAL = "External"


class SourceCodeProviderType(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    BITBUCKET_CLOUD = "bitbucketcloud"
    BITBUCKET_SERVER = "bitbucketserver"


class NotificationCondition(StrEnum):
    """When a pipeline's notification is sent (``notification.condition[]``)."""

    SUCCESS = "Success"
    FAILED = "Failed"
    CHANGED = "Changed"
    ABORTED = "Aborted"


class Reason:
    """CamelCase reasons written into ``status.conditions[].reason``.

    Plain string constants (not an enum) because error classes may add their own reason
    (``DevopsError.reason`` defaults to the class name).
    """

    # Initialized
    CONFIG_LOADED: Final = "ConfigLoaded"
    CONFIG_INVALID: Final = "ConfigInvalid"
    # Queueing / Provisioned
    QUOTA_EXCEEDED: Final = "QuotaExceeded"
    NAMESPACE_READY: Final = "NamespaceReady"
    JENKINS_NOT_READY: Final = "JenkinsNotReady"
    JENKINS_READY: Final = "JenkinsReady"
    # Built / Succeeded
    BUILD_STARTED: Final = "BuildStarted"
    BUILD_SUCCEEDED: Final = "BuildSucceeded"
    BUILD_FAILED: Final = "BuildFailed"
    STEP_FAILED: Final = "StepFailed"
    TIMED_OUT: Final = "TimedOut"
    CANCELLED: Final = "Cancelled"
    APPROVAL_DENIED: Final = "ApprovalDenied"
    WAITING_FOR_APPROVAL: Final = "WaitingForApproval"
    PAUSED: Final = "Paused"
    INTERNAL_ERROR: Final = "InternalError"


__all__ = [
    "ConditionStatus",
    "ConditionType",
    "ExecutionPhase",
    "GitEvent",
    "JenkinsMode",
    "NotificationCondition",
    "OverlapPolicy",
    "Reason",
    "SourceCodeProviderType",
    "StageState",
    "StepState",
    "TriggeredBy",
]
