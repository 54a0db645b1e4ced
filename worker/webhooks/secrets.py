"""The webhook secret of a Pipeline: a Secret ``<pipeline>-webhook`` the Pipeline owns (deleted with it).

The CLI (``devopsctl webhook``) and the worker create it; only the receiver reads it. Rotating replaces
the value: the provider must be given the new one (``devopsctl webhook --rotate -o json``).
"""

from __future__ import annotations

import secrets as random_secrets
from typing import Final

from activities.errors import KubeNotFoundError
from activities.kube import Kube, encode_secret_data
from crds.pipeline import WEBHOOK_SECRET_KEY, Pipeline
from crds.setting import DEFAULT_SETTING_NAME, PipelineSetting

SECRET_LABEL: Final = "devops.cubepaas.io/webhook-secret"
IMAGE_TOKEN_KEY: Final = "token"
FIELD_MANAGER: Final = "cubepaas-webhooks"


def read_webhook_secret(kube: Kube, namespace: str, pipeline: str) -> bytes:
    """The Pipeline's webhook secret, or b"" when it has none (every signature then fails)."""
    try:
        data = kube.read_secret(namespace, f"{pipeline}-webhook")
    except KubeNotFoundError:
        return b""
    return data.get(WEBHOOK_SECRET_KEY, "").encode()


def ensure_webhook_secret(kube: Kube, pipeline: Pipeline, *, rotate: bool = False) -> str:
    """The Pipeline's webhook secret, generated (or, with ``rotate``, replaced) when needed."""
    name = pipeline.webhook_secret_name()
    if not rotate:
        current = read_webhook_secret(kube, pipeline.namespace, pipeline.name)
        if current:
            return current.decode()
    value = random_secrets.token_hex(32)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": pipeline.namespace,
                "labels": {SECRET_LABEL: pipeline.name},
                "ownerReferences": [
                    {
                        "apiVersion": pipeline.api_version,
                        "kind": pipeline.kind,
                        "name": pipeline.name,
                        "uid": pipeline.metadata.uid or "",
                    }
                ],
            },
            "data": encode_secret_data({WEBHOOK_SECRET_KEY: value}),
        },
        field_manager=FIELD_MANAGER,
    )
    return value


def read_image_token(kube: Kube, namespace: str) -> bytes:
    """The project's image-push token (PipelineSetting ``webhook.imageTokenSecretRef``), b"" when none."""
    setting = kube.find(PipelineSetting, namespace, DEFAULT_SETTING_NAME)
    ref = setting.spec.webhook.image_token_secret_ref if setting else None
    if ref is None:
        return b""
    try:
        data = kube.read_secret(ref.namespace or namespace, ref.name)
    except KubeNotFoundError:
        return b""
    return data.get(IMAGE_TOKEN_KEY, "").encode()


__all__ = [
    "IMAGE_TOKEN_KEY",
    "SECRET_LABEL",
    "ensure_webhook_secret",
    "read_image_token",
    "read_webhook_secret",
]
