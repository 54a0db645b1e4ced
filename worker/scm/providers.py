"""From the source-code objects of a project to a driver, an endpoint and a token.

A credential names its SourceCodeProviderConfig (``providerConfigName``), or takes the one config of its
type in its namespace; GitHub and GitLab fall back to their public services without a config. Every
way this can fail is a :class:`SetupError` with the reason the credential's ``Ready`` condition shows.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from activities.errors import KubeNotFoundError
from activities.kube import Kube, decode_secret_data
from crds.reasons import ScmReason, SourceCodeProviderType
from crds.sourcecode import SourceCodeCredential, SourceCodeProviderConfig
from worker.scm.driver import Driver, Endpoint
from worker.scm.gitea import GiteaDriver
from worker.scm.github import GitHubDriver
from worker.scm.gitlab import GitLabDriver

PUBLIC_URLS: dict[SourceCodeProviderType, str] = {
    SourceCodeProviderType.GITHUB: "https://github.com",
    SourceCodeProviderType.GITLAB: "https://gitlab.com",
}


class SetupError(Exception):
    """The objects do not name a usable provider or token; ``reason`` goes into the condition."""

    def __init__(self, reason: ScmReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


Drivers = Mapping[SourceCodeProviderType, Driver]

DRIVERS: Drivers = {
    SourceCodeProviderType.GITHUB: GitHubDriver(),
    SourceCodeProviderType.GITLAB: GitLabDriver(),
    SourceCodeProviderType.GITEA: GiteaDriver(),
}
"""The driver of each provider type; the Bitbucket types have none yet."""


def endpoint_of(kind: SourceCodeProviderType, config: SourceCodeProviderConfig | None) -> Endpoint:
    """Where the API of ``config`` is (defaults per type, see the CRD's ``apiUrl``)."""
    spec = config.spec if config else None
    web = (spec.url if spec and spec.url else PUBLIC_URLS.get(kind, "")).rstrip("/")
    name = f"SourceCodeProviderConfig {config.name}" if config else f"the {kind.value} provider"
    if not web:
        raise SetupError(ScmReason.PROVIDER_CONFIG_INVALID, f"{name} has no url ({kind.value} needs one)")
    parts = urlsplit(web)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SetupError(ScmReason.PROVIDER_CONFIG_INVALID, f"{name}: url {web!r} is not an http(s) URL")
    if spec and spec.api_url:
        api = spec.api_url.rstrip("/")
    elif kind is SourceCodeProviderType.GITHUB:
        api = "https://api.github.com" if parts.hostname == "github.com" else web + "/api/v3"
    elif kind is SourceCodeProviderType.GITLAB:
        api = web + "/api/v4"
    else:
        api = web + "/api/v1"
    verify: bool | str = True
    if spec and spec.tls_insecure_skip_verify:
        verify = False
    elif spec and spec.ca_bundle:
        verify = str(_ca_file(spec.ca_bundle))
    return Endpoint(api_url=api, web_url=web, verify=verify)


def _ca_file(pem: str) -> Path:
    """``requests`` wants a file: one per bundle content, written once, atomically."""
    digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"cubepaas-scm-ca-{digest}.pem"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ca-")
        with os.fdopen(fd, "w") as out:
            out.write(pem)
        os.replace(tmp, path)
    return path


def provider_config(kube: Kube, credential: SourceCodeCredential) -> SourceCodeProviderConfig | None:
    """The credential's config: the one it names, else the only one of its type in its namespace."""
    spec, namespace = credential.spec, credential.namespace
    if spec.provider_config_name:
        config = kube.find(SourceCodeProviderConfig, namespace, spec.provider_config_name)
        if config is None:
            raise SetupError(
                ScmReason.PROVIDER_CONFIG_INVALID,
                f"SourceCodeProviderConfig {namespace}/{spec.provider_config_name} not found",
            )
        if config.spec.type != spec.provider_type:
            raise SetupError(
                ScmReason.PROVIDER_CONFIG_INVALID,
                f"SourceCodeProviderConfig {config.name} is of type {config.spec.type.value}, "
                f"the credential of type {spec.provider_type.value}",
            )
        return config
    same_type = [
        c
        for c in kube.list_resources(SourceCodeProviderConfig, namespace)
        if c.spec.type == spec.provider_type
    ]
    if len(same_type) > 1:
        raise SetupError(
            ScmReason.PROVIDER_CONFIG_INVALID,
            f"{len(same_type)} SourceCodeProviderConfigs of type {spec.provider_type.value} in {namespace}: "
            "name one in providerConfigName",
        )
    if same_type:
        return same_type[0]
    if spec.provider_type not in PUBLIC_URLS:
        raise SetupError(
            ScmReason.PROVIDER_CONFIG_INVALID,
            f"no SourceCodeProviderConfig of type {spec.provider_type.value} in {namespace}",
        )
    return None


@dataclass(frozen=True)
class Access:
    """What acting with one credential takes."""

    credential: SourceCodeCredential
    config: SourceCodeProviderConfig | None
    driver: Driver
    endpoint: Endpoint
    token: str
    secret_version: str


def token_of(kube: Kube, credential: SourceCodeCredential) -> tuple[str, str]:
    """(token, the Secret's resourceVersion)."""
    ref, namespace = credential.spec.token_secret_ref, credential.namespace
    try:
        secret = kube.read_object("v1", "Secret", ref.name, namespace)
    except KubeNotFoundError:
        raise SetupError(
            ScmReason.TOKEN_SECRET_INVALID, f"Secret {namespace}/{ref.name} of the token not found"
        ) from None
    token = decode_secret_data(secret).get(ref.key, "").strip()
    if not token:
        raise SetupError(
            ScmReason.TOKEN_SECRET_INVALID, f"Secret {namespace}/{ref.name} has no key {ref.key!r}"
        )
    return token, str((secret.get("metadata") or {}).get("resourceVersion") or "")


def access(kube: Kube, credential: SourceCodeCredential, drivers: Drivers | None = None) -> Access:
    """The driver, endpoint and token of ``credential`` (:class:`SetupError` when it has none)."""
    config = provider_config(kube, credential)
    if config is not None and not config.spec.enabled:
        raise SetupError(ScmReason.PROVIDER_DISABLED, f"SourceCodeProviderConfig {config.name} is disabled")
    driver = (DRIVERS if drivers is None else drivers).get(credential.spec.provider_type)
    if driver is None:
        raise SetupError(
            ScmReason.NOT_VERIFIABLE,
            f"{credential.spec.provider_type.value} tokens cannot be verified yet: "
            "they are used for cloning as they are",
        )
    endpoint = endpoint_of(credential.spec.provider_type, config)
    token, version = token_of(kube, credential)
    return Access(credential, config, driver, endpoint, token, version)


__all__ = [
    "DRIVERS",
    "PUBLIC_URLS",
    "Access",
    "Drivers",
    "SetupError",
    "access",
    "endpoint_of",
    "provider_config",
    "token_of",
]
