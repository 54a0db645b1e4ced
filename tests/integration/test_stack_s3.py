"""The local object store (MinIO) through the minio client: objects, and objects kept across a restart."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest

from devstack.proc import wait_for
from devstack.stack import Stack

pytestmark = pytest.mark.integration


def test_objects_can_be_put_got_and_listed_through_the_minio_client(s3_client: Any) -> None:
    bucket = f"stacktest-{uuid.uuid4().hex[:12]}"
    s3_client.make_bucket(bucket)
    assert s3_client.bucket_exists(bucket)
    payload = b"hello from the devstack\n" * 100
    for key in ("logs/run-1.txt", "logs/run-2.txt", "other.txt"):
        s3_client.put_object(bucket, key, io.BytesIO(payload), len(payload), content_type="text/plain")

    response = s3_client.get_object(bucket, "logs/run-1.txt")
    try:
        assert response.read() == payload
    finally:
        response.close()
        response.release_conn()

    listed = sorted(o.object_name for o in s3_client.list_objects(bucket, prefix="logs/", recursive=True))
    assert listed == ["logs/run-1.txt", "logs/run-2.txt"]
    assert bucket in {b.name for b in s3_client.list_buckets()}


def test_objects_survive_a_restart_of_the_object_store(stack: Stack, s3_client: Any) -> None:
    bucket = f"stacktest-{uuid.uuid4().hex[:12]}"
    s3_client.make_bucket(bucket)
    payload = b"a step log that must not be lost\n" * 1000
    s3_client.put_object(bucket, "ns/pipeline/1/0-0.log", io.BytesIO(payload), len(payload))
    before = stack.status_of("minio").pid

    stack.restart_component("minio")

    assert stack.status_of("minio").pid != before

    def read_back() -> bytes | None:
        try:
            response = s3_client.get_object(bucket, "ns/pipeline/1/0-0.log")
        except Exception:  # the client's pooled connection may still point at the old process
            return None
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    assert wait_for(read_back, 30, "the object after the restart") == payload
