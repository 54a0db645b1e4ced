"""The data-plane cluster ``dp1``: the same components as the management cluster, on its own state.

Command lines and bookkeeping only; tests/integration/test_stack_data_plane.py runs both clusters.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack import component
from devstack.cluster import DP1, MANAGEMENT
from devstack.component import ClusterComponent
from devstack.components import BY_NAME, COMPONENTS, DATA_PLANE_COMPONENTS, Context
from devstack.kwok import node_specs
from devstack.pki import ADMIN, CONTROLLER_MANAGER, Pki, ensure_pki
from devstack.stack import Stack
from devstack.state import Credentials, StackState, load_state, save_state
from devstack.testbin import TOOLS, Binaries

BASE_NAMES = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "jenkins"]
DP1_NAMES = [f"dp1-{name}" for name in BASE_NAMES]


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    """The management cluster's context with both clusters' ports known (as ``up`` makes it)."""
    fake = Binaries(**{tool.name.replace("-", "_"): tmp_path / "bin-cache" / tool.name for tool in TOOLS})
    monkeypatch.setattr(component, "ensure_binaries", lambda log=print: fake)
    context = Context(dir=tmp_path, creds=Credentials("ak", "sk", "admin", "tok"), pki=Pki(tmp_path / "pki"))
    context.ports = {
        "etcd": {"main": 2379},
        "kube-apiserver": {"main": 6443},
        "dp1-etcd": {"main": 12379},
        "dp1-kube-apiserver": {"main": 16443},
    }
    return context


def test_the_data_planes_components_and_its_jenkins_are_named_after_it_and_depend_within_it() -> None:
    components = DATA_PLANE_COMPONENTS[DP1]
    assert [c.name for c in components] == DP1_NAMES
    assert all(c.cluster == DP1 for c in components)
    assert {c.name: c.deps for c in components} == {
        "dp1-etcd": (),
        "dp1-kube-apiserver": ("dp1-etcd",),
        "dp1-kube-controller-manager": ("dp1-kube-apiserver",),
        "dp1-kube-scheduler": ("dp1-kube-apiserver",),
        "dp1-kwok": ("dp1-kube-apiserver",),
        "dp1-jenkins": ("dp1-kube-apiserver",),
    }
    # The default stack is what it was: nothing of dp1, and the same classes for its own cluster.
    assert not [c.name for c in COMPONENTS if c.name.startswith("dp1-")]
    for mine, theirs in zip(components, COMPONENTS, strict=False):
        if type(mine) is type(theirs):
            assert isinstance(theirs, ClusterComponent) and theirs.cluster == MANAGEMENT
    kinds = [type(c) for c in components]
    assert kinds == [type(c) for c in COMPONENTS if type(c) in kinds]  # the same classes, in the same order
    assert set(DP1_NAMES) <= set(BY_NAME)


def test_the_data_planes_etcd_and_apiserver_use_its_own_ports_folder_and_ca(ctx: Context) -> None:
    own = ctx.for_cluster(DP1)
    assert own.ports is ctx.ports  # one table of ports for the whole stack
    etcd = BY_NAME["dp1-etcd"].command(own, {"main": 12379})
    assert f"--data-dir={ctx.dir / 'dp1' / 'etcd-data'}" in etcd
    assert "--listen-client-urls=http://127.0.0.1:12379" in etcd
    apiserver = BY_NAME["dp1-kube-apiserver"].command(own, {"main": 16443})
    for flag in (
        "--etcd-servers=http://127.0.0.1:12379",
        "--secure-port=16443",
        f"--client-ca-file={ctx.dir / 'dp1' / 'pki' / 'ca.crt'}",
        f"--service-account-key-file={ctx.dir / 'dp1' / 'pki' / 'sa.pub'}",
        f"--cert-dir={ctx.dir / 'dp1' / 'apiserver-certs'}",
    ):
        assert flag in apiserver
    # The management cluster's commands are unchanged by the data plane's existence.
    assert f"--data-dir={ctx.dir / 'etcd-data'}" in BY_NAME["etcd"].command(ctx, {"main": 2379})
    assert "--etcd-servers=http://127.0.0.1:2379" in BY_NAME["kube-apiserver"].command(ctx, {"main": 6443})


def test_the_data_planes_controller_manager_talks_to_its_apiserver_with_its_own_certificate(
    ctx: Context,
) -> None:
    own = ctx.for_cluster(DP1)
    ensure_pki(own.pki.dir, DP1.ca_name)
    cmd = BY_NAME["dp1-kube-controller-manager"].command(own, {"main": 10257})
    assert f"--service-account-private-key-file={ctx.dir / 'dp1' / 'pki' / 'sa.key'}" in cmd
    assert "--cluster-name=dp1" in cmd
    kubeconfig = Path(next(f for f in cmd if f.startswith("--kubeconfig=")).split("=", 1)[1])
    assert kubeconfig.parent == ctx.dir / "dp1" / "kubeconfigs"
    config = yaml.safe_load(kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:16443"
    assert config["current-context"] == "dp1"
    issuer = subprocess.run(
        ["openssl", "x509", "-noout", "-issuer", "-in", str(own.pki.client_cert(CONTROLLER_MANAGER))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CN = devstack-dp1-ca" in issuer


def test_the_data_planes_nodes_carry_its_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVSTACK_KWOK_NODES", raising=False)
    assert [spec.name for spec in node_specs(DP1)] == ["dp1-node-1", "dp1-node-2", "dp1-node-3"]
    hostnames = [spec.manifest()["metadata"]["labels"]["kubernetes.io/hostname"] for spec in node_specs(DP1)]
    assert hostnames == ["dp1-node-1", "dp1-node-2", "dp1-node-3"]
    assert [spec.name for spec in node_specs()] == ["node-1", "node-2", "node-3"]


def test_the_data_plane_advertises_its_kubeconfig_next_to_the_first_and_its_nodes(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEVSTACK_KWOK_NODES", raising=False)
    own = ctx.for_cluster(DP1)
    assert BY_NAME["dp1-kube-apiserver"].env(own, {"main": 16443}) == {
        "DP1_KUBECONFIG": str(ctx.dir / "dp1.kubeconfig")
    }
    assert BY_NAME["dp1-kwok"].env(own, {"main": 1}) == {"DP1_NODES": "dp1-node-1,dp1-node-2,dp1-node-3"}
    assert BY_NAME["kube-apiserver"].env(ctx, {"main": 6443}) == {"KUBECONFIG": str(ctx.dir / "kubeconfig")}


def test_each_cluster_gets_its_own_ca(tmp_path: Path) -> None:
    main = ensure_pki(tmp_path / "pki", MANAGEMENT.ca_name)
    data_plane = ensure_pki(tmp_path / "dp1" / "pki", DP1.ca_name)
    assert main.ca_cert.read_bytes() != data_plane.ca_cert.read_bytes()
    refused = subprocess.run(
        ["openssl", "verify", "-CAfile", str(data_plane.ca_cert), str(main.client_cert(ADMIN))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0


def test_the_state_remembers_the_data_planes_and_reads_a_state_from_before_them(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, StackState(data_planes=["dp1"]))
    assert load_state(path).data_planes == ["dp1"]
    path.write_text(json.dumps({"started_by": "cli", "components": {}}))
    assert load_state(path).data_planes == []


def test_status_lists_the_data_plane_only_while_it_is_part_of_the_stack(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack", log=lambda _: None)
    stack.dir.mkdir()
    save_state(stack.state_path, StackState())
    assert [s.name for s in stack.status()] == [c.name for c in COMPONENTS]
    save_state(stack.state_path, StackState(data_planes=["dp1"]))
    statuses = stack.status()
    assert [s.name for s in statuses] == [*(c.name for c in COMPONENTS), *DP1_NAMES]
    assert [s.detail for s in statuses if s.name in DP1_NAMES] == ["never started"] * len(DP1_NAMES)
    assert not stack.is_up()
    stack.down()  # stops nothing (nothing runs) and takes the data plane out of the stack
    assert load_state(stack.state_path).data_planes == []
    assert [s.name for s in stack.status()] == [c.name for c in COMPONENTS]


def test_the_cli_offers_the_data_plane_flag_on_up() -> None:
    from devstack.__main__ import parser

    assert parser().parse_args(["up", "--data-plane"]).data_plane is True
    assert parser().parse_args(["up"]).data_plane is False
