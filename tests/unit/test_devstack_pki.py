"""The apiserver PKI made with openssl, and the admin kubeconfig."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devstack.pki import SCHEDULER, SERVING, ensure_pki, write_kubeconfig


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


def test_the_pki_is_made_once_and_chains_to_its_ca(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    before = {path: path.read_bytes() for path in pki.files()}
    assert ensure_pki(tmp_path / "pki") == pki
    assert {path: path.read_bytes() for path in pki.files()} == before  # reused, not regenerated

    for cert in (pki.serving_cert, pki.admin_cert):
        assert "OK" in _openssl("verify", "-CAfile", str(pki.ca_cert), str(cert))
    assert "O = system:masters" in _openssl("x509", "-in", str(pki.admin_cert), "-noout", "-subject")
    sans = _openssl("x509", "-in", str(pki.serving_cert), "-noout", "-ext", "subjectAltName")
    assert "IP Address:127.0.0.1" in sans and "DNS:localhost" in sans
    assert pki.ca_key.stat().st_mode & 0o777 == 0o600
    assert "PUBLIC KEY" in pki.sa_pub.read_text()


def test_the_kubeconfig_is_self_contained_and_loads_in_the_kubernetes_client(tmp_path: Path) -> None:
    from kubernetes import config

    pki = ensure_pki(tmp_path / "pki")
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(pki, "https://127.0.0.1:6443", kubeconfig)
    api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        assert api_client.configuration.host == "https://127.0.0.1:6443"
        assert Path(api_client.configuration.ssl_ca_cert).read_bytes() == pki.ca_cert.read_bytes()
    finally:
        api_client.close()


def test_a_missing_certificate_is_made_again_under_the_existing_ca(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    ca_before = pki.ca_cert.read_bytes()
    admin_before = pki.admin_cert.read_bytes()
    pki.client_cert(SCHEDULER).unlink()
    ensure_pki(tmp_path / "pki")
    assert pki.ca_cert.read_bytes() == ca_before and pki.admin_cert.read_bytes() == admin_before
    assert "OK" in _openssl("verify", "-CAfile", str(pki.ca_cert), str(pki.client_cert(SCHEDULER)))
    subject = _openssl("x509", "-in", str(pki.client_cert(SCHEDULER)), "-noout", "-subject")
    assert "CN = system:kube-scheduler" in subject


def test_the_serving_certificates_of_the_control_plane_chain_to_the_ca_and_name_loopback(
    tmp_path: Path,
) -> None:
    pki = ensure_pki(tmp_path / "pki")
    for stem in SERVING:
        assert "OK" in _openssl("verify", "-CAfile", str(pki.ca_cert), str(pki.cert(stem)))
        sans = _openssl("x509", "-in", str(pki.cert(stem)), "-noout", "-ext", "subjectAltName")
        assert "IP Address:127.0.0.1" in sans
