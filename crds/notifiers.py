"""Notifiers of a project (``PipelineSetting.spec.notifiers[]``): where a pipeline file's
``notification.recipients[].notifier`` sends.

Every credential stays in a Secret the notifier references (the SMTP password, the Slack and Teams
incoming-webhook URLs, secret webhook headers): a PipelineSetting is copied into each run's workflow
history, so nothing secret may be written in it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from crds.meta import KubeModel, SecretKeyReference, SecretReference
from crds.pipeline_file import Duration

DEFAULT_NOTIFICATION_RETRY_TIMEOUT: Final = "10m"


class NotifierKind(StrEnum):
    """The kinds of notifier; each is one field of :class:`Notifier`."""

    SMTP = "smtp"
    SLACK = "slack"
    MSTEAMS = "msteams"
    WEBHOOK = "webhook"


NOTIFIER_KINDS: Final = tuple(k.value for k in NotifierKind)
EXACTLY_ONE_NOTIFIER_KIND: Final = "exactly one of " + ", ".join(NOTIFIER_KINDS) + " is required"


class SmtpNotifier(KubeModel):
    """E-mail through an SMTP server; a recipient is an e-mail address."""

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=587, ge=1, le=65535)
    start_tls: bool = Field(default=True, alias="startTLS")
    """Upgrade the connection with STARTTLS before authenticating (the server must offer it)."""
    from_: str = Field(alias="from", min_length=3, max_length=320)
    """Sender address, e.g. ci@example.com."""
    credentials_secret_ref: SecretReference | None = None
    """Secret with keys username and password; empty = no authentication."""


class SlackNotifier(KubeModel):
    """A Slack incoming webhook; a recipient is a channel (sent as ``channel``, used by legacy webhooks)."""

    url_secret_ref: SecretKeyReference
    """Secret key holding the webhook URL (the URL is the credential)."""


class MsTeamsNotifier(KubeModel):
    """A Microsoft Teams incoming webhook; a recipient is named in the card's title."""

    url_secret_ref: SecretKeyReference
    """Secret key holding the webhook URL (the URL is the credential)."""


class WebhookNotifier(KubeModel):
    """Any HTTP endpoint: the run is POSTed as a CloudEvent in structured mode (JSON)."""

    url: str = Field(min_length=1, max_length=2048, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict, max_length=32)
    """Extra request headers (not secret: they are stored in each run's history)."""
    headers_secret_ref: SecretReference | None = None
    """Secret whose every key/value is sent as a header (e.g. Authorization)."""


class Notifier(KubeModel):
    """A named notifier: ``name`` and exactly one of smtp, slack, msteams, webhook."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": " + ".join(f"(has(self.{k}) ? 1 : 0)" for k in NOTIFIER_KINDS) + " == 1",
                    "message": EXACTLY_ONE_NOTIFIER_KIND,
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=63)
    smtp: SmtpNotifier | None = None
    slack: SlackNotifier | None = None
    msteams: MsTeamsNotifier | None = None
    webhook: WebhookNotifier | None = None

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Notifier:
        present = [k for k in NOTIFIER_KINDS if getattr(self, k) is not None]
        if len(present) != 1:
            message = EXACTLY_ONE_NOTIFIER_KIND + (", got " + " and ".join(present) if present else "")
            raise PydanticCustomError("notifier_kind", message)
        return self

    @property
    def kind(self) -> NotifierKind:
        return next(NotifierKind(k) for k in NOTIFIER_KINDS if getattr(self, k) is not None)


class NotificationSettings(KubeModel):
    """How notifications are delivered."""

    retry_timeout: Duration = Duration(DEFAULT_NOTIFICATION_RETRY_TIMEOUT)
    """How long a notifier that fails is retried (with backoff) before it is recorded as failed."""


__all__ = [
    "DEFAULT_NOTIFICATION_RETRY_TIMEOUT",
    "EXACTLY_ONE_NOTIFIER_KIND",
    "MsTeamsNotifier",
    "NotificationSettings",
    "Notifier",
    "NotifierKind",
    "SlackNotifier",
    "SmtpNotifier",
    "WebhookNotifier",
]
