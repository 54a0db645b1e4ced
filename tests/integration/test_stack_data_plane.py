"""`up --data-plane`: a second cluster, dp1, with its own control plane, kwok Nodes and CA.

One private stack (its own state folder) serves the module: it is brought up once with both clusters,
and the last test stops it with `python -m devstack down` and looks for anything left behind. Every
status asserted on is written by dp1's controller-manager, scheduler or kwok, never by this test.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from devstack_cli import group_members, ports_still_bound, processes_mentioning, run_devstack
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from devstack.cluster import DP1, MANAGEMENT, Cluster
from devstack.component import ClusterComponent, Unhealthy, http_get
from devstack.components import COMPONENTS, DATA_PLANE_COMPONENTS
from devstack.kwok import node_specs
from devstack.pki import ADMIN
from devstack.proc import is_running, wait_for
from devstack.stack import Stack

pytestmark = pytest.mark.integration

DP1_NAMES = [c.name for c in DATA_PLANE_COMPONENTS[DP1]]
MAIN_NAMES = [c.name for c in COMPONENTS]


@pytest.fixture(scope="module")
def two_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("two-clusters") / "devstack")
    try:
        stack.up(data_plane=True)
        yield stack
    finally:
        stack.down()


def _api_client(kubeconfig: Path) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def dp1_client(two_clusters: Stack) -> Iterator[k8s.ApiClient]:
    api = _api_client(Path(two_clusters.env()["DP1_KUBECONFIG"]))
    yield api
    api.close()


@pytest.fixture(scope="module")
def main_client(two_clusters: Stack) -> Iterator[k8s.ApiClient]:
    api = _api_client(Path(two_clusters.env()["KUBECONFIG"]))
    yield api
    api.close()


def _ssl_context(stack: Stack, trusted: Cluster, client_of: Cluster) -> ssl.SSLContext:
    """Trusts ``trusted``'s CA and presents the admin certificate of ``client_of``."""
    context = ssl.create_default_context(cafile=str(stack.pki_of(trusted).ca_cert))
    client_pki = stack.pki_of(client_of)
    context.load_cert_chain(str(client_pki.client_cert(ADMIN)), str(client_pki.client_key(ADMIN)))
    return context


def _apiserver_url(stack: Stack, cluster: Cluster) -> str:
    return stack.status_of(cluster.component("kube-apiserver")).url


def _available(apps: k8s.AppsV1Api, namespace: str, name: str, replicas: int) -> Any:
    deployment = apps.read_namespaced_deployment(name, namespace)
    conditions = (deployment.status.conditions or []) if deployment.status else []
    available = any(c.type == "Available" and c.status == "True" for c in conditions)
    return deployment if available and deployment.status.ready_replicas == replicas else None


def test_a_deployment_applied_to_dp1_becomes_available_there_and_does_not_exist_in_the_management_cluster(
    dp1_client: k8s.ApiClient, main_client: k8s.ApiClient
) -> None:
    namespace = f"dp1-apps-{uuid.uuid4().hex[:6]}"
    core, apps = k8s.CoreV1Api(dp1_client), k8s.AppsV1Api(dp1_client)
    core.create_namespace({"metadata": {"name": namespace}})
    labels = {"app": "on-dp1"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
                },
            },
        },
    )

    wait_for(lambda: _available(apps, namespace, "web", 2), 90, "Deployment web to become Available in dp1")

    # dp1's controller-manager made the ReplicaSet and Pods, dp1's scheduler bound them to dp1's
    # own kwok Nodes (which exist in no other cluster), and dp1's kwok reported them Running.
    replica_sets = apps.list_namespaced_replica_set(namespace).items
    assert [rs.metadata.owner_references[0].name for rs in replica_sets] == ["web"]
    pods = core.list_namespaced_pod(namespace, label_selector="app=on-dp1").items
    dp1_nodes = {spec.name for spec in node_specs(DP1)}
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec.node_name in dp1_nodes
        assert pod.status.phase == "Running" and pod.status.pod_ip
    assert {node.metadata.name for node in core.list_node().items} == dp1_nodes

    main_core, main_apps = k8s.CoreV1Api(main_client), k8s.AppsV1Api(main_client)
    for read in (
        lambda: main_apps.read_namespaced_deployment("web", namespace),
        lambda: main_core.read_namespace(namespace),
    ):
        with pytest.raises(ApiException) as missing:
            read()
        assert missing.value.status == 404
    assert not dp1_nodes & {node.metadata.name for node in main_core.list_node().items}


