"""How a notification travels: SMTP, Slack and Teams incoming webhooks, CloudEvents over HTTP.

Each failure is classified once, here: a retry may help (:class:`NotifierTransientError`: HTTP 5xx, 408,
429, SMTP 4xx, timeouts, connection errors) or it will not (:class:`NotifierPermanentError`: other
HTTP 4xx, SMTP 5xx, a missing Secret). Error messages never contain a URL (Slack and Teams URLs are
credentials), a header value or a password.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import urllib3

from activities.errors import KubeNotFoundError, NotifierPermanentError, NotifierTransientError
from activities.kube import Kube
from activities.notify.message import CLOUDEVENT_CONTENT_TYPE, slack_payload, teams_payload
from crds.meta import SecretKeyReference, SecretReference
from crds.notifiers import Notifier, SmtpNotifier

DEFAULT_TIMEOUT = 15.0
USER_AGENT = "cubepaas-devops-notifier"


@dataclass(frozen=True)
class Content:
    """One run's notification, rendered once for every channel."""

    subject: str
    text: str
    ok: bool
    cloud_event: dict[str, Any]


class Channels:
    """Sends through a project's notifiers; reads their Secrets at each send (rotation is picked up)."""

    def __init__(self, kube: Kube, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.kube = kube
        self.timeout = timeout
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5.0, read=timeout))

    def send(
        self, notifier: Notifier, namespace: str, recipient: str, content: Content, message_id: str
    ) -> None:
        if notifier.smtp is not None:
            self._mail(notifier.smtp, namespace, recipient, content, message_id)
        elif notifier.slack is not None:
            url = self._secret_key(namespace, notifier.slack.url_secret_ref)
            self._post(url, slack_payload(content.text, recipient), {}, "slack webhook")
        elif notifier.msteams is not None:
            url = self._secret_key(namespace, notifier.msteams.url_secret_ref)
            payload = teams_payload(content.subject, content.text, recipient, content.ok)
            self._post(url, payload, {}, "msteams webhook")
        elif notifier.webhook is not None:
            hook = notifier.webhook
            headers = dict(hook.headers)
            if hook.headers_secret_ref is not None:
                headers.update(self._secret(namespace, hook.headers_secret_ref))
            headers["Content-Type"] = CLOUDEVENT_CONTENT_TYPE
            self._post(hook.url, content.cloud_event, headers, f"webhook {urlsplit(hook.url).netloc}")

    # -- secrets -------------------------------------------------------------------------------

    def _secret(self, namespace: str, ref: SecretReference) -> dict[str, str]:
        ns = ref.namespace or namespace
        try:
            return self.kube.read_secret(ns, ref.name)
        except KubeNotFoundError as err:
            raise NotifierPermanentError(f"Secret {ns}/{ref.name} of the notifier not found") from err

    def _secret_key(self, namespace: str, ref: SecretKeyReference) -> str:
        data = self._secret(namespace, SecretReference(name=ref.name))
        if not data.get(ref.key):
            raise NotifierPermanentError(f"Secret {namespace}/{ref.name} has no key {ref.key!r}")
        return data[ref.key]

    # -- HTTP ----------------------------------------------------------------------------------

    def _post(self, url: str, payload: dict[str, Any], headers: dict[str, str], what: str) -> None:
        body = json.dumps(payload).encode()
        all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
        try:
            resp = self.http.request("POST", url, body=body, headers=all_headers, redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            # urllib3's messages carry the URL: only the class name leaves this function.
            raise NotifierTransientError(f"{what}: {type(err).__name__}") from None
        if 200 <= resp.status <= 299:
            return
        if resp.status in (408, 429) or resp.status >= 500:
            raise NotifierTransientError(f"{what}: HTTP {resp.status}")
        raise NotifierPermanentError(f"{what}: HTTP {resp.status}")

    # -- SMTP ----------------------------------------------------------------------------------

    def _mail(self, cfg: SmtpNotifier, namespace: str, to: str, content: Content, message_id: str) -> None:
        user = password = ""
        if cfg.credentials_secret_ref is not None:
            data = self._secret(namespace, cfg.credentials_secret_ref)
            user, password = data.get("username", ""), data.get("password", "")
        msg = EmailMessage()
        msg["From"] = cfg.from_
        msg["To"] = to
        msg["Subject"] = content.subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = f"<{message_id}@cubepaas.devops>"
        msg.set_content(content.text)
        what = f"smtp {cfg.host}:{cfg.port}"
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if cfg.start_tls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if user:
                    smtp.login(user, password)
                smtp.send_message(msg)
        except smtplib.SMTPNotSupportedError as err:
            raise NotifierPermanentError(f"{what}: {err}") from None
        except smtplib.SMTPRecipientsRefused as err:
            codes = [code for code, _ in err.recipients.values()]
            cls = NotifierTransientError if all(400 <= c < 500 for c in codes) else NotifierPermanentError
            raise cls(f"{what}: recipient refused ({', '.join(map(str, codes))})") from None
        except smtplib.SMTPResponseException as err:
            cls = NotifierTransientError if 400 <= err.smtp_code < 500 else NotifierPermanentError
            said = (
                err.smtp_error.decode("utf-8", "replace")
                if isinstance(err.smtp_error, bytes)
                else err.smtp_error
            )
            raise cls(f"{what}: {err.smtp_code} {said[:200]}") from None
        except (smtplib.SMTPException, OSError) as err:
            raise NotifierTransientError(f"{what}: {type(err).__name__}: {err}") from None


__all__ = ["Channels", "Content"]
