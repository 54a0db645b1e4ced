"""Credentials verified, repositories mirrored and webhooks kept, on the real apiserver with an in-memory
provider (tests/scm_forge.py) that can refuse, rate-limit and go down. The same code against a real
Gitea is tests/e2e/test_gitea_forge.py."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from scm_forge import FakeForge

from activities.errors import ConfigError
from activities.execution import git_credentials
from activities.kube import Kube, encode_secret_data
from crds.messages import ScmSyncInput
from crds.meta import ObjectMeta, SecretKeyReference
from crds.pipeline import Pipeline, PipelineSpec
from crds.reasons import Reason, ScmConditionType, ScmReason, SourceCodeProviderType
from crds.sourcecode import (
    SourceCodeCredential,
    SourceCodeCredentialSpec,
    SourceCodeProviderConfig,
    SourceCodeProviderConfigSpec,
    SourceCodeRepository,
)
from worker.scm.activities import SourceCodeActivities
from worker.scm.driver import Permissions, Repository
from worker.scm.hooks import FINALIZER, HookKeeper
from worker.scm.repositories import CREDENTIAL_LABEL
from worker.webhooks.secrets import read_webhook_secret

pytestmark = pytest.mark.integration

WEB = "http://forge.test"
RECEIVER = "http://receiver.test"
# A task queue no worker serves: a worker running in the same session leaves these objects alone.
PINNED = {"devops.cubepaas.io/task-queue": "scm-tests-no-worker"}


def repo(name: str, *, admin: bool = True) -> Repository:
    return Repository(
        full_name=f"alice/{name}",
        clone_url=f"{WEB}/alice/{name}.git",
        html_url=f"{WEB}/alice/{name}",
        default_branch="main",
        permissions=Permissions(pull=True, push=True, admin=admin),
    )


@pytest.fixture
def forge() -> FakeForge:
    return FakeForge(
        tokens={"t0k3n": "alice"}, repos={"alice": [repo("app"), repo("lib")]}, admin_of={"alice/app"}
    )


@pytest.fixture
def setup(kube: Kube, namespace: str) -> Callable[..., SourceCodeCredential]:
    def make(login: str = "alice", token: str = "t0k3n") -> SourceCodeCredential:
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "alice-token", "namespace": namespace},
                "data": encode_secret_data({"token": token}),
            }
        )
        kube.create(
            SourceCodeProviderConfig(
                metadata=ObjectMeta(name="forge", namespace=namespace),
                spec=SourceCodeProviderConfigSpec(type=SourceCodeProviderType.GITEA, url=WEB),
            )
        )
        return kube.create(
            SourceCodeCredential(
                metadata=ObjectMeta(name="alice", namespace=namespace, annotations=PINNED),
                spec=SourceCodeCredentialSpec(
                    provider_type=SourceCodeProviderType.GITEA,
                    provider_config_name="forge",
                    login_name=login,
                    token_secret_ref=SecretKeyReference(name="alice-token", key="token"),
                ),
            )
        )

    return make


def ready(kube: Kube, namespace: str) -> tuple[str, str, str]:
    cred = kube.get(SourceCodeCredential, namespace, "alice")
    cond = cred.status.condition(ScmConditionType.READY) if cred.status else None
    assert cond is not None
    return cond.status.value, cond.reason or "", cond.message or ""


def mirrored(kube: Kube, namespace: str) -> dict[str, SourceCodeRepository]:
    found = kube.list_resources(SourceCodeRepository, namespace, label_selector=f"{CREDENTIAL_LABEL}=alice")
    return {r.spec.full_name: r for r in found}


def test_a_verified_credential_mirrors_its_repositories_and_a_second_sync_writes_nothing(
    kube: Kube, namespace: str, forge: FakeForge, setup: Callable[..., SourceCodeCredential]
) -> None:
    cred = setup()
    sync = SourceCodeActivities(kube, {SourceCodeProviderType.GITEA: forge})
    result = sync.sync(ScmSyncInput(namespace=namespace, credential="alice"))
    assert (result.ready, result.created, result.complete) == ("True", 2, True)
    assert ready(kube, namespace)[:2] == ("True", ScmReason.VERIFIED.value)
    status = kube.get(SourceCodeCredential, namespace, "alice").status
    assert status is not None and status.repositories == 2 and status.last_verified is not None
    assert status.account is not None and status.account.login == "alice"
    repos = mirrored(kube, namespace)
    assert set(repos) == {"alice/app", "alice/lib"}
    app = repos["alice/app"]
    assert app.spec.url == f"{WEB}/alice/app.git" and app.spec.default_branch == "main"
    assert app.spec.permissions.admin and app.spec.source_code_credential_name == "alice"
    assert [o.uid for o in app.metadata.owner_references] == [cred.metadata.uid]

    before = kube.total_writes
    again = sync.sync(ScmSyncInput(namespace=namespace, credential="alice"))
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)
    assert kube.total_writes == before, "an unchanged provider costs no write"

    forge.repos["alice"] = [repo("app"), repo("new")]
    changed = sync.sync(ScmSyncInput(namespace=namespace, credential="alice"))
    assert (changed.created, changed.deleted) == (1, 1)
    assert set(mirrored(kube, namespace)) == {"alice/app", "alice/new"}


def test_a_listing_cut_short_by_a_rate_limit_deletes_no_repository(
    kube: Kube, namespace: str, forge: FakeForge, setup: Callable[..., SourceCodeCredential]
) -> None:
    setup()
    sync = SourceCodeActivities(kube, {SourceCodeProviderType.GITEA: forge})
    sync.sync(ScmSyncInput(namespace=namespace, credential="alice"))
    forge.rate_limited_after = 1
    result = sync.sync(ScmSyncInput(namespace=namespace, credential="alice"))
    assert not result.complete and result.deleted == 0 and "rate limit" in result.message
    assert set(mirrored(kube, namespace)) == {"alice/app", "alice/lib"}
    assert ready(kube, namespace)[0] == "True"


def test_a_revoked_token_turns_ready_false_with_the_providers_words_and_runs_fail_with_them(
    kube: Kube, namespace: str, forge: FakeForge, setup: Callable[..., SourceCodeCredential]
) -> None:
    setup()
    sync = SourceCodeActivities(kube, {SourceCodeProviderType.GITEA: forge})
    sync.sync(ScmSyncInput(namespace=namespace, credential="alice"))
    assert git_credentials(kube, namespace, "alice") == ("alice", "t0k3n")
    forge.tokens.clear()
    result = sync.sync(ScmSyncInput(namespace=namespace, credential="alice"))
    status, reason, message = ready(kube, namespace)
    assert (result.ready, status, reason) == ("False", "False", ScmReason.TOKEN_REFUSED.value)
    assert "token is invalid" in message
    with pytest.raises(ConfigError, match=r"refused by its provider: .*token is invalid") as err:
        git_credentials(kube, namespace, "alice")
    assert err.value.reason is Reason.CREDENTIAL_REFUSED
    assert set(mirrored(kube, namespace)) == {"alice/app", "alice/lib"}, "a refusal deletes no mirror"


def test_a_token_of_another_account_is_refused_and_a_silent_provider_changes_no_verdict(
    kube: Kube, namespace: str, forge: FakeForge, setup: Callable[..., SourceCodeCredential]
) -> None:
    setup(login="bob")
    sync = SourceCodeActivities(kube, {SourceCodeProviderType.GITEA: forge})
    sync.sync(ScmSyncInput(namespace=namespace, credential="alice"))
    status, reason, message = ready(kube, namespace)
    assert (status, reason) == ("False", ScmReason.WRONG_ACCOUNT.value) and "belongs to alice" in message
    forge.down = True
    sync.sync(ScmSyncInput(namespace=namespace, credential="alice"))
    assert ready(kube, namespace)[:2] == ("False", ScmReason.WRONG_ACCOUNT.value)


def test_a_credential_without_its_secret_or_provider_says_which_is_missing(
    kube: Kube, namespace: str, forge: FakeForge, setup: Callable[..., SourceCodeCredential]
) -> None:
    setup()
    kube.delete_object("v1", "Secret", "alice-token", namespace)
    sync = SourceCodeActivities(kube, {SourceCodeProviderType.GITEA: forge})
    sync.sync(ScmSyncInput(namespace=namespace, credential="alice"))
    status, reason, message = ready(kube, namespace)
    assert (status, reason) == ("False", ScmReason.TOKEN_SECRET_INVALID.value) and "alice-token" in message
    kube.delete(SourceCodeProviderConfig, namespace, "forge")
    sync.sync(ScmSyncInput(namespace=namespace, credential="alice"))
    assert ready(kube, namespace)[1] == ScmReason.PROVIDER_CONFIG_INVALID.value


def _pipeline(kube: Kube, namespace: str, *, credential: str | None = "alice", name: str = "app") -> Pipeline:
    return kube.create(
        Pipeline(
            metadata=ObjectMeta(name=name, namespace=namespace, annotations=PINNED),
            spec=PipelineSpec(
                repository_url=f"{WEB}/alice/{name}.git", source_code_credential_name=credential
            ),
        )
    )


def _webhook(kube: Kube, namespace: str, name: str = "app") -> tuple[str, str, str]:
    p = kube.get(Pipeline, namespace, name)
    cond = p.status.condition(ScmConditionType.WEBHOOK) if p.status else None
    assert cond is not None
    return cond.status.value, cond.reason or "", cond.message or ""


def test_a_linked_pipeline_gets_exactly_one_hook_kept_across_restarts_and_removed_with_the_pipeline(
    kube: Kube, namespace: str, forge: FakeForge, setup: Callable[..., SourceCodeCredential]
) -> None:
    setup()
    drivers = {SourceCodeProviderType.GITEA: forge}
    SourceCodeActivities(kube, drivers).sync(ScmSyncInput(namespace=namespace, credential="alice"))
    _pipeline(kube, namespace)
    keeper = HookKeeper(kube, RECEIVER, drivers=drivers)
    assert keeper.reconcile(kube.get(Pipeline, namespace, "app"), []) == "registered"
    hooks = forge.hooks_of("alice/app")
    assert len(hooks) == 1
    ((hook_id, (spec, active)),) = hooks.items()
    assert spec.url == f"{RECEIVER}/hooks/gitea/{namespace}/app" and active
    assert spec.secret == read_webhook_secret(kube, namespace, "app").decode()
    pipeline = kube.get(Pipeline, namespace, "app")
    assert pipeline.status is not None and pipeline.status.webhook_id == hook_id
    assert FINALIZER in pipeline.metadata.finalizers
    assert _webhook(kube, namespace)[:2] == ("True", ScmReason.REGISTERED.value)

    calls = len(forge.calls)
    assert keeper.reconcile(kube.get(Pipeline, namespace, "app"), []) == "unchanged"
    assert len(forge.calls) == calls, "an unchanged pipeline costs no provider call"

    restarted = HookKeeper(kube, RECEIVER, drivers=drivers)
    assert restarted.reconcile(kube.get(Pipeline, namespace, "app"), []) == "registered"
    assert list(forge.hooks_of("alice/app")) == [hook_id], "a restart updates the hook, adds none"

    kube.patch(Pipeline, namespace, "app", {"spec": {"triggers": {"webhookPullRequest": False}}})
    restarted.reconcile(kube.get(Pipeline, namespace, "app"), [])
    assert forge.events_for(forge.hooks_of("alice/app")[hook_id][0].events) == {"push"}

    kube.delete(Pipeline, namespace, "app")
    deleting = kube.get(Pipeline, namespace, "app")
    assert deleting.metadata.deletion_timestamp is not None, "the finalizer holds the Pipeline"
    forge.down = True
    assert restarted.reconcile(deleting, []) == "unavailable"
    assert kube.find(Pipeline, namespace, "app") is not None
    forge.down = False
    assert restarted.reconcile(kube.get(Pipeline, namespace, "app"), []) == "released"
    assert forge.hooks_of("alice/app") == {}
    deadline = time.monotonic() + 10
    while kube.find(Pipeline, namespace, "app") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kube.find(Pipeline, namespace, "app") is None


def test_a_hook_left_by_a_crash_before_its_id_was_recorded_is_adopted_not_duplicated(
    kube: Kube, namespace: str, forge: FakeForge, setup: Callable[..., SourceCodeCredential]
) -> None:
    setup()
    drivers = {SourceCodeProviderType.GITEA: forge}
    SourceCodeActivities(kube, drivers).sync(ScmSyncInput(namespace=namespace, credential="alice"))
    _pipeline(kube, namespace)
    from worker.scm.driver import HookEvent, HookSpec

    left = forge.create_hook(
        None,  # type: ignore[arg-type]  # the fake ignores the endpoint
        "t0k3n",
        "alice/app",
        HookSpec(
            url=f"{RECEIVER}/hooks/gitea/{namespace}/app", secret="old", events=frozenset({HookEvent.PUSH})
        ),
    )
    HookKeeper(kube, RECEIVER, drivers=drivers).reconcile(kube.get(Pipeline, namespace, "app"), [])
    assert list(forge.hooks_of("alice/app")) == [left.id]
    spec = forge.hooks_of("alice/app")[left.id][0]
    assert spec.secret == read_webhook_secret(kube, namespace, "app").decode(), (
        "the adopted hook gets the secret"
    )


def test_a_refused_hook_leaves_the_pipeline_runnable_with_a_condition_and_deletable(
    kube: Kube, namespace: str, forge: FakeForge, setup: Callable[..., SourceCodeCredential]
) -> None:
    setup()
    drivers = {SourceCodeProviderType.GITEA: forge}
    SourceCodeActivities(kube, drivers).sync(ScmSyncInput(namespace=namespace, credential="alice"))
    _pipeline(kube, namespace, name="lib")  # alice may push to lib, not administer it
    keeper = HookKeeper(kube, RECEIVER, drivers=drivers)
    assert keeper.reconcile(kube.get(Pipeline, namespace, "lib"), []) == "refused"
    status, reason, message = _webhook(kube, namespace, "lib")
    assert (status, reason) == ("False", ScmReason.HOOK_REFUSED.value)
    assert "must be an admin of alice/lib" in message
    assert FINALIZER not in kube.get(Pipeline, namespace, "lib").metadata.finalizers
    calls = len(forge.calls)
    assert keeper.reconcile(kube.get(Pipeline, namespace, "lib"), []) == "waiting"
    assert len(forge.calls) == calls, "a refusal is not asked again at every tick"
    kube.delete(Pipeline, namespace, "lib")
    assert kube.find(Pipeline, namespace, "lib") is None


def test_a_pipeline_is_linked_through_the_mirrored_repository_when_it_names_no_credential(
    kube: Kube, namespace: str, forge: FakeForge, setup: Callable[..., SourceCodeCredential]
) -> None:
    setup()
    drivers = {SourceCodeProviderType.GITEA: forge}
    SourceCodeActivities(kube, drivers).sync(ScmSyncInput(namespace=namespace, credential="alice"))
    _pipeline(kube, namespace, credential=None)
    keeper = HookKeeper(kube, RECEIVER, drivers=drivers)
    repos = kube.list_resources(SourceCodeRepository, namespace)
    assert keeper.reconcile(kube.get(Pipeline, namespace, "app"), repos) == "registered"
    assert kube.get(Pipeline, namespace, "app").status.webhook_credential == "alice"  # type: ignore[union-attr]
    other = kube.create(
        Pipeline(
            metadata=ObjectMeta(name="elsewhere", namespace=namespace, annotations=PINNED),
            spec=PipelineSpec(repository_url="https://example.org/x/y.git"),
        )
    )
    before = kube.total_writes
    assert keeper.reconcile(other, repos) == "unlinked"
    assert kube.total_writes == before, "a pipeline no provider knows is left alone"
