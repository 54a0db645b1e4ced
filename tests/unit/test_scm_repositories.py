"""The SourceCodeRepository objects a listing asks for, and what a sync writes (pure functions)."""

from __future__ import annotations

import re

from crds.meta import ObjectMeta, SecretKeyReference
from crds.reasons import SourceCodeProviderType
from crds.sourcecode import SourceCodeCredential, SourceCodeCredentialSpec
from worker.scm.driver import Permissions, Repository
from worker.scm.repositories import CREDENTIAL_LABEL, NAME_LIMIT, manifest, object_name, plan

DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def credential() -> SourceCodeCredential:
    return SourceCodeCredential(
        metadata=ObjectMeta(name="alice", namespace="p1", uid="u-1"),
        spec=SourceCodeCredentialSpec(
            provider_type=SourceCodeProviderType.GITEA,
            login_name="alice",
            user_name="alice@platform",
            token_secret_ref=SecretKeyReference(name="t", key="token"),
        ),
    )


def repo(full_name: str, **kw: object) -> Repository:
    return Repository(full_name=full_name, clone_url=f"https://forge/{full_name}.git", **kw)  # type: ignore[arg-type]


def test_object_names_are_dns_labels_that_keep_colliding_slugs_apart() -> None:
    names = {object_name("alice", n) for n in ("Org/My_Repo", "org/my-repo", "org/my.repo")}
    assert len(names) == 3
    long = object_name("alice", "group/" + "x" * 400)
    assert all(DNS.match(n) for n in [*names, long]) and len(long) <= NAME_LIMIT
    assert object_name("alice", "org/app") == object_name("alice", "org/app")


def test_the_manifest_mirrors_the_repository_and_is_owned_by_the_credential() -> None:
    m = manifest(
        credential(), repo("org/app", default_branch="dev", permissions=Permissions(push=True, admin=True))
    )
    assert m["metadata"]["labels"] == {CREDENTIAL_LABEL: "alice"}
    assert m["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert m["spec"]["fullName"] == "org/app" and m["spec"]["defaultBranch"] == "dev"
    assert m["spec"]["permissions"] == {"pull": True, "push": True, "admin": True}
    assert m["spec"]["userName"] == "alice@platform"
    assert "language" not in m["spec"], "a field the provider did not give is left out"


def test_a_plan_creates_updates_and_deletes_only_what_differs() -> None:
    cred = credential()
    app, lib = manifest(cred, repo("org/app")), manifest(cred, repo("org/lib"))
    live_app = {"metadata": {**app["metadata"], "uid": "a"}, "spec": dict(app["spec"])}
    live_old = {
        "metadata": {"name": "alice-org-old-1", "uid": "o", "labels": {CREDENTIAL_LABEL: "alice"}},
        "spec": {},
    }
    changed = manifest(cred, repo("org/app", default_branch="trunk"))

    same = plan([app, lib], [live_app, live_old], complete=True)
    assert [m["spec"]["fullName"] for m in same.create] == ["org/lib"]
    assert same.update == [] and same.unchanged == 1
    assert [o["metadata"]["name"] for o in same.delete] == ["alice-org-old-1"]

    moved = plan([changed], [live_app], complete=True)
    assert [d["spec"]["defaultBranch"] for d, _ in moved.update] == ["trunk"]


def test_a_listing_cut_short_deletes_nothing() -> None:
    cred = credential()
    live = [{"metadata": {"name": "alice-gone", "labels": {CREDENTIAL_LABEL: "alice"}}, "spec": {}}]
    partial = plan([manifest(cred, repo("org/app"))], live, complete=False)
    assert partial.delete == [] and len(partial.create) == 1
