"""The one way this product connects to Temporal (worker, bridge and CLI alike).

Every client uses :data:`temporalio.contrib.pydantic.pydantic_data_converter`, so the pydantic models
of :mod:`crds.messages` travel as JSON and come back as models.
"""

from __future__ import annotations

from urllib.parse import quote

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

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
        tls=settings.temporal_tls or api_key is not None,
        api_key=api_key,
        identity=identity,
    )


def workflow_ui_url(ui_base_url: str, namespace: str, workflow_id: str, run_id: str | None = None) -> str:
    """``<ui>/namespaces/<ns>/workflows/<id>/<runId>/history``; "" without a UI.

    The id is percent-encoded (ours contain ``/``), as the UI's own links do.
    """
    if not ui_base_url:
        return ""
    base = ui_base_url.rstrip("/")
    url = f"{base}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
    if run_id:
        url += f"/{quote(run_id, safe='')}/history"
    return url


__all__ = ["connect", "workflow_ui_url"]
