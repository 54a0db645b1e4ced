"""The local S3 server (moto) through the minio client."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest

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
