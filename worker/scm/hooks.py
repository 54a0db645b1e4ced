"""A Pipeline's webhook, registered at its provider for it, and deleted with it.

A Pipeline is *linked* to a provider when it names a SourceCodeCredential, or when a SourceCodeRepository
of its namespace has its repository URL (the credential that sees it, an admin one first). A linked
Pipeline with webhook triggers gets one hook at the provider: its events from the triggers, the
receiver's public URL (``CUBEPAAS_WEBHOOK_URL``) and the Pipeline's secret; ``status.webhookId`` records
it and the ``Webhook`` condition says how it went. Pipelines that are not linked are left alone (their
hooks are configured by hand with ``devopsctl webhook``).

**Nothing is registered twice.** Before creating, the provider's hooks of the repository are listed and
one already pointing at this Pipeline's URL is adopted: a crash between creating a hook and recording
its id costs no duplicate. **Deleting the Pipeline deletes the hook**: the finalizer
``devops.cubepaas.io/webhook`` is added before the hook is created and removed once the provider
confirms the hook is gone, so a worker that was down at the time deletes it when it is back. A hook
that can never be deleted (the credential or its token is gone) releases the Pipeline, with a log line.

Provider calls happen only when something changed: what was applied is remembered per Pipeline uid (a
fingerprint of URL, events, secret, repository and credential); after a restart each hook is updated
once, since providers never show a hook's secret back.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from activities.errors import KubeNotFoundError
from activities.kube import Kube
from crds.pipeline import Pipeline, PipelineStatus
from crds.reasons import ConditionStatus, ScmConditionType, ScmReason
from crds.sourcecode import SourceCodeCredential, SourceCodeRepository
from worker.scm.driver import (
    HookEvent,
    HookSpec,
    ProviderError,
    ProviderRefused,
    is_current,
    repository_path,
)
from worker.scm.providers import Access, Drivers, SetupError, access
from worker.webhooks.secrets import ensure_webhook_secret

logger = logging.getLogger(__name__)

FINALIZER: Final = "devops.cubepaas.io/webhook"
REFUSED_RETRY: Final = 300.0
"""A hook the provider refused is asked for again after this long (or as soon as anything changes)."""
UNAVAILABLE_RETRY: Final = (5.0, 300.0)
"""Backoff (first, last) while the provider does not answer."""


def wanted_events(pipeline: Pipeline) -> frozenset[HookEvent]:
    t = pipeline.spec.triggers
    return frozenset(
        e
        for e, on in (
            (HookEvent.PUSH, t.webhook_push),
            (HookEvent.TAG, t.webhook_tag),
            (HookEvent.PULL_REQUEST, t.webhook_pull_request),
        )
        if on
    )


def same_repository(a: str, b: str) -> bool:
    """Two clone URLs of one repository (case of the host, ``.git`` and a trailing slash aside)."""

    def norm(url: str) -> str:
        url = url.strip().rstrip("/")
        url = url.removesuffix(".git")
        scheme, _, rest = url.partition("://")
        host, _, path = rest.partition("/")
        return f"{scheme.lower()}://{host.rsplit('@', 1)[-1].lower()}/{path}"

    return norm(a) == norm(b)


@dataclass(frozen=True)
class Target:
    access: Access
    repository: str
    """``owner/name`` at the provider."""


@dataclass
class _Backoff:
    until: float
    delay: float
    fingerprint: str


class HookKeeper:
    """Keeps the webhooks of Pipelines registered; called by the source-code reconciler each tick."""

    def __init__(
        self,
        kube: Kube,
        receiver_url: str,
        *,
        drivers: Drivers | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.drivers = drivers
        self.receiver_url = receiver_url.rstrip("/")
        self.clock = clock
        self.now = now
        self._applied: dict[str, str] = {}
        self._wait: dict[str, _Backoff] = {}

    # -- one Pipeline ---------------------------------------------------------------------------------

    def reconcile(self, pipeline: Pipeline, repositories: list[SourceCodeRepository]) -> str:
        """Bring one Pipeline's hook in line; returns what happened (for logs and counts)."""
        uid = pipeline.metadata.uid or pipeline.name
        if pipeline.metadata.deletion_timestamp is not None:
            return self._release(pipeline)
        status = pipeline.status or PipelineStatus()
        linked = bool(pipeline.spec.source_code_credential_name) or any(
            same_repository(r.spec.url, pipeline.spec.repository_url) for r in repositories
        )
        if not linked and not status.webhook_id:
            return "unlinked"
        events = wanted_events(pipeline)
        if not events:
            if status.webhook_id:
                return self._remove(pipeline, ScmReason.NO_WEBHOOK_TRIGGERS, "no webhook trigger is on")
            self._condition(
                pipeline, ConditionStatus.FALSE, ScmReason.NO_WEBHOOK_TRIGGERS, "no webhook trigger is on"
            )
            return "not-wanted"
        try:
            target = self._target(pipeline, repositories)
        except SetupError as err:
            self._condition(pipeline, ConditionStatus.FALSE, err.reason, f"webhooks are off: {err.message}")
            return "no-credential"
        if not self.receiver_url:
            self._condition(
                pipeline,
                ConditionStatus.FALSE,
                ScmReason.NO_CREDENTIAL,
                "webhooks are off: the worker has no CUBEPAAS_WEBHOOK_URL (the receiver's public URL)",
            )
            return "no-receiver"
        secret = ensure_webhook_secret(self.kube, pipeline)
        spec = HookSpec(
            url=f"{self.receiver_url}/hooks/{target.access.driver.provider.value}/{pipeline.namespace}/{pipeline.name}",
            secret=secret,
            events=events,
        )
        fingerprint = _fingerprint(spec, target)
        if self._applied.get(uid) == fingerprint and status.webhook_id:
            return "unchanged"
        wait = self._wait.get(uid)
        if wait is not None and wait.fingerprint == fingerprint and self.clock() < wait.until:
            return "waiting"
        try:
            hook_id = self._register(pipeline, target, spec)
        except ProviderRefused as err:
            self._wait[uid] = _Backoff(self.clock() + REFUSED_RETRY, REFUSED_RETRY, fingerprint)
            self._condition(
                pipeline,
                ConditionStatus.FALSE,
                ScmReason.HOOK_REFUSED,
                f"webhooks are off: {target.access.driver.provider.value} refused the hook on "
                f"{target.repository}: {err.message}",
            )
            return "refused"
        except ProviderError as err:
            self._backoff(uid, fingerprint)
            logger.warning(
                "webhook of %s/%s: %s; trying again", pipeline.namespace, pipeline.name, err.message
            )
            return "unavailable"
        self._applied[uid] = fingerprint
        self._wait.pop(uid, None)
        names = ", ".join(sorted(target.access.driver.events_for(events)))
        self._record(
            pipeline,
            hook_id,
            target,
            f"hook {hook_id} on {target.repository} delivers {names} to {spec.url}",
        )
        return "registered"

    def forget(self, uids: set[str]) -> None:
        """Drop what is remembered of Pipelines that no longer exist."""
        for uid in set(self._applied) - uids:
            self._applied.pop(uid, None)
        for uid in set(self._wait) - uids:
            self._wait.pop(uid, None)

    # -- steps ------------------------------------------------------------------------------------------

    def _target(self, pipeline: Pipeline, repositories: list[SourceCodeRepository]) -> Target:
        name = pipeline.spec.source_code_credential_name
        if not name:
            seen = sorted(
                (r for r in repositories if same_repository(r.spec.url, pipeline.spec.repository_url)),
                key=lambda r: (not r.spec.permissions.admin, r.name),
            )
            if not seen:
                raise SetupError(
                    ScmReason.NO_CREDENTIAL, f"no SourceCodeCredential sees {pipeline.spec.repository_url}"
                )
            name = seen[0].spec.source_code_credential_name
        credential = self.kube.find(SourceCodeCredential, pipeline.namespace, name)
        if credential is None:
            raise SetupError(ScmReason.NO_CREDENTIAL, f"SourceCodeCredential {name} not found")
        ready = credential.status.condition(ScmConditionType.READY) if credential.status else None
        if ready is None or not ready.is_true:
            why = f": {ready.message}" if ready is not None and ready.message else " yet"
            raise SetupError(ScmReason.NO_CREDENTIAL, f"SourceCodeCredential {name} is not verified{why}")
        acc = access(self.kube, credential, self.drivers)
        path = repository_path(acc.endpoint.web_url, pipeline.spec.repository_url)
        if path is None:
            raise SetupError(
                ScmReason.NO_CREDENTIAL,
                f"{pipeline.spec.repository_url} is not a repository of {acc.endpoint.web_url} "
                f"(the provider of SourceCodeCredential {name})",
            )
        return Target(acc, path)

    def _register(self, pipeline: Pipeline, target: Target, spec: HookSpec) -> str:
        """Create or update the hook; the finalizer first, so a hook never outlives its Pipeline."""
        acc, repo = target.access, target.repository
        status = pipeline.status or PipelineStatus()
        if status.webhook_id and (status.webhook_repository, status.webhook_credential) != (
            repo,
            acc.credential.name,
        ):
            self._delete_recorded(pipeline)  # the repository or the credential changed: the old hook goes
            status = PipelineStatus(webhook_id=None)
        hooks = acc.driver.hooks(acc.endpoint, acc.token, repo)
        self._add_finalizer(pipeline)
        mine = [h for h in hooks if h.id == status.webhook_id] or [h for h in hooks if h.url == spec.url]
        if not mine:
            created = acc.driver.create_hook(acc.endpoint, acc.token, repo, spec)
            logger.info(
                "registered webhook %s of %s/%s on %s", created.id, pipeline.namespace, pipeline.name, repo
            )
            return created.id
        hook = mine[0]
        for extra in mine[1:]:  # duplicates someone made by hand, or an old crash: one hook delivers once
            acc.driver.delete_hook(acc.endpoint, acc.token, repo, extra.id)
        # Something differs from what this process applied (or it applied nothing yet): the secret cannot
        # be compared, so the hook is updated even when its URL and events are current.
        updated = acc.driver.update_hook(acc.endpoint, acc.token, repo, hook.id, spec)
        if not is_current(acc.driver, updated, spec):
            logger.warning("webhook %s on %s: the provider kept other events than asked", updated.id, repo)
        return updated.id

    def _delete_recorded(self, pipeline: Pipeline) -> None:
        """Delete the hook ``status`` records (done also when it can never be deleted: logged);
        :class:`ProviderError` while the provider does not answer."""
        status = pipeline.status or PipelineStatus()
        if not status.webhook_id or not status.webhook_repository or not status.webhook_credential:
            return
        credential = self.kube.find(SourceCodeCredential, pipeline.namespace, status.webhook_credential)
        try:
            if credential is None:
                raise SetupError(
                    ScmReason.NO_CREDENTIAL, f"SourceCodeCredential {status.webhook_credential} is gone"
                )
            acc = access(self.kube, credential, self.drivers)
            acc.driver.delete_hook(acc.endpoint, acc.token, status.webhook_repository, status.webhook_id)
        except (SetupError, ProviderRefused) as err:
            message = err.message
            logger.warning(
                "webhook %s of %s/%s on %s cannot be deleted (%s): delete it at the provider by hand",
                status.webhook_id,
                pipeline.namespace,
                pipeline.name,
                status.webhook_repository,
                message,
            )
            return
        logger.info(
            "deleted webhook %s of %s/%s on %s",
            status.webhook_id,
            pipeline.namespace,
            pipeline.name,
            status.webhook_repository,
        )

    def _release(self, pipeline: Pipeline) -> str:
        if FINALIZER not in pipeline.metadata.finalizers:
            return "deleting"
        try:
            self._delete_recorded(pipeline)
        except ProviderError as err:
            logger.warning(
                "webhook of deleted pipeline %s/%s: %s; trying again",
                pipeline.namespace,
                pipeline.name,
                err.message,
            )
            return "unavailable"
        self._remove_finalizer(pipeline)
        return "released"

    def _remove(self, pipeline: Pipeline, reason: ScmReason, message: str) -> str:
        try:
            self._delete_recorded(pipeline)
        except ProviderError as err:
            logger.warning(
                "webhook of %s/%s: %s; trying again", pipeline.namespace, pipeline.name, err.message
            )
            return "unavailable"
        status = pipeline.status or PipelineStatus()
        status.set_condition(
            ScmConditionType.WEBHOOK, ConditionStatus.FALSE, reason.value, message, self.now()
        )
        self._patch_status(
            pipeline,
            {
                "webhookId": None,
                "webhookRepository": None,
                "webhookCredential": None,
                "conditions": _conditions(status),
            },
        )
        self._remove_finalizer(pipeline)
        self._applied.pop(pipeline.metadata.uid or pipeline.name, None)
        return "removed"

    # -- writes -----------------------------------------------------------------------------------------

    def _backoff(self, uid: str, fingerprint: str) -> None:
        first, last = UNAVAILABLE_RETRY
        previous = self._wait.get(uid)
        delay = (
            first
            if previous is None or previous.fingerprint != fingerprint
            else min(last, previous.delay * 2)
        )
        self._wait[uid] = _Backoff(self.clock() + delay, delay, fingerprint)

    def _condition(
        self, pipeline: Pipeline, status_: ConditionStatus, reason: ScmReason, message: str
    ) -> None:
        status = (pipeline.status or PipelineStatus()).model_copy(deep=True)
        if status.set_condition(ScmConditionType.WEBHOOK, status_, reason.value, message, self.now()):
            self._patch_status(pipeline, {"conditions": _conditions(status)})

    def _record(self, pipeline: Pipeline, hook_id: str, target: Target, message: str) -> None:
        status = (pipeline.status or PipelineStatus()).model_copy(deep=True)
        changed = status.set_condition(
            ScmConditionType.WEBHOOK, ConditionStatus.TRUE, ScmReason.REGISTERED.value, message, self.now()
        )
        fields = {
            "webhookId": hook_id,
            "webhookRepository": target.repository,
            "webhookCredential": target.access.credential.name,
        }
        if changed or (status.webhook_id, status.webhook_repository, status.webhook_credential) != tuple(
            fields.values()
        ):
            self._patch_status(pipeline, {**fields, "conditions": _conditions(status)})

    def _patch_status(self, pipeline: Pipeline, patch: dict[str, object]) -> None:
        try:
            written = self.kube.patch_status(Pipeline, pipeline.namespace, pipeline.name, patch)
        except KubeNotFoundError:
            return
        # The finalizer patches that may follow are compare-and-swap on this version.
        pipeline.metadata.resource_version = written.metadata.resource_version

    def _add_finalizer(self, pipeline: Pipeline) -> None:
        if FINALIZER in pipeline.metadata.finalizers:
            return
        finalizers = [*pipeline.metadata.finalizers, FINALIZER]
        written = self.kube.patch(
            Pipeline,
            pipeline.namespace,
            pipeline.name,
            {"metadata": {"finalizers": finalizers}},
            resource_version=pipeline.metadata.resource_version,
        )
        pipeline.metadata.finalizers = finalizers
        pipeline.metadata.resource_version = written.metadata.resource_version

    def _remove_finalizer(self, pipeline: Pipeline) -> None:
        if FINALIZER not in pipeline.metadata.finalizers:
            return
        rest = [f for f in pipeline.metadata.finalizers if f != FINALIZER]
        try:
            self.kube.patch(
                Pipeline,
                pipeline.namespace,
                pipeline.name,
                {"metadata": {"finalizers": rest}},
                resource_version=pipeline.metadata.resource_version,
            )
        except KubeNotFoundError:
            return


def _conditions(status: PipelineStatus) -> list[object]:
    return [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in status.conditions]


def _fingerprint(spec: HookSpec, target: Target) -> str:
    parts = [
        spec.url,
        ",".join(sorted(spec.events)),
        spec.secret,
        target.repository,
        target.access.credential.name,
        target.access.credential.metadata.uid or "",
        target.access.endpoint.api_url,
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


__all__ = ["FINALIZER", "HookKeeper", "Target", "same_repository", "wanted_events"]
