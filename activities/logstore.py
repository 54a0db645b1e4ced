"""Step logs in S3-compatible object storage, through the ``minio`` client.

Object names: ``<namespace>/<pipeline>/<run>/<stage-index>-<step-index>.log``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

import urllib3
from minio import Minio
from minio.error import S3Error

from activities.errors import ConfigError, StoreTransientError
from crds.reasons import Reason
from crds.setting import ObjectStoreSettings

logger = logging.getLogger(__name__)


def log_object_name(namespace: str, pipeline: str, run: int, stage: int, step: int) -> str:
    return f"{namespace}/{pipeline}/{run}/{stage}-{step}.log"


@dataclass(frozen=True)
class StoreConfig:
    """Where logs go. The keys are read from a Secret (or the worker's settings), never from a CR."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str = "pipeline-logs"
    secure: bool = False

    def __repr__(self) -> str:  # keep the keys out of logs and tracebacks
        return f"StoreConfig(endpoint={self.endpoint!r}, bucket={self.bucket!r}, secure={self.secure})"


def resolve_store(
    settings: ObjectStoreSettings,
    namespace: str,
    read_secret: Callable[[str, str], dict[str, str]],
    default: StoreConfig | None,
) -> StoreConfig:
    """Where a project's logs are: its PipelineSetting's object store (keys from the referenced Secret),
    else the worker's own (``default``) with the setting's bucket."""
    if settings.endpoint:
        access, secret = "", ""
        if settings.credentials_secret_ref is not None:
            ref = settings.credentials_secret_ref
            data = read_secret(ref.namespace or namespace, ref.name)
            access, secret = data.get("accessKey", ""), data.get("secretKey", "")
        return StoreConfig(
            endpoint=settings.endpoint,
            access_key=access,
            secret_key=secret,
            bucket=settings.bucket,
            secure=settings.secure,
        )
    if default is not None:
        return StoreConfig(
            endpoint=default.endpoint,
            access_key=default.access_key,
            secret_key=default.secret_key,
            bucket=settings.bucket or default.bucket,
            secure=default.secure,
        )
    raise ConfigError(
        "the PipelineSetting names no object store and the worker has no default",
        reason=Reason.CONFIG_INVALID,
    )


@dataclass(frozen=True)
class StoredObject:
    name: str
    last_modified: datetime


class LogStore:
    """Puts and reads whole step logs; every fault is a StoreTransientError (retry the activity)."""

    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self.client = Minio(
            cfg.endpoint, access_key=cfg.access_key, secret_key=cfg.secret_key, secure=cfg.secure
        )
        self._bucket_ready = False

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        try:
            if not self.client.bucket_exists(self.cfg.bucket):
                self.client.make_bucket(self.cfg.bucket)
        except S3Error as err:
            if err.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StoreTransientError(f"object store: {err.code}: {err.message}") from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise StoreTransientError(f"object store unreachable at {self.cfg.endpoint}: {err}") from err
        self._bucket_ready = True

    def put(self, name: str, data: bytes) -> None:
        self._ensure_bucket()
        try:
            self.client.put_object(
                self.cfg.bucket, name, io.BytesIO(data), len(data), content_type="text/plain; charset=utf-8"
            )
        except S3Error as err:
            raise StoreTransientError(f"object store: {err.code}: {err.message}") from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise StoreTransientError(f"object store unreachable at {self.cfg.endpoint}: {err}") from err
        logger.info("stored %s (%d bytes)", name, len(data))

    def put_file(self, name: str, data: BinaryIO, length: int) -> None:
        """Upload ``length`` bytes from a file object (streamed in parts: bounded memory)."""
        self._ensure_bucket()
        try:
            self.client.put_object(
                self.cfg.bucket, name, data, length, content_type="text/plain; charset=utf-8"
            )
        except S3Error as err:
            raise StoreTransientError(f"object store: {err.code}: {err.message}") from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise StoreTransientError(f"object store unreachable at {self.cfg.endpoint}: {err}") from err
        logger.info("stored %s (%d bytes)", name, length)

    def get(self, name: str) -> bytes | None:
        """The whole object, or None when it does not exist."""
        try:
            resp = self.client.get_object(self.cfg.bucket, name)
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchBucket"):
                return None
            raise StoreTransientError(f"object store: {err.code}: {err.message}") from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise StoreTransientError(f"object store unreachable at {self.cfg.endpoint}: {err}") from err
        try:
            return bytes(resp.read())
        finally:
            resp.close()
            resp.release_conn()

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every object under ``prefix`` with its last-modified time."""
        try:
            for obj in self.client.list_objects(self.cfg.bucket, prefix=prefix, recursive=True):
                if obj.object_name and obj.last_modified is not None:
                    yield StoredObject(str(obj.object_name), obj.last_modified)
        except S3Error as err:
            if err.code == "NoSuchBucket":
                return
            raise StoreTransientError(f"object store: {err.code}: {err.message}") from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise StoreTransientError(f"object store unreachable at {self.cfg.endpoint}: {err}") from err

    def delete(self, name: str) -> None:
        """Remove one object (a missing one is fine)."""
        try:
            self.client.remove_object(self.cfg.bucket, name)
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchBucket"):
                return
            raise StoreTransientError(f"object store: {err.code}: {err.message}") from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise StoreTransientError(f"object store unreachable at {self.cfg.endpoint}: {err}") from err

    def list(self, prefix: str) -> Iterator[str]:
        try:
            for obj in self.client.list_objects(self.cfg.bucket, prefix=prefix, recursive=True):
                if obj.object_name:
                    yield str(obj.object_name)
        except S3Error as err:
            if err.code == "NoSuchBucket":
                return
            raise StoreTransientError(f"object store: {err.code}: {err.message}") from err
