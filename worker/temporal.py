"""The one way this product connects to Temporal (worker, bridge and CLI alike).

Every client uses :data:`temporalio.contrib.pydantic.pydantic_data_converter`, so the pydantic models
of :mod:`crds.messages` travel as JSON and come back as models.
"""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from crds.execution import workflow_ui_url
from worker.settings import WorkerSettings


async def connect(
    settings: WorkerSettings, *, runtime: Runtime | None = None, identity: str | None = None
) -> Client:
    """A client for ``TEMPORAL_ADDRESS`` / ``TEMPORAL_NAMESPACE`` with the pydantic data converter."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        tls=tls_config(settings),
        api_key=api_key,
        identity=identity,
    )


def tls_config(settings: WorkerSettings) -> TLSConfig | bool:
    """TLS towards Temporal: ``False`` (plaintext), ``True`` (system roots) or a :class:`TLSConfig`.

    TLS is on when ``TEMPORAL_TLS`` says so, or an API key or a client certificate is configured
    (neither may travel in plaintext). The PEM files are read here, at connect time, so a Secret
    rotated by re-mounting is picked up by the next connection.
    """
    wants_tls = (
        settings.temporal_tls
        or settings.temporal_api_key is not None
        or settings.temporal_tls_cert is not None
    )
    if not wants_tls:
        return False
    if (
        settings.temporal_tls_cert is None
        and settings.temporal_tls_ca is None
        and not settings.temporal_tls_server_name
    ):
        return True
    return TLSConfig(
        server_root_ca_cert=settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None,
        domain=settings.temporal_tls_server_name,
        client_cert=settings.temporal_tls_cert.read_bytes() if settings.temporal_tls_cert else None,
        client_private_key=settings.temporal_tls_key.read_bytes() if settings.temporal_tls_key else None,
    )


__all__ = ["connect", "tls_config", "workflow_ui_url"]
