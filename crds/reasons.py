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
    NOTIFIED = "Notified"
    """Unknown while the run's notifications are being sent; True/False once each is settled."""


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


class GitEvent(StrEnum):
    """The git event a run builds; ``event`` constraints in the pipeline file match these values."""

    PUSH = "push"
    PULL_REQUEST = "pull_request"
    TAG = "tag"
    MANUAL = "manual"


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


class NotificationState(StrEnum):
    """Delivery state of one recipient's notification (``status.notifications[].state``).

    ``Sending`` is written before the message leaves and replaced by the outcome after it: a run that
    finds ``Sending`` (the worker stopped mid-send) cannot know whether it arrived and records
    ``Unknown`` instead of sending again.
    """

    PENDING = "Pending"
    SENDING = "Sending"
    RETRYING = "Retrying"
    SENT = "Sent"
    FAILED = "Failed"
    UNKNOWN = "Unknown"

    @property
    def is_settled(self) -> bool:
        return self in (NotificationState.SENT, NotificationState.FAILED, NotificationState.UNKNOWN)


class EventReason(StrEnum):
    """Reasons of the Kubernetes Events a PipelineExecution gets (``kubectl describe pe``)."""

    STARTED = "Started"
    QUEUED = "Queued"
    BUILD_STARTED = "BuildStarted"
    STAGE_SUCCEEDED = "StageSucceeded"
    STAGE_FAILED = "StageFailed"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    PAUSED = "Paused"
    RESUMED = "Resumed"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ABORTED = "Aborted"
    DENIED = "Denied"
    NOTIFIED = "Notified"
    NOTIFICATION_FAILED = "NotificationFailed"
    LOGS_EXPIRED = "LogsExpired"


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
    # Notified
    NOTIFYING: Final = "Notifying"
    NOTIFICATIONS_SENT: Final = "NotificationsSent"
    NOTIFICATIONS_FAILED: Final = "NotificationsFailed"
    NO_NOTIFICATIONS: Final = "NoNotifications"


__all__ = [
    "ConditionStatus",
    "ConditionType",
    "EventReason",
    "ExecutionPhase",
    "GitEvent",
    "JenkinsMode",
    "NotificationCondition",
    "NotificationState",
    "Reason",
    "SourceCodeProviderType",
    "StageState",
    "StepState",
    "TriggeredBy",
]
