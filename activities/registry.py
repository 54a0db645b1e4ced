"""The image registry of a project: where publishImage pushes by default, and the logins for each registry.

``CICD_LOCAL_REGISTRY`` is the PipelineSetting's ``registry.host``, else the managed registry of the
pipeline namespace (the bootstrap's ``registry`` Service). Logins come from the Secret named by
``registry.credentialsSecretRef`` (a ``kubernetes.io/dockerconfigjson``: one auth per registry host), or,
for the managed registry, from the credentials the bootstrap generated for it. Pure functions here; the
activity reads the Secrets and binds each login as a Jenkins credential.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from activities.bootstrap import REGISTRY, REGISTRY_PORT
from activities.errors import ConfigError
from crds.reasons import Reason
from crds.setting import PipelineSettingSpec

DOCKER_CONFIG_KEY: Final = ".dockerconfigjson"


@dataclass(frozen=True)
class RegistryLogin:
    username: str
    password: str = field(repr=False)


def local_registry(setting: PipelineSettingSpec, pipeline_namespace: str) -> str:
    """CICD_LOCAL_REGISTRY of a project."""
    return setting.registry.host or f"{REGISTRY}.{pipeline_namespace}.svc:{REGISTRY_PORT}"


def registry_host(key: str) -> str:
    """The host[:port] of a docker config ``auths`` key (``host``, ``https://host/v1/``...)."""
    text = key.strip()
    if "://" in text:
        return urlsplit(text).netloc
    return text.split("/", 1)[0]


def docker_config_logins(text: str, where: str) -> dict[str, RegistryLogin]:
    """Registry host -> login of a ``.dockerconfigjson`` document (a ConfigError names ``where``, never a
    value)."""
    try:
        doc: Any = json.loads(text)
    except ValueError:
        raise ConfigError(f"{where} is not JSON", reason=Reason.CONFIG_INVALID) from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        raise ConfigError(f"{where} has no auths", reason=Reason.CONFIG_INVALID)
    logins: dict[str, RegistryLogin] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        user, password = entry.get("username"), entry.get("password")
        if not (isinstance(user, str) and isinstance(password, str)) and isinstance(entry.get("auth"), str):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise ConfigError(
                    f"{where}: the auth of {registry_host(key)} is not base64 user:password",
                    reason=Reason.CONFIG_INVALID,
                ) from None
        if isinstance(user, str) and isinstance(password, str) and user:
            logins[registry_host(key)] = RegistryLogin(user, password)
    return logins


__all__ = ["DOCKER_CONFIG_KEY", "RegistryLogin", "docker_config_logins", "local_registry", "registry_host"]
