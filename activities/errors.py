"""Errors named by what a retry should do.

Every fault an activity meets is classified once, where it happens (the Kubernetes, Jenkins and object
store wrappers), into one of two branches; the activity boundary (:func:`to_application_error`)
translates it into Temporal's ``ApplicationError`` so the workflow's retry policy can act on ``type``::

    DevopsError                      base of everything this product raises on purpose
    ├── TransientError               retry with backoff: the same call may succeed later
    │   ├── KubeTransientError       apiserver 5xx, 409 conflict, 429, timeouts, connection errors
    │   │   └── KubeConflictError    409: stale resourceVersion, AlreadyExists, apply conflict (re-read)
    │   ├── JenkinsTransientError    Jenkins 5xx, "Jenkins is starting", timeouts, connection errors
    │   ├── StoreTransientError      object store 5xx, timeouts, connection errors
    │   └── NotifierTransientError   a notifier's 5xx/408/429, SMTP 4xx, timeouts, connection errors
    ├── WaitError                    not retried by the activity: the workflow waits, saying why, then
    │   │                            calls the activity again
    │   └── DataPlaneUnavailableError  a project's data-plane cluster cannot be reached (the others can)
    └── PermanentError               do not retry: the run ends with this reason
        ├── KubeNotFoundError        a required object is missing (404)
        ├── KubeInvalidError         the apiserver rejected an object (422, 400)
        ├── KubeForbiddenError       401/403: RBAC does not allow it
        ├── JenkinsPermanentError    401/403, a missing job we created, an invalid config
        ├── StorePermanentError      object store 4xx: credentials, permissions, an invalid request
        ├── ConfigError              the pipeline file or the CR is invalid (message for the user)
        ├── NotifierPermanentError   a notifier refused the message (HTTP 4xx, SMTP 5xx)
        └── GitError                 the repository or commit cannot be read

``ApplicationError.type`` is the class name; permanent ones are ``non_retryable=True``; the details hold
the error's :class:`~crds.reasons.Reason` when it names one.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from crds.reasons import Reason
from crds.text import escape_controls


class DevopsError(Exception):
    """Base of every error this product raises on purpose."""

    retryable: bool = True

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The reason a run ending with this error names; None: the default of the workflow's phase.
        self.reason = reason


class TransientError(DevopsError):
    """Retry with backoff: the same call may succeed later."""

    retryable = True


class PermanentError(DevopsError):
    """Do not retry: the run ends with this reason."""

    retryable = False


class WaitError(DevopsError):
    """Not retried by the activity's policy: the workflow shows why it waits, then calls again later."""

    retryable = False


class DataPlaneUnavailableError(WaitError):
    """A project's data-plane cluster does not answer (connection refused, timeouts, 5xx)."""


class KubeTransientError(TransientError):
    """apiserver 5xx, 409 conflict, 429, timeouts, connection errors."""


class KubeConflictError(KubeTransientError):
    """409: a stale ``resourceVersion``, an object that already exists, or an apply conflict.

    Transient: re-reading the object and trying again resolves it.
    """


class JenkinsTransientError(TransientError):
    """Jenkins 5xx, "Jenkins is starting", timeouts, connection errors."""


class StoreTransientError(TransientError):
    """Object store 5xx, timeouts, connection errors."""


class NotifierTransientError(TransientError):
    """A notifier answered 5xx, 408 or 429 (SMTP: 4xx), timed out or could not be reached."""


class KubeNotFoundError(PermanentError):
    """A required Kubernetes object is missing (404)."""


class KubeInvalidError(PermanentError):
    """The apiserver rejected an object (422, 400)."""


class KubeForbiddenError(PermanentError):
    """401/403: RBAC does not allow the call."""


class JenkinsPermanentError(PermanentError):
    """401/403, a missing job we created, an invalid config."""


class StorePermanentError(PermanentError):
    """Object store 4xx: wrong keys, a denied permission, a bucket that cannot be made, a bad request."""


class ConfigError(PermanentError):
    """The pipeline file or the custom resource is invalid; the message is for the user."""


class NotifierPermanentError(PermanentError):
    """A notifier refused the message for good (HTTP 4xx, SMTP 5xx, a bad address)."""


class GitError(PermanentError):
    """The repository or the commit cannot be read."""


def to_application_error(err: DevopsError) -> ApplicationError:
    """Translate a classified error into what Temporal's retry policy understands.

    The message often quotes user input (names, git's stderr, a Jenkins answer): its control characters
    are escaped here, once, so the workflow, its history and the CR's status never carry them raw.
    """
    return ApplicationError(
        escape_controls(err.message),
        *([err.reason.value] if err.reason else []),
        type=type(err).__name__,
        non_retryable=not err.retryable,
    )
