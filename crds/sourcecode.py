"""Source code providers (GitHub, GitLab, Gitea, Bitbucket), users' credentials for them, and repositories.

Tokens never appear in a spec or a status: they stay in Secrets the credentials reference. The worker
verifies each credential at its provider, mirrors the repositories it sees as SourceCodeRepository
objects (owned by the credential) and registers Pipelines' webhooks (:mod:`worker.scm`).

There is no OAuth login yet: a credential is made from a token the user created at the provider.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from crds.meta import (
    AGE_COLUMN,
    CrdInfo,
    CustomResource,
    KubeModel,
    PrinterColumn,
    SecretKeyReference,
    Timestamp,
)
from crds.reasons import SourceCodeProviderType
from crds.status import HasConditions


class SourceCodeProviderConfigSpec(KubeModel):
    """A git hosting service this project can use."""

    type: SourceCodeProviderType
    """github, gitlab, gitea, bitbucketcloud or bitbucketserver."""
    enabled: bool = True
    """False: its credentials are not verified, no repository is synced and no webhook registered."""
    url: str | None = Field(default=None, max_length=2048)
    """Web URL of the service, e.g. https://github.com or https://gitea.example.com; the prefix of its
    repositories' URLs. Default: https://github.com, https://gitlab.com; required for gitea."""
    api_url: str | None = Field(default=None, max_length=2048)
    """API endpoint; default derived from url (https://api.github.com for github.com,
    <url>/api/v3 for GitHub Enterprise, <url>/api/v4 for GitLab, <url>/api/v1 for Gitea)."""
    tls_insecure_skip_verify: bool = False
    ca_bundle: str | None = None
    """PEM CA certificates for a self-hosted server."""


class SourceCodeProviderConfig(CustomResource):
    """A source code provider (one per type and server) of a project."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="sourcecodeproviderconfigs",
        short_names=("scp",),
        printer_columns=(
            PrinterColumn("Type", ".spec.type"),
            PrinterColumn("URL", ".spec.url"),
            PrinterColumn("Enabled", ".spec.enabled", "boolean"),
            AGE_COLUMN,
        ),
    )

    kind: Literal["SourceCodeProviderConfig"] = "SourceCodeProviderConfig"
    spec: SourceCodeProviderConfigSpec


class SourceCodeCredentialSpec(KubeModel):
    """A user's login at a provider; the token is in a Secret."""

    provider_type: SourceCodeProviderType
    provider_config_name: str | None = None
    """SourceCodeProviderConfig (same namespace) this credential belongs to."""
    user_name: str | None = None
    """The platform user who owns the credential."""
    login_name: str = Field(min_length=1)
    """Login at the provider: verification fails when the token belongs to someone else."""
    git_login_name: str | None = None
    """User name for git over HTTPS, when it differs from loginName (e.g. oauth2 for GitLab)."""
    token_secret_ref: SecretKeyReference
    """Secret key holding the access token."""


class ProviderAccount(KubeModel):
    """The provider's account of the token, as it answered the last verification."""

    login: str
    display_name: str | None = None
    avatar_url: str | None = None
    html_url: str | None = None


class SourceCodeCredentialStatus(HasConditions):
    """``Ready``: the provider accepted the token at the last verification (False names its answer)."""

    last_verified: Timestamp | None = None
    """When the token last worked (refreshed at most every 10 minutes while it keeps working)."""
    last_synced: Timestamp | None = None
    """When the repositories were last listed completely (refreshed at most every 10 minutes while
    nothing changes)."""
    repositories: int | None = None
    """How many repositories the token sees (the SourceCodeRepository objects labelled with it)."""
    account: ProviderAccount | None = None
    observed_secret_version: str | None = None
    """resourceVersion of the token Secret the last verification read: a change verifies again."""
    observed_generation: int | None = None
    """The credential's generation the last verification read: an edited spec verifies again."""


class SourceCodeCredential(CustomResource):
    """A user's credential for a source code provider."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="sourcecodecredentials",
        short_names=("scc",),
        printer_columns=(
            PrinterColumn("Type", ".spec.providerType"),
            PrinterColumn("Login", ".spec.loginName"),
            PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status'),
            PrinterColumn("Repositories", ".status.repositories", "integer"),
            PrinterColumn("User", ".spec.userName", priority=1),
            AGE_COLUMN,
        ),
    )

    kind: Literal["SourceCodeCredential"] = "SourceCodeCredential"
    spec: SourceCodeCredentialSpec
    status: SourceCodeCredentialStatus | None = None


class RepositoryPermissions(KubeModel):
    pull: bool = True
    push: bool = False
    admin: bool = False


class SourceCodeRepositorySpec(KubeModel):
    """A repository a credential can access."""

    provider_type: SourceCodeProviderType
    full_name: str = Field(min_length=1, max_length=1024)
    """``owner/name`` at the provider (GitLab: the project's path, groups included)."""
    url: str = Field(min_length=1, max_length=2048)
    """Clone URL (git over HTTPS)."""
    html_url: str | None = Field(default=None, max_length=2048)
    private: bool = False
    default_branch: str | None = None
    language: str | None = None
    permissions: RepositoryPermissions = Field(default_factory=RepositoryPermissions)
    source_code_credential_name: str = Field(min_length=1)
    """The SourceCodeCredential (same namespace) that sees this repository."""
    user_name: str | None = None
    """The credential's platform user."""


class SourceCodeRepository(CustomResource):
    """A repository visible to a credential (refreshed from the provider)."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="sourcecoderepositories",
        short_names=("scr",),
        printer_columns=(
            PrinterColumn("Repository", ".spec.fullName"),
            PrinterColumn("URL", ".spec.url", priority=1),
            PrinterColumn("Credential", ".spec.sourceCodeCredentialName"),
            PrinterColumn("Admin", ".spec.permissions.admin", "boolean", priority=1),
            PrinterColumn("Default Branch", ".spec.defaultBranch", priority=1),
            AGE_COLUMN,
        ),
    )

    kind: Literal["SourceCodeRepository"] = "SourceCodeRepository"
    spec: SourceCodeRepositorySpec


__all__ = [
    "ProviderAccount",
    "RepositoryPermissions",
    "SourceCodeCredential",
    "SourceCodeCredentialSpec",
    "SourceCodeCredentialStatus",
    "SourceCodeProviderConfig",
    "SourceCodeProviderConfigSpec",
    "SourceCodeRepository",
    "SourceCodeRepositorySpec",
]
