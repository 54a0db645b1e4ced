"""The stack's image registry: Debian's ``docker-registry`` (the CNCF distribution registry 2.8).

Plain HTTP on loopback, no authentication, images on disk in the state folder. Every push and pull
is announced to ``http://127.0.0.1:$CUBEPAAS_WEBHOOK_PORT/hooks/registry`` (the registry's
notifications). Nothing listens there yet: the registry queues the events, retries with back-off and
keeps serving, so a missing receiver costs nothing.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

import yaml

from devstack.component import Component, Context, Unhealthy, http_get
from devstack.proc import LOOPBACK
from devstack.state import atomic_write

REGISTRY_COMMAND = "docker-registry"  # installed by Debian's package of the same name (make system-deps)
WEBHOOK_PATH = "/hooks/registry"


def registry_config(ctx: Context, ports: dict[str, int]) -> dict[str, Any]:
    return {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(ctx.dir / "registry" / "data")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {"addr": f"{LOOPBACK}:{ports['main']}", "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
        "notifications": {
            "endpoints": [
                {
                    "name": "cubepaas",
                    "url": webhook_url(ports),
                    # The receiver trusts the stack's registry by this token (CUBEPAAS_REGISTRY_TOKEN).
                    "headers": {"Authorization": [f"Bearer {notification_token(ctx)}"]},
                    "timeout": "2s",
                    "threshold": 5,
                    "backoff": "5s",
                    # Layers are not interesting to a trigger; manifests (tags) are.
                    "ignoredmediatypes": ["application/octet-stream"],
                }
            ]
        },
    }


def notification_token(ctx: Context) -> str:
    """The token the registry sends with its notifications: made once per state folder."""
    path: Path = ctx.dir / "registry" / "notification-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, secrets.token_hex(24))
        path.chmod(0o600)
    return path.read_text().strip()


def webhook_url(ports: dict[str, int]) -> str:
    return f"http://{LOOPBACK}:{ports['webhook']}{WEBHOOK_PATH}"


class Registry(Component):
    name = "registry"
    # "webhook" is where the registry *sends* its notifications: chosen and remembered like the others,
    # but nothing of the stack listens on it.
    port_names = ("main", "webhook")
    target_ports = ("webhook",)
    startup_timeout = 30.0

    def prepare(self, ctx: Context) -> None:
        if shutil.which(REGISTRY_COMMAND) is None:
            raise RuntimeError(
                f"no `{REGISTRY_COMMAND}` on PATH: install the Debian package docker-registry "
                "(`make system-deps` does)"
            )
        (ctx.dir / "registry" / "data").mkdir(parents=True, exist_ok=True)

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        config = ctx.dir / "registry" / "config.yml"
        atomic_write(config, yaml.safe_dump(registry_config(ctx, ports), sort_keys=False))
        return [REGISTRY_COMMAND, "serve", str(config)]

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        status, body = http_get(f"{self.url(ports)}/v2/")
        if status != 200:
            raise Unhealthy(f"registry /v2/: HTTP {status} {body[-200:]!r}")

    def env(self, ctx: Context, ports: dict[str, int]) -> dict[str, str]:
        return {
            "REGISTRY_URL": self.url(ports),
            "REGISTRY_HOST": f"{LOOPBACK}:{ports['main']}",
            "CUBEPAAS_WEBHOOK_PORT": str(ports["webhook"]),
            "REGISTRY_NOTIFICATIONS_URL": webhook_url(ports),
            "CUBEPAAS_REGISTRY_TOKEN": notification_token(ctx),
        }
