"""worker.settings: the variable names .devstack/env writes, parsing, secrets kept out of text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import worker.settings as settings_module
from crds.messages import TASK_QUEUE
from devstack.state import render_env
from worker.settings import WorkerSettings, load_env_file, parse_seconds
from worker.temporal import workflow_ui_url

pytestmark = pytest.mark.unit

#: Every variable the settings read (each field's alias).
ALL_NAMES = [str(field.validation_alias) for field in WorkerSettings.model_fields.values()]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_NAMES:
        monkeypatch.delenv(name, raising=False)


DEVSTACK_VALUES = {
    "DEVSTACK_DIR": "/work/.devstack",
    "JENKINS_TOKEN": "jt-'quoted' $ecret",
    "JENKINS_URL": "http://127.0.0.1:56345/",
    "JENKINS_USER": "admin",
    "KUBECONFIG": "/work/.devstack/kubeconfig",
    "S3_ACCESS_KEY": "AKIAEXAMPLE",
    "S3_ENDPOINT": "127.0.0.1:47483",
    "S3_REGION": "us-east-1",
    "S3_SECRET_KEY": "s3-secret-value",
    "S3_SECURE": "false",
    "TEMPORAL_ADDRESS": "127.0.0.1:32829",
    "TEMPORAL_NAMESPACE": "default",
    "TEMPORAL_UI_URL": "http://127.0.0.1:55959/",
}


def test_every_setting_has_its_documented_variable_name() -> None:
    assert {
        "TEMPORAL_ADDRESS",
        "KUBECONFIG",
        "S3_BUCKET",
        "JENKINS_TOKEN",
        "CUBEPAAS_WATCH_NAMESPACES",
    } <= set(ALL_NAMES)
    doc = settings_module.__doc__ or ""
    assert [name for name in ALL_NAMES if name not in doc] == []


def test_defaults_need_no_environment() -> None:
    settings = WorkerSettings()
    assert settings.temporal_address == "localhost:7233"
    assert settings.temporal_namespace == "default"
    assert settings.task_queue == TASK_QUEUE
    assert settings.watch_namespaces == []
    assert settings.kubeconfig is None
    assert (settings.s3_bucket, settings.s3_secure) == ("pipeline-logs", True)
    assert (settings.health_port, settings.metrics_port, settings.max_activities) == (8080, 9464, 100)
    assert settings.bridge_enabled


def test_the_devstack_env_names_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DEVSTACK_VALUES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CUBEPAAS_WATCH_NAMESPACES", " team-a, team-b ,,")
    monkeypatch.setenv("CUBEPAAS_SHUTDOWN_GRACE", "1m")
    monkeypatch.setenv("CUBEPAAS_HEALTH_PORT", "9000")
    monkeypatch.setenv("CUBEPAAS_BRIDGE", "false")

    settings = WorkerSettings()

    assert settings.temporal_address == "127.0.0.1:32829"
    assert settings.temporal_ui_url == "http://127.0.0.1:55959"  # trailing slash dropped
    assert settings.kubeconfig == "/work/.devstack/kubeconfig"
    assert settings.s3_endpoint == "127.0.0.1:47483"
    assert settings.s3_secure is False
    assert settings.s3_access_key.get_secret_value() == "AKIAEXAMPLE"
    assert settings.jenkins_token.get_secret_value() == "jt-'quoted' $ecret"
    assert settings.watch_namespaces == ["team-a", "team-b"]
    assert settings.shutdown_grace == 60.0
    assert settings.health_port == 9000
    assert settings.bridge_enabled is False


def test_secrets_never_appear_in_repr_or_the_log_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DEVSTACK_VALUES.items():
        monkeypatch.setenv(name, value)
    settings = WorkerSettings()
    for text in (repr(settings), str(settings), settings.safe_summary()):
        for secret in ("s3-secret-value", "AKIAEXAMPLE", "$ecret"):
            assert secret not in text


def test_an_empty_kubeconfig_means_in_cluster_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "")
    assert WorkerSettings().kubeconfig is None


def test_load_env_file_reads_what_devstack_writes(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text(render_env(DEVSTACK_VALUES) + "\n# a comment\nPLAIN=value\nnot a line\n")

    values = load_env_file(path)

    assert values == {**DEVSTACK_VALUES, "PLAIN": "value"}


def test_an_env_file_fills_only_what_the_environment_leaves_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env"
    path.write_text(render_env(DEVSTACK_VALUES))
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.prod:7233")

    settings = WorkerSettings.load(path, CUBEPAAS_TASK_QUEUE="override")

    assert settings.temporal_address == "temporal.prod:7233"
    assert settings.s3_endpoint == "127.0.0.1:47483"
    assert settings.s3_secret_key.get_secret_value() == "s3-secret-value"
    assert settings.task_queue == "override"


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("2", 2.0), ("2.5", 2.5), ("500ms", 0.5), ("3s", 3.0), ("1m", 60.0), ("1h", 3600.0)],
)
def test_durations_accept_plain_seconds_and_units(given: str, seconds: float) -> None:
    assert parse_seconds(given) == seconds
    assert WorkerSettings(CUBEPAAS_SHUTDOWN_GRACE=given).shutdown_grace == seconds


def test_invalid_values_are_rejected_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="CUBEPAAS_HEALTH_PORT"):
        WorkerSettings(CUBEPAAS_HEALTH_PORT="70000")
    with pytest.raises(ValueError, match="CUBEPAAS_SHUTDOWN_GRACE"):
        WorkerSettings(CUBEPAAS_SHUTDOWN_GRACE="soon")


def test_the_ui_link_quotes_the_workflow_id() -> None:
    url = workflow_ui_url("http://ui:8233/", "default", "pe/team-a/app-1/0f-uid", "run-1")
    assert url == "http://ui:8233/namespaces/default/workflows/pe%2Fteam-a%2Fapp-1%2F0f-uid/run-1/history"
    assert workflow_ui_url("", "default", "x", "y") == ""


def test_every_worker_setting_is_read_by_the_product_and_documented() -> None:
    root = Path(__file__).resolve().parents[2]
    sources = "\n".join(
        path.read_text()
        for folder in ("worker", "activities")
        for path in sorted((root / folder).rglob("*.py"))
        if path.name != "settings.py"
    )
    doc = settings_module.__doc__ or ""
    for name, field in WorkerSettings.model_fields.items():
        assert re.search(rf"\.{name}\b", sources), f"{name} ({field.validation_alias}) is read by nothing"
        assert str(field.validation_alias) in doc, f"{field.validation_alias} is not in the table"
