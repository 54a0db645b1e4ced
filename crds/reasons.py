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


class ScmConditionType(StrEnum):
    """Condition types of the source-code objects."""

    READY = "Ready"
    """SourceCodeCredential: the provider accepted the token at the last verification."""
    WEBHOOK = "Webhook"
    """Pipeline: its webhook is registered at the provider (False says why not; runs still start by hand)."""


class ScmReason(StrEnum):
    """Reasons of the ``Ready`` condition of a SourceCodeCredential and the ``Webhook`` one of a Pipeline."""

    VERIFIED = "Verified"
    TOKEN_REFUSED = "TokenRefused"
    """The provider answered 401: the token is wrong, expired or revoked."""
    WRONG_ACCOUNT = "WrongAccount"
    """The token belongs to another login than the credential's loginName."""
    TOKEN_SECRET_INVALID = "TokenSecretInvalid"
    PROVIDER_CONFIG_INVALID = "ProviderConfigInvalid"
    """No enabled SourceCodeProviderConfig of the credential's type, or its URL is unusable."""
    PROVIDER_DISABLED = "ProviderDisabled"
    PROVIDER_UNAVAILABLE = "ProviderUnavailable"
    """The provider did not answer, or is rate limiting; the last verdict stands until it does."""
    NOT_VERIFIABLE = "NotVerifiable"
    """No driver for this provider type (Bitbucket): the token is used for cloning as it is."""
    REGISTERED = "Registered"
    HOOK_REFUSED = "HookRefused"
    """The provider refused to create the webhook (e.g. no admin right on the repository)."""
    NO_CREDENTIAL = "NoCredential"
    """No verified credential of a provider the repository belongs to."""
    NO_WEBHOOK_TRIGGERS = "NoWebhookTriggers"


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
    GITEA = "gitea"
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


class Reason(StrEnum):
    """CamelCase reasons written into ``status.conditions[].reason``: the closed list.

    A run ends with one of these; an error an activity raises names one (``DevopsError.reason``), or
    the workflow uses the default reason of the phase the error happened in.
    """

    # Initialized
    CONFIG_LOADED = "ConfigLoaded"
    CONFIG_INVALID = "ConfigInvalid"
    CREDENTIAL_REFUSED = "CredentialRefused"
    """The provider refused the run's SourceCodeCredential at its last verification."""
    # Queueing / Provisioned
    QUOTA_UNAVAILABLE = "QuotaUnavailable"
    NAMESPACE_READY = "NamespaceReady"
    JENKINS_NOT_READY = "JenkinsNotReady"
    DEPLOYMENT_NOT_READY = "DeploymentNotReady"
    DATA_PLANE_INVALID = "DataPlaneInvalid"
    """The data-plane kubeconfig Secret is missing or malformed, or the data plane refused its credentials."""
    DATA_PLANE_UNAVAILABLE = "DataPlaneUnavailable"
    """The data-plane cluster does not answer; the run waits for it."""
    # Built / Succeeded
    BUILD_STARTED = "BuildStarted"
    BUILD_SUCCEEDED = "BuildSucceeded"
    BUILD_FAILED = "BuildFailed"
    STEP_FAILED = "StepFailed"
    LOG_NOT_STORED = "LogNotStored"
    CANCELLED = "Cancelled"
    ABORTED_IN_JENKINS = "AbortedInJenkins"
    """Jenkins aborted the build though this run never asked it to (e.g. a Jenkins restart)."""
    TIMED_OUT = "TimedOut"
    """Jenkins aborted the build because a pipeline, stage or step timeout was exceeded."""
    APPROVAL_DENIED = "ApprovalDenied"
    INTERNAL_ERROR = "InternalError"
    # Written by the bridge when a run's workflow closed without finishing the run
    WORKFLOW_TERMINATED = "WorkflowTerminated"
    WORKFLOW_TIMED_OUT = "WorkflowTimedOut"
    WORKFLOW_FAILED = "WorkflowFailed"
    # Named by the Jenkins client for the error it met
    JENKINS_FORBIDDEN = "JenkinsForbidden"
    JENKINS_NOT_FOUND = "JenkinsNotFound"
    JENKINS_INVALID_CONFIG = "JenkinsInvalidConfig"
    JENKINS_UNAVAILABLE = "JenkinsUnavailable"
    JENKINS_REJECTED = "JenkinsRejected"
    JENKINS_TIMEOUT = "JenkinsTimeout"
    # Named by the object store client for the error it met
    OBJECT_STORE_UNAVAILABLE = "ObjectStoreUnavailable"
    OBJECT_STORE_REJECTED = "ObjectStoreRejected"
    # Notified
    NOTIFYING = "Notifying"
    NOTIFICATIONS_SENT = "NotificationsSent"
    NOTIFICATIONS_FAILED = "NotificationsFailed"
    NO_NOTIFICATIONS = "NoNotifications"

    @classmethod
    def parse(cls, value: object) -> Reason | None:
        """The member named by ``value`` (e.g. an error's detail), None when it names none."""
        if not isinstance(value, str):
            return None
        try:
            return cls(value)
        except ValueError:
            return None


__all__ = [
    "ConditionStatus",
    "ConditionType",
    "EventReason",
    "ExecutionPhase",
    "GitEvent",
    "JenkinsMode",
    "NotificationCondition",
    "NotificationState",
    "OverlapPolicy",
    "Reason",
    "ScmConditionType",
    "ScmReason",
    "SourceCodeProviderType",
    "StageState",
    "StepState",
    "TriggeredBy",
]
