"""Bad input and redeliveries against the real receiver process: each gets its status, no run, no crash.

A redelivery, sent again later, after a receiver restart and ten times at once, creates exactly one run
and every answer names it: the de-duplication lives in the cluster (Pipeline status + a label on the run).
"""

from __future__ import annotations

import json
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from webhook_client import NOT_RUN, get, post

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec
from crds.pipeline_file import PipelineConfig
from worker.webhooks.events import Provider
from worker.webhooks.secrets import ensure_webhook_secret
from worker.webhooks.signatures import sign

pytestmark = pytest.mark.integration

PUSH = (Path(__file__).resolve().parent / "payloads" / "github" / "push-branch.json").read_bytes()
CONFIG = {
    "stages": [{"name": "Test", "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": "true"}}]}]
}


@pytest.fixture
def target(kube: Kube, namespace: str) -> tuple[Pipeline, bytes, str]:
    pipeline = kube.create(
        Pipeline(
            metadata=ObjectMeta(name="app", namespace=namespace, annotations=NOT_RUN),
            spec=PipelineSpec(
                repository_url="https://git.example.com/app.git", config=PipelineConfig.model_validate(CONFIG)
            ),
        )
    )
    return pipeline, ensure_webhook_secret(kube, pipeline).encode(), f"/hooks/github/{namespace}/app"


def runs(kube: Kube, namespace: str) -> list[str]:
    return sorted(r.name for r in kube.list_resources(PipelineExecution, namespace))


def github_headers(secret: bytes, body: bytes, delivery: str | None = None) -> dict[str, str]:
    return {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        **sign(Provider.GITHUB, secret, body),
    }


def test_a_wrong_signature_is_401_and_starts_nothing(webhook_receiver, kube, target) -> None:
    pipeline, _, path = target
    status, answer = post(webhook_receiver.port, path, PUSH, github_headers(b"not-the-secret", PUSH))
    assert (status, answer["outcome"]) == (401, "unauthorized")
    assert runs(kube, pipeline.namespace) == []


def test_a_signature_of_another_body_is_401(webhook_receiver, kube, target) -> None:
    pipeline, secret, path = target
    headers = github_headers(secret, b'{"ref": "refs/heads/other"}')
    status, _ = post(webhook_receiver.port, path, PUSH, headers)
    assert status == 401
    assert runs(kube, pipeline.namespace) == []


def test_a_missing_signature_header_is_401(webhook_receiver, kube, target) -> None:
    pipeline, _, path = target
    status, _ = post(
        webhook_receiver.port, path, PUSH, {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}
    )
    assert status == 401
    assert runs(kube, pipeline.namespace) == []


def test_an_sha1_only_signature_is_not_enough(webhook_receiver, kube, target) -> None:
    import hashlib
    import hmac

    pipeline, secret, path = target
    sha1 = "sha1=" + hmac.new(secret, PUSH, hashlib.sha1).hexdigest()
    status, _ = post(webhook_receiver.port, path, PUSH, {"X-GitHub-Event": "push", "X-Hub-Signature": sha1})
    assert status == 401
    assert runs(kube, pipeline.namespace) == []


def test_an_unknown_pipeline_answers_exactly_like_a_bad_signature(webhook_receiver, kube, target) -> None:
    pipeline, secret, path = target
    bad_signature = post(webhook_receiver.port, path, PUSH, github_headers(b"wrong", PUSH))
    unknown_pipeline = post(
        webhook_receiver.port, f"/hooks/github/{pipeline.namespace}/nope", PUSH, github_headers(secret, PUSH)
    )
    unknown_namespace = post(
        webhook_receiver.port, "/hooks/github/no-such-ns/app", PUSH, github_headers(secret, PUSH)
    )
    assert bad_signature == unknown_pipeline == unknown_namespace
    assert bad_signature[0] == 401


def test_a_gitlab_token_that_is_only_a_prefix_of_the_secret_is_refused(
    webhook_receiver, kube, target
) -> None:
    pipeline, secret, _ = target
    body = json.dumps({"object_kind": "push"}).encode()
    status, _ = post(
        webhook_receiver.port,
        f"/hooks/gitlab/{pipeline.namespace}/app",
        body,
        {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret[:-1].decode()},
    )
    assert status == 401


def test_a_signed_body_that_is_not_json_is_400(webhook_receiver, kube, target) -> None:
    pipeline, secret, path = target
    body = b'{"ref": "refs/heads/main", '
    status, answer = post(webhook_receiver.port, path, body, github_headers(secret, body))
    assert (status, answer["outcome"]) == (400, "malformed")
    assert runs(kube, pipeline.namespace) == []


def test_an_unsigned_body_that_is_not_json_is_401_not_400(webhook_receiver, target) -> None:
    _, _, path = target
    status, _ = post(webhook_receiver.port, path, b"not json", {"X-GitHub-Event": "push"})
    assert status == 401


def test_a_30_mb_body_is_413_and_the_receiver_stays_up(webhook_receiver, kube, target) -> None:
    pipeline, secret, path = target
    body = b'{"pad": "' + b"x" * (30 * 1024 * 1024) + b'"}'
    status, answer = post(webhook_receiver.port, path, body, github_headers(secret, body))
    assert (status, answer["outcome"]) == (413, "too_large")
    assert runs(kube, pipeline.namespace) == []
    assert get(webhook_receiver.port, "/healthz")[0] == 200


