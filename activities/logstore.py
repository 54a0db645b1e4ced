"""Step logs in S3-compatible object storage, through the ``minio`` client.

Object names: ``<namespace>/<pipeline>/<run>/<stage-index>-<step-index>.log``.

Faults are classified once, in :func:`classify_store_error`: the store's 5xx answers, timeouts and
connection errors are transient (retry); its 4xx answers (wrong keys, a denied permission, a bucket that
cannot be made, a malformed request) are permanent, with the store's own message, because the same call
with the same keys fails the same way every time.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Final

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error, ServerError
from minio.helpers import check_bucket_name

from activities.errors import ConfigError, StorePermanentError, StoreTransientError
from crds.reasons import Reason
from crds.setting import ObjectStoreSettings

logger = logging.getLogger(__name__)

#: 4xx codes that a later attempt can outlive (the store is busy, or a parallel create won a race).
_TRANSIENT_CODES: Final = frozenset(
    {"RequestTimeout", "SlowDown", "OperationAborted", "RequestTimeTooSkewed", "ServiceUnavailable"}
)
_TRANSIENT_STATUSES: Final = frozenset({408, 409, 425, 429})


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
    #: Region the requests are signed for; None asks the store (one GetBucketLocation per bucket).
    region: str | None = None

    def __repr__(self) -> str:  # keep the keys out of logs and tracebacks
        return (
            f"StoreConfig(endpoint={self.endpoint!r}, bucket={self.bucket!r}, secure={self.secure}, "
            f"region={self.region!r})"
        )


def _http_status(err: MinioException) -> int | None:
    if isinstance(err, S3Error):
        return int(err.response.status) if err.response is not None else None
    if isinstance(err, ServerError):
        return err.status_code
    return None  # InvalidResponseError: not an S3 answer at all (a proxy, a half-started store)


def classify_store_error(
    err: BaseException, what: str, endpoint: str
) -> StoreTransientError | StorePermanentError:
    """Name an object-store fault by what a retry should do; the message is the store's own."""
    if isinstance(err, MinioException):
        status = _http_status(err)
        code = err.code if isinstance(err, S3Error) else None
        text = err.message if isinstance(err, S3Error) else str(err)
        detail = f"object store at {endpoint}: {what}: {code or f'HTTP {status}'}: {text or 'no message'}"
        if code in _TRANSIENT_CODES or status is None or status >= 500 or status in _TRANSIENT_STATUSES:
            return StoreTransientError(detail, reason=Reason.OBJECT_STORE_UNAVAILABLE)
        return StorePermanentError(detail, reason=Reason.OBJECT_STORE_REJECTED)
    return StoreTransientError(
        f"object store unreachable at {endpoint}: {what}: {err}", reason=Reason.OBJECT_STORE_UNAVAILABLE
    )


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
            region=default.region,
        )
    raise ConfigError(
        "the PipelineSetting names no object store and the worker has no default",
        reason=Reason.CONFIG_INVALID,
    )


@dataclass(frozen=True)
class StoredObject:
    name: str
    last_modified: datetime


#: Keep-alive connections per object store: about the worker's threads that store logs at once.
POOL_SIZE = 64


def http_client() -> urllib3.PoolManager:
    """minio's own default client (its timeouts, retries of 5xx answers, CA file), with a pool as large as
    the worker's threads: minio's 10 discarded the connections of the rest after each request."""
    timeout = 300.0
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        maxsize=POOL_SIZE,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )


class LogStore:
    """Puts and reads whole step logs; faults are StoreTransientError or StorePermanentError."""

    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self.client = Minio(
            cfg.endpoint,
            access_key=cfg.access_key,
            secret_key=cfg.secret_key,
            secure=cfg.secure,
            region=cfg.region or None,
            http_client=http_client(),
        )
        self._bucket_ready = False

    @contextmanager
    def _faults(self, what: str) -> Iterator[None]:
        try:
            yield
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
            raise classify_store_error(err, what, self.cfg.endpoint) from err
        except ValueError as err:
            # The client's own checks (a bucket name S3 does not allow): no request could ever succeed.
            raise StorePermanentError(
                f"object store at {self.cfg.endpoint}: {what}: {err}", reason=Reason.OBJECT_STORE_REJECTED
            ) from err

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._faults(f"bucket {self.cfg.bucket}"):
            check_bucket_name(self.cfg.bucket, strict=True)  # today's S3 rules: a bad name fails here
            try:
                if not self.client.bucket_exists(self.cfg.bucket):
                    self.client.make_bucket(self.cfg.bucket)
            except S3Error as err:
                if err.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._bucket_ready = True

    def put(self, name: str, data: bytes) -> None:
        self.put_file(name, io.BytesIO(data), len(data))

    def put_file(self, name: str, data: BinaryIO, length: int) -> None:
        """Upload ``length`` bytes from a seekable file object (streamed in parts: bounded memory).

        A bucket that vanished meanwhile (a store restarted empty, a bucket deleted) is made again and
        the upload repeated once: NoSuchBucket is permanent only when the bucket cannot be made.
        """
        start = data.tell()
        for attempt in (1, 2):
            self._ensure_bucket()
            with self._faults(f"put {name}"):
                try:
                    self.client.put_object(
                        self.cfg.bucket, name, data, length, content_type="text/plain; charset=utf-8"
                    )
                except S3Error as err:
                    if err.code != "NoSuchBucket" or attempt == 2:
                        raise
                    logger.info("bucket %s vanished; making it again", self.cfg.bucket)
                    self._bucket_ready = False
                    data.seek(start)
                    continue
            break
        logger.info("stored %s (%d bytes)", name, length)

    def get(self, name: str) -> bytes | None:
        """The whole object, or None when it does not exist."""
        with self._faults(f"get {name}"):
            try:
                resp = self.client.get_object(self.cfg.bucket, name)
            except S3Error as err:
                if err.code in ("NoSuchKey", "NoSuchBucket"):
                    return None
                raise
            try:
                return bytes(resp.read())
            finally:
                resp.close()
                resp.release_conn()

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every object under ``prefix`` with its last-modified time."""
        with self._faults(f"list {prefix}"):
            try:
                for obj in self.client.list_objects(self.cfg.bucket, prefix=prefix, recursive=True):
                    if obj.object_name and obj.last_modified is not None:
                        yield StoredObject(str(obj.object_name), obj.last_modified)
            except S3Error as err:
                if err.code == "NoSuchBucket":
                    return
                raise

    def delete(self, name: str) -> None:
        """Remove one object (a missing one is fine)."""
        with self._faults(f"delete {name}"):
            try:
                self.client.remove_object(self.cfg.bucket, name)
            except S3Error as err:
                if err.code in ("NoSuchKey", "NoSuchBucket"):
                    return
                raise

    def list(self, prefix: str) -> Iterator[str]:
        with self._faults(f"list {prefix}"):
            try:
                for obj in self.client.list_objects(self.cfg.bucket, prefix=prefix, recursive=True):
                    if obj.object_name:
                        yield str(obj.object_name)
            except S3Error as err:
                if err.code == "NoSuchBucket":
                    return
                raise
