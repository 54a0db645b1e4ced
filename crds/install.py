"""Install (or update) the CRDs in a cluster and wait until they are served.

Used by the worker at start-up, the local stack and the tests. This is the one module of ``crds`` that
talks to a cluster; it uses only the ``kubernetes`` client package.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from crds.generate import all_crds


class CrdInstallError(RuntimeError):
    """A CRD was rejected or did not become Established in time."""


def _conditions(crd: Any) -> dict[str, Any]:
    status = getattr(crd, "status", None)
    return {c.type: c for c in (getattr(status, "conditions", None) or [])}


def install_crds(api_client: Any, *, timeout: float = 60.0, crds: list[dict[str, Any]] | None = None) -> None:
    """Create or update every CRD (default: all of ours) and wait until each is Established.

    Idempotent: an existing CRD is replaced with the generated one (its resourceVersion kept).
    Raises :class:`CrdInstallError` with the apiserver's message if a CRD is rejected or is not
    Established (and NamesAccepted) within ``timeout`` seconds.
    """
    # The client accepts plain dicts as bodies; its annotations name the model classes.
    api: Any = k8s.ApiextensionsV1Api(api_client)
    wanted = crds if crds is not None else all_crds()
    for body in wanted:
        name = body["metadata"]["name"]
        try:
            try:
                api.create_custom_resource_definition(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                for attempt in range(5):
                    live = api.read_custom_resource_definition(name)
                    replacement = {**body, "metadata": {**body["metadata"]}}
                    replacement["metadata"]["resourceVersion"] = live.metadata.resource_version
                    try:
                        api.replace_custom_resource_definition(name, replacement)
                        break
                    except ApiException as conflict:
                        if conflict.status != 409 or attempt == 4:
                            raise
        except ApiException as exc:
            raise CrdInstallError(f"CRD {name} rejected ({exc.status}): {exc.body or exc.reason}") from exc

    deadline = time.monotonic() + timeout
    for body in wanted:
        name = body["metadata"]["name"]
        while True:
            crd = api.read_custom_resource_definition(name)
            conditions = _conditions(crd)
            established = conditions.get("Established")
            names = conditions.get("NamesAccepted")
            if (
                established is not None
                and established.status == "True"
                and (names is None or names.status == "True")
            ):
                break
            if names is not None and names.status == "False":
                raise CrdInstallError(f"CRD {name}: names not accepted: {names.message}")
            if time.monotonic() > deadline:
                detail = "; ".join(f"{t}={c.status} ({c.message})" for t, c in conditions.items())
                raise CrdInstallError(
                    f"CRD {name} not Established after {timeout:.0f}s: {detail or 'no conditions'}"
                )
            time.sleep(0.2)


__all__ = ["CrdInstallError", "install_crds"]