def test_a_request_without_content_length_is_411(webhook_receiver, target) -> None:
    _, _, path = target
    with socket.create_connection(("127.0.0.1", webhook_receiver.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"2\r\n{}\r\n0\r\n\r\n"
        )
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 411")


def test_a_redelivery_creates_no_second_run_and_names_the_first(webhook_receiver, kube, target) -> None:
    pipeline, secret, path = target
    headers = github_headers(secret, PUSH, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    first = post(webhook_receiver.port, path, PUSH, headers)
    again = post(webhook_receiver.port, path, PUSH, headers)
    assert first[0] == 201 and first[1]["outcome"] == "created"
    assert again[0] == 200 and again[1]["outcome"] == "duplicate"
    assert again[1]["run"] == first[1]["run"]
    assert runs(kube, pipeline.namespace) == [first[1]["run"]]


def test_a_new_delivery_of_the_same_push_is_a_new_run(webhook_receiver, kube, target) -> None:
    pipeline, secret, path = target
    first = post(webhook_receiver.port, path, PUSH, github_headers(secret, PUSH))
    second = post(webhook_receiver.port, path, PUSH, github_headers(secret, PUSH))
    assert first[1]["run"] != second[1]["run"]
    assert len(runs(kube, pipeline.namespace)) == 2


def test_ten_concurrent_redeliveries_to_two_receiver_replicas_create_exactly_one_run(
    webhook_receiver, stack_env: dict[str, str], kube, target, tmp_path: Path
) -> None:
    from webhook_client import ReceiverProcess

    pipeline, secret, path = target
    headers = github_headers(secret, PUSH, delivery=str(uuid.uuid4()))
    replica = ReceiverProcess(dict(stack_env), tmp_path / "replica.log").start()
    try:
        ports = [webhook_receiver.port, replica.port] * 5
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda port: post(port, path, PUSH, headers), ports))
    finally:
        replica.stop()
    created = [a for a in answers if a[1]["outcome"] == "created"]
    assert len(created) == 1, answers
    assert {a[1]["run"] for a in answers} == {created[0][1]["run"]}
    assert {a[0] for a in answers} <= {200, 201}
    assert runs(kube, pipeline.namespace) == [created[0][1]["run"]]


def test_a_redelivery_after_a_receiver_restart_names_the_run_of_the_first_delivery(
    stack_env: dict[str, str], kube, target, tmp_path: Path
) -> None:
    from webhook_client import ReceiverProcess

    pipeline, secret, path = target
    headers = github_headers(secret, PUSH, delivery=str(uuid.uuid4()))
    first_receiver = ReceiverProcess(dict(stack_env), tmp_path / "first.log").start()
    first = post(first_receiver.port, path, PUSH, headers)
    assert first_receiver.stop() == 0  # SIGTERM drains and exits 0
    second_receiver = ReceiverProcess(dict(stack_env), tmp_path / "second.log").start()
    try:
        again = post(second_receiver.port, path, PUSH, headers)
    finally:
        second_receiver.stop()
    assert (first[1]["outcome"], again[1]["outcome"]) == ("created", "duplicate")
    assert again[1]["run"] == first[1]["run"]
    assert runs(kube, pipeline.namespace) == [first[1]["run"]]


def test_deliveries_are_counted_by_provider_event_and_outcome(webhook_receiver, target) -> None:
    _, secret, path = target
    post(webhook_receiver.port, path, PUSH, github_headers(secret, PUSH))
    post(webhook_receiver.port, path, PUSH, github_headers(b"wrong", PUSH))
    status, text = get(webhook_receiver.port, "/metrics")
    assert status == 200
    assert 'cubepaas_webhook_deliveries_total{event="push",outcome="created",provider="github"}' in text
    # An unverified request's event header is not a label (it could be anything).
    assert 'cubepaas_webhook_deliveries_total{event="-",outcome="unauthorized",provider="github"}' in text


def test_the_log_holds_neither_the_secret_nor_the_body(webhook_receiver, target) -> None:
    _, secret, path = target
    marker = uuid.uuid4().hex
    body = json.dumps({**json.loads(PUSH), "marker": marker}).encode()
    post(webhook_receiver.port, path, body, github_headers(secret, body))
    post(webhook_receiver.port, path, b"{" + marker.encode(), github_headers(secret, b"{" + marker.encode()))
    log = webhook_receiver.log_path.read_text(errors="replace")
    assert secret.decode() not in log
    assert marker not in log


def test_a_client_that_stops_sending_is_disconnected_while_others_are_served(
    stack_env: dict[str, str], kube, target, tmp_path: Path
) -> None:
    from webhook_client import ReceiverProcess

    pipeline, secret, path = target
    receiver = ReceiverProcess({**stack_env, "CUBEPAAS_WEBHOOK_TIMEOUT": "1s"}, tmp_path / "r.log").start()
    try:
        stalled = []
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=30)
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode())
            stalled.append(sock)
        status, answer = post(receiver.port, path, PUSH, github_headers(secret, PUSH))
        assert status == 201, answer
        for sock in stalled:
            with sock:
                assert sock.recv(4096) == b""  # closed by the receiver, not by us
    finally:
        assert receiver.stop() == 0
    assert runs(kube, pipeline.namespace) == [answer["run"]]
