"""Object-store refusals against the stack's real S3 server: permanent, with the store's own message."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from activities.errors import StorePermanentError
from activities.logstore import LogStore, StoreConfig

pytestmark = pytest.mark.integration


def _store(env: dict[str, str], *, secret: str) -> LogStore:
    return LogStore(
        StoreConfig(
            env["S3_ENDPOINT"],
            env["S3_ACCESS_KEY"],
            secret,
            bucket=f"faults-{uuid.uuid4().hex[:10]}",
            secure=env.get("S3_SECURE") == "true",
            region=env.get("S3_REGION") or None,
        )
    )


def test_wrong_credentials_are_a_permanent_error_carrying_the_stores_message(
    stack_env: dict[str, str],
) -> None:
    store = _store(stack_env, secret="wrong-" + uuid.uuid4().hex)
    with pytest.raises(StorePermanentError) as info:
        store.put("ns/app/1/0-0.log", b"log")
    message = info.value.message
    assert any(code in message for code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"))
    assert stack_env["S3_ENDPOINT"] in message
    assert stack_env["S3_SECRET_KEY"] not in message


def test_the_right_credentials_store_and_read_back_a_log(stack_env: dict[str, str]) -> None:
    store = _store(stack_env, secret=stack_env["S3_SECRET_KEY"])
    store.put("ns/app/1/0-0.log", b"hello\n")
    assert store.get("ns/app/1/0-0.log") == b"hello\n"
    assert store.get("ns/app/1/9-9.log") is None


def test_a_bucket_that_vanished_between_two_logs_is_made_again(
    stack_env: dict[str, str], s3_client: Any
) -> None:
    store = _store(stack_env, secret=stack_env["S3_SECRET_KEY"])
    store.put("ns/app/1/0-0.log", b"first\n")
    # What a store wiped by hand or a deleted bucket looks like to a store that made it already.
    for obj in s3_client.list_objects(store.cfg.bucket, recursive=True):
        s3_client.remove_object(store.cfg.bucket, obj.object_name)
    s3_client.remove_bucket(store.cfg.bucket)
    store.put("ns/app/1/0-1.log", b"second\n")
    assert store.get("ns/app/1/0-1.log") == b"second\n"
