"""Source code providers (GitHub, GitLab, Bitbucket), users' credentials for them, and repositories.

Tokens and OAuth secrets never appear in a spec: they stay in Secrets the objects reference.
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


class OAuthSettings(KubeModel):
    """The OAuth application users log in through."""

    client_id: str = Field(min_length=1)
    client_secret_ref: SecretKeyReference
    """Secret key holding the OAuth client secret."""
    redirect_url: str | None = None
    scopes: list[str] = Field(default_factory=list)


class SourceCodeProviderConfigSpec(KubeModel):
    """A git hosting service this project can use."""

    type: SourceCodeProviderType
    """github, gitlab, bitbucketcloud or bitbucketserver."""
    enabled: bool = True
    url: str | None = None
    """Web URL of the service, e.g. https://github.com or https://gitlab.example.com."""
    api_url: str | None = None
    """API endpoint; default derived from url (https://api.github.com for github.com)."""
    tls_insecure_skip_verify: bool = False
    ca_bundle: str | None = None
    """PEM CA certificates for a self-hosted server."""
    oauth: OAuthSettings | None = None


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
    """Login at the provider."""
    display_name: str | None = None
    avatar_url: str | None = None
    html_url: str | None = None
    git_login_name: str | None = None
    """User name for git over HTTPS, when it differs from loginName (e.g. oauth2 for GitLab)."""
    token_secret_ref: SecretKeyReference
    """Secret key holding the access token."""


class SourceCodeCredentialStatus(HasConditions):
    last_verified: Timestamp | None = None
    """When the token last worked."""


class SourceCodeCredential(CustomResource):
    """A user's credential for a source code provider."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="sourcecodecredentials",
        short_names=("scc",),
        printer_columns=(
            PrinterColumn("Type", ".spec.providerType"),
            PrinterColumn("Login", ".spec.loginName"),
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
    url: str = Field(min_length=1, max_length=2048)
    """Clone URL."""
    default_branch: str | None = None
    language: str | None = None
    permissions: RepositoryPermissions = Field(default_factory=RepositoryPermissions)
    source_code_credential_name: str = Field(min_length=1)
    """The SourceCodeCredential (same namespace) that sees this repository."""
    user_name: str | None = None


class SourceCodeRepository(CustomResource):
    """A repository visible to a credential (refreshed from the provider)."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="sourcecoderepositories",
        short_names=("scr",),
        printer_columns=(
            PrinterColumn("URL", ".spec.url"),
            PrinterColumn("Credential", ".spec.sourceCodeCredentialName"),
            PrinterColumn("Default Branch", ".spec.defaultBranch", priority=1),
            AGE_COLUMN,
        ),
    )

    kind: Literal["SourceCodeRepository"] = "SourceCodeRepository"
    spec: SourceCodeRepositorySpec


__all__ = [
    "OAuthSettings",
    "RepositoryPermissions",
    "SourceCodeCredential",
    "SourceCodeCredentialSpec",
    "SourceCodeCredentialStatus",
    "SourceCodeProviderConfig",
    "SourceCodeProviderConfigSpec",
    "SourceCodeRepository",
    "SourceCodeRepositorySpec",
]
