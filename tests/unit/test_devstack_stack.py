"""The stack's command lines and bookkeeping, without starting any server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devstack import component
from devstack.components import BY_NAME, COMPONENTS, Context, temporal_binary, tools_env
from devstack.kwok import node_specs
from devstack.pki import CONTROLLER_MANAGER, Pki, ensure_pki
from devstack.registry import registry_config
from devstack.stack import Stack
from devstack.state import Credentials
from devstack.testbin import TOOLS, Binaries


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    fake = Binaries(**{tool.name.replace("-", "_"): tmp_path / "bin-cache" / tool.name for tool in TOOLS})
    monkeypatch.setattr(component, "ensure_binaries", lambda log=print: fake)
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


def test_the_object_store_env_is_in_the_form_the_minio_client_wants(ctx: Context) -> None:
    env = BY_NAME["minio"].env(ctx, {"main": 9000})
    assert env["S3_ENDPOINT"] == "127.0.0.1:9000"
    assert env["S3_SECURE"] == "false"
    assert (env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]) == ("ak", "sk")


def test_status_of_a_stack_never_started_creates_nothing(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "nothing", log=lambda _: None)
    statuses = stack.status()
    assert {s.name for s in statuses} == {c.name for c in COMPONENTS}
    assert not any(s.healthy or s.running for s in statuses)
    assert not stack.is_up()
    assert not (tmp_path / "nothing").exists()
    assert stack.down() == [f"nothing to stop: {tmp_path / 'nothing'} does not exist"]


def test_devstack_dir_overrides_the_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVSTACK_DIR", str(tmp_path / "elsewhere"))
    assert Stack().dir == tmp_path / "elsewhere"


def test_the_apiserver_keeps_the_service_account_admission_plugin(ctx: Context) -> None:
    cmd = BY_NAME["kube-apiserver"].command(ctx, {"main": 6443})
    assert not [flag for flag in cmd if flag.startswith("--disable-admission-plugins")]


def test_the_controller_manager_runs_every_default_controller_with_its_own_identity(
    ctx: Context, tmp_path: Path
) -> None:
    import yaml

    ensure_pki(ctx.pki.dir)
    cmd = BY_NAME["kube-controller-manager"].command(ctx, {"main": 10257})
    for flag in (
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={ctx.pki.sa_key}",
        "--bind-address=127.0.0.1",
        "--secure-port=10257",
        "--leader-elect=false",
    ):
        assert flag in cmd
    kubeconfig = Path(next(f for f in cmd if f.startswith("--kubeconfig=")).split("=", 1)[1])
    config = yaml.safe_load(kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert config["users"][0]["name"] == "system:kube-controller-manager"
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-in", str(ctx.pki.client_cert(CONTROLLER_MANAGER))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CN = system:kube-controller-manager" in subject and "system:masters" not in subject


def test_the_scheduler_authenticates_as_system_kube_scheduler(ctx: Context) -> None:
    import yaml

    ensure_pki(ctx.pki.dir)
    cmd = BY_NAME["kube-scheduler"].command(ctx, {"main": 10259})
    assert "--secure-port=10259" in cmd and "--bind-address=127.0.0.1" in cmd
    kubeconfig = Path(next(f for f in cmd if f.startswith("--kubeconfig=")).split("=", 1)[1])
    assert yaml.safe_load(kubeconfig.read_text())["users"][0]["name"] == "system:kube-scheduler"


def test_kwok_manages_only_annotated_nodes_with_the_stacks_stages(ctx: Context) -> None:
    import yaml

    ensure_pki(ctx.pki.dir)
    cmd = BY_NAME["kwok"].command(ctx, {"main": 10247})
    assert "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" in cmd
    assert "--server-address=127.0.0.1:10247" in cmd
    stages = Path(next(f for f in cmd if f.startswith("--config=")).split("=", 1)[1])
    names = {doc["metadata"]["name"] for doc in yaml.safe_load_all(stages.read_text())}
    assert {"node-ready", "node-heartbeat", "pod-running", "pod-succeeded", "pod-deleted"} <= names
    assert {"pvc-provisioned", "pv-bound", "pv-deleted"} <= names


def test_three_nodes_by_default_each_with_its_hostname_a_zone_and_capacity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DEVSTACK_KWOK_NODES", raising=False)
    nodes = [spec.manifest() for spec in node_specs()]
    assert [n["metadata"]["name"] for n in nodes] == ["node-1", "node-2", "node-3"]
    for node in nodes:
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == node["metadata"]["name"]
        assert labels["topology.kubernetes.io/zone"].startswith("zone-")
        assert node["status"]["capacity"]["cpu"] == "8"
    monkeypatch.setenv("DEVSTACK_KWOK_NODES", "none")
    with pytest.raises(ValueError, match="DEVSTACK_KWOK_NODES"):
        node_specs()


def test_minio_keeps_its_data_in_the_state_folder_on_loopback(ctx: Context) -> None:
    cmd = BY_NAME["minio"].command(ctx, {"main": 9000})
    assert cmd[1:3] == ["server", str(ctx.dir / "minio-data")]
    assert "127.0.0.1:9000" in cmd
    env = BY_NAME["minio"].child_env(ctx) or {}
    assert (env["MINIO_ROOT_USER"], env["MINIO_ROOT_PASSWORD"]) == ("ak", "sk")


def test_the_registry_notifies_the_webhook_port_and_advertises_its_url(ctx: Context) -> None:
    ports = {"main": 5000, "webhook": 5001}
    config = registry_config(ctx, ports)
    assert config["http"]["addr"] == "127.0.0.1:5000"
    assert config["notifications"]["endpoints"][0]["url"] == "http://127.0.0.1:5001/hooks/registry"
    env = BY_NAME["registry"].env(ctx, ports)
    assert env["REGISTRY_URL"] == "http://127.0.0.1:5000"
    assert env["CUBEPAAS_WEBHOOK_PORT"] == "5001"
    assert BY_NAME["registry"].target_ports == ("webhook",)


def test_build_steps_get_kubectl_and_helm_by_path_and_in_one_folder(ctx: Context) -> None:
    env = tools_env(ctx)
    assert env["DEVSTACK_BIN"] == str(ctx.dir / "bin")
    for name, variable in (("kubectl", "KUBECTL"), ("helm", "HELM")):
        link = ctx.dir / "bin" / name
        assert env[variable] == str(link)
        assert link.readlink() == ctx.dir / "bin-cache" / name
    assert tools_env(ctx) == env  # idempotent: the links are kept


def test_gitea_is_configured_for_loopback_sqlite_and_webhooks_to_loopback(ctx: Context) -> None:
    import configparser

    from devstack.gitea import app_ini, ensure_secrets

    made = ensure_secrets(ctx.dir / "gitea")
    assert ensure_secrets(ctx.dir / "gitea") == made  # made once, kept
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string("[root]\n" + app_ini(ctx, 3000, made, Path("/cache/gitea-v1.27.3")))
    ini = {section: dict(parser[section]) for section in parser.sections()}
    assert ini["server"]["HTTP_ADDR"] == "127.0.0.1" and ini["server"]["HTTP_PORT"] == "3000"
    assert ini["server"]["ROOT_URL"] == ini["server"]["LOCAL_ROOT_URL"] == "http://127.0.0.1:3000/"
    assert ini["server"]["OFFLINE_MODE"] == "true" and ini["server"]["DISABLE_SSH"] == "true"
    assert ini["server"]["STATIC_ROOT_PATH"] == "/cache/gitea-v1.27.3"
    assert ini["database"]["DB_TYPE"] == "sqlite3"
    assert ini["database"]["PATH"] == str(ctx.dir / "gitea" / "gitea.db")
    assert ini["repository"]["ROOT"] == str(ctx.dir / "gitea" / "repositories")
    assert ini["security"]["INSTALL_LOCK"] == "true" and ini["security"]["PASSWORD_COMPLEXITY"] == "off"
    assert ini["security"]["SECRET_KEY"] == made.secret_key
    assert ini["security"]["ALLOWED_HOST_LIST"] == "loopback,private"
    assert ini["webhook"]["SKIP_TLS_VERIFY"] == "true"
    assert ini["oauth2"] == {"ENABLED": "true", "JWT_SECRET": made.jwt_secret}
    assert len(made.jwt_secret) == 43  # 32 bytes, unpadded URL-safe base64: what Gitea accepts
    assert ini["mailer"]["ENABLED"] == "false" and ini["service"]["DISABLE_REGISTRATION"] == "true"
    assert ini["cron.update_checker"]["ENABLED"] == "false"


def test_gitea_runs_web_on_the_state_folders_config_and_advertises_the_admin(ctx: Context) -> None:
    import json

    gitea = BY_NAME["gitea"]
    assert gitea.deps == () and gitea.port_names == ("main",)
    cmd = gitea.command(ctx, {"main": 3000})
    assert cmd[0] == str(ctx.dir / "bin-cache" / "gitea") and cmd[1] == "web"
    assert cmd[cmd.index("--config") + 1] == str(ctx.dir / "gitea" / "app.ini")
    assert gitea.env(ctx, {"main": 3000}) == {"GITEA_URL": "http://127.0.0.1:3000"}  # before the first start
    (ctx.dir / "gitea").mkdir()
    admin = {"user": "devstack-admin", "password": "pw", "token": "tok", "hooks_binary": "/x/gitea"}
    (ctx.dir / "gitea" / "admin.json").write_text(json.dumps(admin))
    assert gitea.env(ctx, {"main": 3000}) == {
        "GITEA_URL": "http://127.0.0.1:3000",
        "GITEA_ADMIN_USER": "devstack-admin",
        "GITEA_ADMIN_PASSWORD": "pw",
        "GITEA_ADMIN_TOKEN": "tok",
    }
