"""The stack's object store: a MinIO server built from its Go module, keeping objects on disk.

MinIO is AGPL-licensed; it is a development server of the local stack only (built into the testbin
cache, started as a process): the product never imports, links or ships it, and talks to any S3 API.
"""

from __future__ import annotations

import os

from devstack.component import Component, Context, Unhealthy, binaries, http_get
from devstack.proc import LOOPBACK

S3_REGION = "us-east-1"


class MinIO(Component):
    name = "minio"
    startup_timeout = 60.0

    def prepare(self, ctx: Context) -> None:
        binaries(ctx)
        (ctx.dir / "minio-data").mkdir(exist_ok=True)

    def command(self, ctx: Context, ports: dict[str, int]) -> list[str]:
        return [
            str(binaries(ctx).minio),
            "server",
            str(ctx.dir / "minio-data"),
            "--address",
            f"{LOOPBACK}:{ports['main']}",
            "--quiet",
        ]

    def child_env(self, ctx: Context) -> dict[str, str] | None:
        return dict(
            os.environ,
            MINIO_ROOT_USER=ctx.creds.s3_access_key,
            MINIO_ROOT_PASSWORD=ctx.creds.s3_secret_key,
            MINIO_SITE_REGION=S3_REGION,
            # No web console (one port fewer), no update checks, no phoning home.
            MINIO_BROWSER="off",
            MINIO_UPDATE="off",
            MINIO_CALLHOME_ENABLE="off",
        )

    def check(self, ctx: Context, ports: dict[str, int]) -> None:
        status, _ = http_get(f"{self.url(ports)}/minio/health/ready")
        if status != 200:
            raise Unhealthy(f"minio /minio/health/ready: HTTP {status}")
        _list_buckets(ctx, ports)

    def env(self, ctx: Context, ports: dict[str, int]) -> dict[str, str]:
        return {
            "S3_ENDPOINT": f"{LOOPBACK}:{ports['main']}",
            "S3_SECURE": "false",
            "S3_REGION": S3_REGION,
            "S3_ACCESS_KEY": ctx.creds.s3_access_key,
            "S3_SECRET_KEY": ctx.creds.s3_secret_key,
        }


def _list_buckets(ctx: Context, ports: dict[str, int]) -> None:
    """The stack's credentials are accepted (a signed request, not only a live port)."""
    import urllib3
    from minio import Minio

    client = Minio(
        f"{LOOPBACK}:{ports['main']}",
        access_key=ctx.creds.s3_access_key,
        secret_key=ctx.creds.s3_secret_key,
        secure=False,
        region=S3_REGION,
        http_client=urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=2, read=3), retries=urllib3.Retry(total=0)
        ),
    )
    try:
        client.list_buckets()
    except Exception as err:
        raise Unhealthy(f"minio list_buckets: {err}") from err