def test_each_cluster_has_its_own_ca_and_refuses_the_other_clusters_admin_certificate(
    two_clusters: Stack,
) -> None:
    main_ca, dp1_ca = two_clusters.pki_of(MANAGEMENT).ca_cert, two_clusters.pki_of(DP1).ca_cert
    assert main_ca.read_bytes() != dp1_ca.read_bytes()
    for server, other in ((DP1, MANAGEMENT), (MANAGEMENT, DP1)):
        url = f"{_apiserver_url(two_clusters, server)}/api/v1/namespaces"
        own = _ssl_context(two_clusters, trusted=server, client_of=server)
        assert http_get(url, context=own)[0] == 200
        # The other cluster's admin certificate is not signed by this apiserver's CA: no identity.
        assert http_get(url, context=_ssl_context(two_clusters, trusted=server, client_of=other))[0] == 401
        # Nor does the other cluster's CA vouch for this apiserver's serving certificate.
        with pytest.raises(Unhealthy, match="CERTIFICATE_VERIFY_FAILED"):
            http_get(url, context=_ssl_context(two_clusters, trusted=other, client_of=server))


def test_status_lists_both_clusters_healthy_and_the_env_names_dp1s_kubeconfig(two_clusters: Stack) -> None:
    status = run_devstack(two_clusters.dir, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    health = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines() if line.strip()}
    assert list(health) == [*MAIN_NAMES, *DP1_NAMES]
    clusters = [c.name for c in (*COMPONENTS, *DATA_PLANE_COMPONENTS[DP1]) if isinstance(c, ClusterComponent)]
    assert len(clusters) == 12  # five Kubernetes components and a jenkins-lite for each cluster
    assert {name: health[name] for name in clusters} == dict.fromkeys(clusters, "healthy")

    env = two_clusters.env()
    assert env["DP1_KUBECONFIG"] == str(two_clusters.kubeconfig_of(DP1))
    assert two_clusters.kubeconfig_of(DP1) == two_clusters.dir / "dp1.kubeconfig"  # next to the first
    assert env["KUBECONFIG"] == str(two_clusters.dir / "kubeconfig")
    assert env["DP1_NODES"] == ",".join(spec.name for spec in node_specs(DP1))
    config = yaml.safe_load(Path(env["DP1_KUBECONFIG"]).read_text())
    assert config["current-context"] == "dp1"
    assert config["clusters"][0]["cluster"]["server"] == _apiserver_url(two_clusters, DP1)
    assert (two_clusters.dir / "dp1" / "etcd-data").is_dir()


def test_a_later_up_without_the_flag_keeps_the_data_plane_running(two_clusters: Stack) -> None:
    before = json.loads(two_clusters.state_path.read_text())
    again = run_devstack(two_clusters.dir, "up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already up" in again.stdout
    assert json.loads(two_clusters.state_path.read_text()) == before  # nothing stopped or restarted
    assert before["data_planes"] == ["dp1"]
    assert "DP1_KUBECONFIG" in two_clusters.env()


def test_down_stops_every_process_and_frees_every_port_of_both_clusters(two_clusters: Stack) -> None:
    state = json.loads(two_clusters.state_path.read_text())["components"]
    assert set(DP1_NAMES) <= set(state)
    started = {name: (entry["pid"], entry["start_time"]) for name, entry in state.items()}
    assert all(is_running(pid, start) for pid, start in started.values()), started

    down = run_devstack(two_clusters.dir, "down")

    assert down.returncode == 0, down.stdout + down.stderr
    stopped = {line.split()[0] for line in down.stdout.splitlines() if line.strip()}
    assert set(DP1_NAMES) | {"etcd", "kube-apiserver"} <= stopped
    assert not [name for name, (pid, start) in started.items() if is_running(pid, start)]
    assert not [pid for pid, _ in started.values() if group_members(pid)]
    assert processes_mentioning(str(two_clusters.dir)) == []
    assert ports_still_bound(state) == []
    assert json.loads(two_clusters.state_path.read_text())["data_planes"] == []
    assert [s.name for s in two_clusters.status()] == MAIN_NAMES  # dp1 is no longer part of the stack
