"""How object-store faults are classified: 4xx permanent with the store's message, 5xx/network transient."""

from __future__ import annotations

import pytest
import urllib3
from minio.error import S3Error, ServerError

from activities.errors import StorePermanentError, StoreTransientError
from activities.logstore import POOL_SIZE, LogStore, StoreConfig, classify_store_error

pytestmark = pytest.mark.unit


def s3_error(status: int, code: str, message: str) -> S3Error:
    return S3Error(urllib3.HTTPResponse(status=status), code, message, "/pipeline-logs", "req-1", "host-1")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, "AccessDenied"),
        (403, "InvalidAccessKeyId"),
        (403, "SignatureDoesNotMatch"),
        (404, "NoSuchBucket"),
        (400, "InvalidBucketName"),
        (400, "AuthorizationHeaderMalformed"),
    ],
)
def test_authorization_and_request_errors_are_permanent_with_the_stores_message(
    status: int, code: str
) -> None:
    err = classify_store_error(s3_error(status, code, "The store says no."), "put a/b.log", "s3:9000")
    assert isinstance(err, StorePermanentError) and not err.retryable
    assert code in err.message and "The store says no." in err.message and "s3:9000" in err.message


@pytest.mark.parametrize(
    "fault",
    [
        s3_error(503, "SlowDown", "Reduce your request rate."),
        s3_error(500, "InternalError", "We encountered an internal error."),
        s3_error(400, "RequestTimeout", "Your socket connection was not read from or written to."),
        s3_error(409, "OperationAborted", "A conflicting operation is in progress."),
        ServerError("server failed with HTTP status code 502", 502),
        urllib3.exceptions.MaxRetryError(None, "/", "connection refused"),  # type: ignore[arg-type]  # no pool needed
        ConnectionRefusedError("connection refused"),
    ],
)
def test_server_errors_throttling_and_network_faults_are_transient(fault: Exception) -> None:
    assert isinstance(classify_store_error(fault, "put a/b.log", "s3:9000"), StoreTransientError)


def test_the_configured_region_signs_the_requests_and_none_lets_the_client_ask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[object] = []

    class Recorder:
        def __init__(self, endpoint: str, **kw: object) -> None:
            seen.append(kw.get("region"))

    monkeypatch.setattr("activities.logstore.Minio", Recorder)
    LogStore(StoreConfig("s3:9000", "a", "b", region="eu-central-1"))
    LogStore(StoreConfig("s3:9000", "a", "b"))
    assert seen == ["eu-central-1", None]
    assert "eu-central-1" in repr(StoreConfig("s3:9000", "a", "b", region="eu-central-1"))


def test_a_bucket_name_the_s3_rules_forbid_is_permanent_before_any_request() -> None:
    store = LogStore(StoreConfig("127.0.0.1:9", "a", "b", bucket="Pipeline_Logs"))
    with pytest.raises(StorePermanentError, match="Pipeline_Logs"):
        store.put("ns/app/1/0-0.log", b"x")


def test_the_object_store_client_keeps_as_many_connections_as_the_worker_has_storing_threads() -> None:
    pool = LogStore(StoreConfig("s3:9000", "a", "b")).client._http
    assert pool.connection_pool_kw["maxsize"] == POOL_SIZE >= 64
    retries = pool.connection_pool_kw["retries"]
    assert retries.total == 5 and 503 in retries.status_forcelist, "minio's own retries of 5xx answers"
