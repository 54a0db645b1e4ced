"""The activity of a credential's Schedule: verify the token at its provider, mirror its repositories.

One activity, not two: a sync is one provider conversation, and a verification that fails ends it.
Writes happen only when something changed (the repositories are compared with the live objects, the
status with the one read), except ``lastVerified``, which is refreshed at most every
:data:`VERIFIED_REFRESH`: a credential nobody changes costs reads only between refreshes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from temporalio import activity

from activities.errors import DevopsError, KubeNotFoundError, to_application_error
from activities.kube import Kube
from crds.messages import Activity, ScmSyncInput, ScmSyncResult
from crds.meta import API_VERSION
from crds.reasons import ConditionStatus, ScmConditionType, ScmReason
from crds.sourcecode import (
    ProviderAccount,
    SourceCodeCredential,
    SourceCodeCredentialStatus,
    SourceCodeRepository,
)
from worker.scm.driver import (
    ProviderError,
    ProviderRateLimited,
    ProviderUnauthorized,
    ProviderUnavailable,
    Repository,
)
from worker.scm.providers import Access, Drivers, SetupError, access
from worker.scm.repositories import CREDENTIAL_LABEL, manifest, plan

logger = logging.getLogger(__name__)

VERIFIED_REFRESH: Final = timedelta(minutes=10)
FIELD_MANAGER: Final = "cubepaas-scm"


class SourceCodeActivities:
    def __init__(self, kube: Kube, drivers: Drivers | None = None, clock: Any = None) -> None:
        self.kube = kube
        self.drivers = drivers
        self.clock = clock or (lambda: datetime.now(UTC))

    @activity.defn(name=Activity.SCM_SYNC)
    def sync(self, inp: ScmSyncInput) -> ScmSyncResult:
        try:
            return self._sync(inp)
        except KubeNotFoundError:
            return ScmSyncResult(message="the credential no longer exists")
        except DevopsError as err:
            raise to_application_error(err) from err

    def _sync(self, inp: ScmSyncInput) -> ScmSyncResult:
        credential = self.kube.find(SourceCodeCredential, inp.namespace, inp.credential)
        if credential is None or credential.metadata.deletion_timestamp is not None:
            return ScmSyncResult(message="the credential no longer exists")
        status = (credential.status or SourceCodeCredentialStatus()).model_copy(deep=True)
        status.observed_generation = credential.metadata.generation
        status.observed_secret_version = self._secret_version(credential)
        try:
            acc = access(self.kube, credential, self.drivers)
        except SetupError as err:
            ready = (
                ConditionStatus.UNKNOWN if err.reason is ScmReason.NOT_VERIFIABLE else ConditionStatus.FALSE
            )
            self._write(credential, status, ready, err.reason, err.message)
            return ScmSyncResult(ready=ready.value, reason=err.reason.value, message=err.message)
        try:
            account = acc.driver.verify(acc.endpoint, acc.token)
        except ProviderUnauthorized as err:
            return self._refused(credential, status, ScmReason.TOKEN_REFUSED, err.message)
        except ProviderError as err:
            return self._unavailable(credential, status, err)
        if account.login.lower() != credential.spec.login_name.lower():
            message = (
                f"the token belongs to {account.login}, "
                f"not to the credential's loginName {credential.spec.login_name}"
            )
            return self._refused(credential, status, ScmReason.WRONG_ACCOUNT, message)
        status.account = ProviderAccount(
            login=account.login,
            display_name=account.display_name or None,
            avatar_url=account.avatar_url or None,
            html_url=account.html_url or None,
        )
        result = self._mirror(credential, acc)
        now = self.clock()
        if result.complete:
            status.repositories = result.repositories
            if result.created or result.deleted or result.updated or _stale(status.last_synced, now):
                status.last_synced = now
        message = f"{acc.driver.provider.value} account {account.login} at {acc.endpoint.web_url}"
        if not result.complete:
            message += f"; {result.message}"
        self._write(credential, status, ConditionStatus.TRUE, ScmReason.VERIFIED, message, verified=True)
        result.ready, result.reason = ConditionStatus.TRUE.value, ScmReason.VERIFIED.value
        result.message = message
        return result

    def _secret_version(self, credential: SourceCodeCredential) -> str | None:
        """The token Secret's resourceVersion, recorded even when the sync fails: the reconciler
        triggers a sync when it changes, not again and again for a verdict that stands."""
        ref = credential.spec.token_secret_ref
        secret = self.kube.find_object("v1", "Secret", ref.name, credential.namespace)
        version = (secret or {}).get("metadata", {}).get("resourceVersion") if secret else None
        return str(version) if version else None

    def _mirror(self, credential: SourceCodeCredential, acc: Access) -> ScmSyncResult:
        """Create, update and delete SourceCodeRepository objects to match the provider's listing."""
        seen: list[Repository] = []
        complete, note = True, ""
        try:
            for repo in acc.driver.repositories(acc.endpoint, acc.token):
                seen.append(repo)
                if len(seen) % 50 == 0:
                    activity.heartbeat(len(seen))
        except ProviderRateLimited as err:
            complete, note = False, f"listing cut short by a rate limit ({err.message}); kept the rest"
        except ProviderError as err:
            complete, note = False, f"listing cut short ({err.message}); kept the rest"
        live = self.kube.list_objects(
            API_VERSION,
            "SourceCodeRepository",
            credential.namespace,
            label_selector=f"{CREDENTIAL_LABEL}={credential.name}",
        )
        todo = plan((manifest(credential, r) for r in seen), live, complete=complete)
        for m in todo.create:
            self.kube.apply(m, field_manager=FIELD_MANAGER)
        for m, _ in todo.update:
            self.kube.apply(m, field_manager=FIELD_MANAGER)
        for gone in todo.delete:
            meta = gone.get("metadata") or {}
            self.kube.delete(
                SourceCodeRepository, credential.namespace, str(meta.get("name")), uid=meta.get("uid")
            )
        if todo.create or todo.update or todo.delete:
            logger.info(
                "credential %s/%s: %d repositories (%d new, %d changed, %d gone)",
                credential.namespace,
                credential.name,
                len(seen),
                len(todo.create),
                len(todo.update),
                len(todo.delete),
            )
        return ScmSyncResult(
            repositories=len(seen),
            created=len(todo.create),
            updated=len(todo.update),
            deleted=len(todo.delete),
            complete=complete,
            message=note,
        )

    def _refused(
        self,
        credential: SourceCodeCredential,
        status: SourceCodeCredentialStatus,
        reason: ScmReason,
        message: str,
    ) -> ScmSyncResult:
        logger.info("credential %s/%s refused: %s", credential.namespace, credential.name, message)
        self._write(credential, status, ConditionStatus.FALSE, reason, message)
        return ScmSyncResult(ready=ConditionStatus.FALSE.value, reason=reason.value, message=message)

    def _unavailable(
        self, credential: SourceCodeCredential, status: SourceCodeCredentialStatus, err: ProviderError
    ) -> ScmSyncResult:
        """A provider that does not answer changes no verdict: an unverified credential stays Unknown."""
        current = status.condition(ScmConditionType.READY)
        message = f"the provider did not answer: {err.message}"
        if current is None or current.status is ConditionStatus.UNKNOWN:
            self._write(credential, status, ConditionStatus.UNKNOWN, ScmReason.PROVIDER_UNAVAILABLE, message)
        if isinstance(err, ProviderUnavailable) and not isinstance(err, ProviderRateLimited):
            logger.warning("credential %s/%s: %s", credential.namespace, credential.name, message)
        ready = current.status.value if current is not None else ConditionStatus.UNKNOWN.value
        return ScmSyncResult(ready=ready, reason=ScmReason.PROVIDER_UNAVAILABLE.value, message=message)

    def _write(
        self,
        credential: SourceCodeCredential,
        status: SourceCodeCredentialStatus,
        ready: ConditionStatus,
        reason: ScmReason,
        message: str,
        *,
        verified: bool = False,
    ) -> None:
        now = self.clock()
        before = (credential.status or SourceCodeCredentialStatus()).model_dump(mode="json", by_alias=True)
        was_ready = status.is_condition_true(ScmConditionType.READY)
        status.set_condition(ScmConditionType.READY, ready, reason.value, message, now)
        if verified and (not was_ready or _stale(status.last_verified, now)):
            status.last_verified = now
        after = status.model_dump(mode="json", by_alias=True)
        if after == before:
            return
        self.kube.patch_status(
            SourceCodeCredential,
            credential.namespace,
            credential.name,
            status.model_dump(mode="json", by_alias=True, exclude_none=True),
        )


def _stale(when: datetime | None, now: datetime) -> bool:
    return when is None or now - when >= VERIFIED_REFRESH


__all__ = ["FIELD_MANAGER", "VERIFIED_REFRESH", "SourceCodeActivities"]
