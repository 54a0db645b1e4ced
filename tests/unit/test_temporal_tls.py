"""worker.temporal.tls_config: TLS, mTLS client certificates and API keys read from the settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.client import TLSConfig

from worker.settings import WorkerSettings
from worker.temporal import tls_config

pytestmark = pytest.mark.unit

TLS_NAMES = (
    "TEMPORAL_TLS",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS_CERT",
    "TEMPORAL_TLS_KEY",
    "TEMPORAL_TLS_CA",
    "TEMPORAL_TLS_SERVER_NAME",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TLS_NAMES:
        monkeypatch.delenv(name, raising=False)


def pem_files(directory: Path) -> dict[str, Path]:
    files = {
        "cert": directory / "tls.crt",
        "key": directory / "tls.key",
        "ca": directory / "ca.crt",
    }
    for name, path in files.items():
        path.write_bytes(f"-----BEGIN {name.upper()}-----\n{name}\n-----END {name.upper()}-----\n".encode())
    return files


def test_plaintext_is_the_default() -> None:
    assert tls_config(WorkerSettings()) is False


def test_tls_alone_uses_the_system_roots() -> None:
    assert tls_config(WorkerSettings(TEMPORAL_TLS="true")) is True


def test_an_api_key_never_travels_in_plaintext() -> None:
    assert tls_config(WorkerSettings(TEMPORAL_API_KEY="k-123")) is True


def test_a_client_certificate_makes_an_mtls_config_from_the_mounted_files(tmp_path: Path) -> None:
    files = pem_files(tmp_path)
    settings = WorkerSettings(
        TEMPORAL_TLS_CERT=str(files["cert"]),
        TEMPORAL_TLS_KEY=str(files["key"]),
        TEMPORAL_TLS_CA=str(files["ca"]),
        TEMPORAL_TLS_SERVER_NAME="temporal.example.internal",
    )
    config = tls_config(settings)
    assert isinstance(config, TLSConfig)
    assert config.client_cert == files["cert"].read_bytes()
    assert config.client_private_key == files["key"].read_bytes()
    assert config.server_root_ca_cert == files["ca"].read_bytes()
    assert config.domain == "temporal.example.internal"


def test_a_private_ca_alone_verifies_the_server_without_a_client_certificate(tmp_path: Path) -> None:
    files = pem_files(tmp_path)
    config = tls_config(WorkerSettings(TEMPORAL_TLS="true", TEMPORAL_TLS_CA=str(files["ca"])))
    assert isinstance(config, TLSConfig)
    assert config.server_root_ca_cert == files["ca"].read_bytes()
    assert config.client_cert is None


def test_the_settings_read_the_tls_variables_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = pem_files(tmp_path)
    monkeypatch.setenv("TEMPORAL_TLS_CERT", str(files["cert"]))
    monkeypatch.setenv("TEMPORAL_TLS_KEY", str(files["key"]))
    settings = WorkerSettings()
    assert settings.temporal_tls_cert == files["cert"]
    assert settings.temporal_tls_key == files["key"]


def test_a_client_certificate_without_its_key_is_refused_with_both_names(tmp_path: Path) -> None:
    files = pem_files(tmp_path)
    with pytest.raises(ValidationError, match="TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY"):
        WorkerSettings(TEMPORAL_TLS_CERT=str(files["cert"]))


def test_empty_tls_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TLS_NAMES[1:]:
        monkeypatch.setenv(name, "")
    assert tls_config(WorkerSettings()) is False
