"""``devopsctl webhook`` and the trigger columns of ``devopsctl get pipelines -o wide``, run by a user."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from webhook_client import NOT_RUN, post

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.messages import cron_schedule_id
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec, Triggers
from crds.pipeline_file import PipelineConfig
from worker.webhooks.events import Provider
from worker.webhooks.signatures import sign

pytestmark = pytest.mark.e2e

PUSH = (
    Path(__file__).resolve().parents[1] / "contract" / "payloads" / "github" / "push-branch.json"
).read_bytes()
CONFIG = {
    "stages": [{"name": "Test", "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": "true"}}]}]
}


def cli(command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_devopsctl_webhook_prints_a_url_and_secret_that_a_signed_delivery_to_the_running_receiver_accepts(
    kube: Kube, namespace: str, webhook_receiver: Any, cli_env: dict[str, str], devopsctl_command: list[str]
) -> None:
    kube.create(
        Pipeline(
            metadata=ObjectMeta(name="app", namespace=namespace, annotations=NOT_RUN),
            spec=PipelineSpec(
                repository_url="https://git.example/app.git", config=PipelineConfig.model_validate(CONFIG)
            ),
        )
    )
    env = {**cli_env, "CUBEPAAS_WEBHOOK_PORT": str(webhook_receiver.port), "CUBEPAAS_WEBHOOK_URL": ""}
    done = cli(devopsctl_command, env, "webhook", "app", "-n", namespace, "-o", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["url"] == f"http://127.0.0.1:{webhook_receiver.port}/hooks/github/{namespace}/app"
    assert doc["events"] == ["push", "pull_request"]
    secret = doc["secret"].encode()
    assert len(secret) >= 32

    path = doc["url"].split(str(webhook_receiver.port), 1)[1]
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        **sign(Provider.GITHUB, secret, PUSH),
    }
    status, answer = post(webhook_receiver.port, path, PUSH, headers)
    assert status == 201, answer
    assert kube.get(PipelineExecution, namespace, answer["run"]).spec.event == "push"

    text = cli(devopsctl_command, env, "webhook", "app", "-n", namespace)
    assert text.returncode == 0 and doc["secret"] not in text.stdout
    assert doc["url"] in text.stdout and "hidden" in text.stdout

    rotated = json.loads(
        cli(devopsctl_command, env, "webhook", "app", "-n", namespace, "--rotate", "-o", "json").stdout
    )
    assert rotated["secret"] != doc["secret"]
    headers["X-GitHub-Delivery"] = str(uuid.uuid4())
    assert post(webhook_receiver.port, path, PUSH, headers)[0] == 401  # the old secret no longer works


def test_devopsctl_webhook_of_an_unknown_pipeline_exits_3(
    namespace: str, cli_env: dict[str, str], devopsctl_command: list[str], crds_installed: None
) -> None:
    done = cli(devopsctl_command, cli_env, "webhook", "nope", "-n", namespace)
    assert done.returncode == 3
    assert 'pipeline "nope" not found' in done.stderr


def test_get_pipelines_wide_shows_the_triggers_and_the_next_cron_time(
    kube: Kube,
    namespace: str,
    cli_env: dict[str, str],
    devopsctl_command: list[str],
    worker_process: Any,
    wait_until: Any,
) -> None:
    kube.create(
        Pipeline(
            metadata=ObjectMeta(name="nightly", namespace=namespace),
            spec=PipelineSpec(
                repository_url="https://git.example/app.git",
                triggers=Triggers.model_validate(
                    {"webhookPullRequest": False, "cron": {"schedule": "0 3 * * *", "paused": False}}
                ),
            ),
        )
    )

    def listed() -> str | None:
        done = cli(devopsctl_command, cli_env, "get", "pipelines", "-n", namespace, "-o", "wide")
        row = next((line for line in done.stdout.splitlines() if line.startswith("nightly")), "")
        return row if " 03:00:00 UTC" in row else None

    try:
        row = wait_until(listed, 60, "the next cron time in get pipelines -o wide")
    finally:
        kube.delete_object(Pipeline.model_fields["api_version"].default, "Pipeline", "nightly", namespace)
    assert "push,tag,cron" in row

    def schedule_gone() -> bool:
        done = cli(devopsctl_command, cli_env, "get", "pipelines", "-n", namespace, "-o", "wide")
        return "nightly" not in done.stdout and not _schedule_exists(
            cli_env, cron_schedule_id(namespace, "nightly")
        )

    wait_until(schedule_gone, 30, "the session worker deleting the Schedule of the deleted Pipeline")


def _schedule_exists(env: dict[str, str], sid: str) -> bool:
    from devstack.components import temporal_binary

    done = subprocess.run(
        [
            str(temporal_binary()),
            "schedule",
            "describe",
            "-s",
            sid,
            "--address",
            env["TEMPORAL_ADDRESS"],
            "--namespace",
            env["TEMPORAL_NAMESPACE"],
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0
