"""The stack's command lines and bookkeeping, without starting any server."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import components
from devstack.components import BY_NAME, Context, temporal_binary
from devstack.pki import Pki
from devstack.stack import Stack
from devstack.state import Credentials
from devstack.testbin import Binaries


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    fake = Binaries(etcd=tmp_path / "bin" / "etcd", kube_apiserver=tmp_path / "bin" / "kube-apiserver")
    monkeypatch.setattr(components, "ensure_binaries", lambda log=print: fake)
    context = Context(dir=tmp_path, creds=Credentials("ak", "sk", "admin", "tok"), pki=Pki(tmp_path / "pki"))
    context.ports = {"etcd": {"main": 2379}, "kube-apiserver": {"main": 6443}}
    return context


def test_etcd_listens_only_on_loopback_with_fsync_off(ctx: Context) -> None:
    cmd = BY_NAME["etcd"].command(ctx, {"main": 2379})
    assert "--listen-client-urls=http://127.0.0.1:2379" in cmd
    assert "--advertise-client-urls=http://127.0.0.1:2379" in cmd
    assert "--listen-peer-urls=http://127.0.0.1:0" in cmd
    assert "--unsafe-no-fsync=true" in cmd


def test_the_apiserver_runs_rbac_with_service_account_signing_on_loopback(ctx: Context) -> None:
    cmd = BY_NAME["kube-apiserver"].command(ctx, {"main": 6443})
    for flag in (
        "--etcd-servers=http://127.0.0.1:2379",
        "--secure-port=6443",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        "--authorization-mode=RBAC",
        "--disable-admission-plugins=ServiceAccount",
        "--service-cluster-ip-range=10.0.0.0/16",
        "--allow-privileged=true",
        f"--service-account-signing-key-file={ctx.pki.sa_key}",
        f"--client-ca-file={ctx.pki.ca_cert}",
    ):
        assert flag in cmd


def test_temporal_persists_to_sqlite_and_registers_the_search_attributes(ctx: Context) -> None:
    ports = {"main": 7233, "ui": 8233, "http": 7243, "metrics": 9090}
    cmd = BY_NAME["temporal"].command(ctx, ports)
    assert cmd[0] == str(temporal_binary()) and Path(cmd[0]).is_file()
    joined = " ".join(cmd)
    assert f"--db-filename {ctx.dir / 'temporal.db'}" in joined
    assert "--ip 127.0.0.1" in joined and "--ui-port 8233" in joined
    assert "--ui-disable-news-fetch" in cmd
    assert "--search-attribute DevopsRun=Int" in joined
    for name in ("DevopsPipeline", "DevopsNamespace", "DevopsPhase", "DevopsBranch", "DevopsTrigger"):
        assert f"--search-attribute {name}=Keyword" in joined
    assert BY_NAME["temporal"].env(ctx, ports)["TEMPORAL_ADDRESS"] == "127.0.0.1:7233"


def test_s3_env_is_in_the_form_the_minio_client_wants(ctx: Context) -> None:
    env = BY_NAME["s3"].env(ctx, {"main": 9000})
    assert env["S3_ENDPOINT"] == "127.0.0.1:9000"
    assert env["S3_SECURE"] == "false"
    assert (env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]) == ("ak", "sk")


def test_status_of_a_stack_never_started_creates_nothing(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "nothing", log=lambda _: None)
    statuses = stack.status()
    assert {s.name for s in statuses} == set(BY_NAME)
    assert not any(s.healthy or s.running for s in statuses)
    assert not stack.is_up()
    assert not (tmp_path / "nothing").exists()
    assert stack.down() == [f"nothing to stop: {tmp_path / 'nothing'} does not exist"]


def test_devstack_dir_overrides_the_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVSTACK_DIR", str(tmp_path / "elsewhere"))
    assert Stack().dir == tmp_path / "elsewhere"
