"""The data-plane clients: built from a project's kubeconfig Secret, refused when unsafe or malformed,
cached while the Secret is unchanged, and a data plane's faults named by its cluster."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from activities.dataplane import DataPlanes, cluster_name, parse_kubeconfig
from activities.errors import ConfigError, DataPlaneUnavailableError, KubeForbiddenError, KubeNotFoundError
from activities.kube import Kube
from crds.meta import SecretReference
from crds.reasons import Reason

pytestmark = pytest.mark.unit


def kubeconfig(server: str = "https://127.0.0.1:6443", **user: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "dp1", "cluster": {"server": server}}],
            "users": [{"name": "robot", "user": user or {"token": "t0ken"}}],
            "contexts": [{"name": "ctx", "context": {"cluster": "dp1", "user": "robot"}}],
            "current-context": "ctx",
        }
    )


class Secrets:
    """The management cluster's Secrets, as ``Kube.read_secret`` answers."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], dict[str, str]] = {}

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        if (namespace, name) not in self.data:
            raise KubeNotFoundError(f"read Secret {namespace}/{name}: HTTP 404")
        return self.data[(namespace, name)]


class Built:
    def __init__(self) -> None:
        self.configs: list[Mapping[str, Any]] = []

    def __call__(self, config: Mapping[str, Any]) -> Kube:
        self.configs.append(config)
        return Kube(k8s.ApiClient(k8s.Configuration()), plane=cluster_name(config))


def planes(secrets: Secrets, built: Built) -> DataPlanes:
    return DataPlanes(secrets, built)  # type: ignore[arg-type]  # only read_secret is asked of it


REF = SecretReference(name="dp1-kubeconfig")


def test_a_project_without_a_data_plane_gets_the_management_client() -> None:
    secrets, built = Secrets(), Built()
    dp = planes(secrets, built)
    assert dp.kube("proj", None) is dp.management and not built.configs


def test_the_client_is_built_once_while_the_secret_is_unchanged_and_again_when_it_changes() -> None:
    secrets, built = Secrets(), Built()
    secrets.data[("proj", "dp1-kubeconfig")] = {"kubeconfig": kubeconfig()}
    dp = planes(secrets, built)
    first = dp.kube("proj", REF)
    assert dp.kube("proj", REF) is first and len(built.configs) == 1
    assert first.plane == "dp1"
    secrets.data[("proj", "dp1-kubeconfig")] = {"kubeconfig": kubeconfig("https://127.0.0.1:7443")}
    second = dp.kube("proj", REF)
    assert second is not first and len(built.configs) == 2


def test_a_secret_in_another_namespace_is_read_there() -> None:
    secrets, built = Secrets(), Built()
    secrets.data[("shared", "dp1")] = {"kubeconfig": kubeconfig()}
    assert planes(secrets, built).kube("proj", SecretReference(name="dp1", namespace="shared")).plane == "dp1"


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (None, "data-plane kubeconfig Secret proj/dp1-kubeconfig not found"),
        ({}, "data-plane kubeconfig Secret proj/dp1-kubeconfig has no key kubeconfig"),
        ({"kubeconfig": "clusters: [oops\n"}, "key kubeconfig is not YAML"),
        ({"kubeconfig": "just: text\n"}, "is not a kubeconfig (no clusters or contexts)"),
    ],
)
def test_a_missing_or_malformed_secret_is_a_config_error_naming_it(
    data: dict[str, str] | None, said: str
) -> None:
    secrets, built = Secrets(), Built()
    if data is not None:
        secrets.data[("proj", "dp1-kubeconfig")] = data
    with pytest.raises(ConfigError) as err:
        planes(secrets, built).kube("proj", REF)
    assert said in err.value.message and err.value.reason == Reason.DATA_PLANE_INVALID
    assert not built.configs


@pytest.mark.parametrize(
    "user",
    [
        {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"},
        {"client-certificate": "/etc/worker/tls.crt", "client-key": "/etc/worker/tls.key"},
        {"exec": {"command": "sh", "args": ["-c", "cat /etc/passwd"], "apiVersion": "v1"}},
        {"auth-provider": {"name": "gcp"}},
    ],
)
def test_a_kubeconfig_that_reads_files_or_runs_programs_in_the_worker_is_refused(
    user: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_kubeconfig(kubeconfig(**user), "Secret proj/dp1")
    assert "only inline credentials" in err.value.message and "'robot'" in err.value.message


def test_a_cluster_ca_given_as_a_file_path_is_refused() -> None:
    config = yaml.safe_load(kubeconfig())
    config["clusters"][0]["cluster"]["certificate-authority"] = "/etc/ssl/private/ca.pem"
    with pytest.raises(ConfigError, match="cluster 'dp1' uses certificate-authority"):
        parse_kubeconfig(yaml.safe_dump(config), "Secret proj/dp1")


# --- a data plane's faults, through the one request path ---------------------------------------


class Answers(http.server.BaseHTTPRequestHandler):
    status = 403
    readyz = 200

    def do_GET(self) -> None:
        code = self.readyz if self.path.startswith("/readyz") else self.status
        body = b'{"kind":"Status","reason":"Forbidden","message":"nope"}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def apiserver() -> Iterator[type[Answers]]:
    handler = type("Handler", (Answers,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def plane_kube(url: str) -> Kube:
    cfg = k8s.Configuration()
    cfg.host = url
    return Kube(k8s.ApiClient(cfg), plane="dp1", request_timeout=(1.0, 2.0))


def test_a_data_plane_that_does_not_answer_is_waited_for_and_named() -> None:
    kube = plane_kube("http://127.0.0.1:1")
    with pytest.raises(DataPlaneUnavailableError) as err:
        kube.list_objects("v1", "Pod", namespace="p")
    assert err.value.message.startswith("data-plane cluster dp1: list pods in p")
    assert err.value.reason == Reason.DATA_PLANE_UNAVAILABLE


def test_a_ready_data_plane_refusing_the_credentials_is_permanent(apiserver: type[Answers]) -> None:
    kube = plane_kube(apiserver.url)  # type: ignore[attr-defined]
    with pytest.raises(KubeForbiddenError) as err:
        kube.list_objects("v1", "Pod", namespace="p")
    assert err.value.message.startswith("data-plane cluster dp1 refused: list pods in p: HTTP 403")
    assert err.value.reason == Reason.DATA_PLANE_INVALID


def test_a_data_plane_that_refuses_while_not_ready_yet_is_waited_for(apiserver: type[Answers]) -> None:
    apiserver.readyz = 500  # an apiserver just started: its RBAC caches are not synced yet
    kube = plane_kube(apiserver.url)  # type: ignore[attr-defined]
    with pytest.raises(DataPlaneUnavailableError, match="data-plane cluster dp1 is not ready yet"):
        kube.list_objects("v1", "Pod", namespace="p")


def test_the_management_cluster_keeps_its_own_error_classes(apiserver: type[Answers]) -> None:
    cfg = k8s.Configuration()
    cfg.host = apiserver.url  # type: ignore[attr-defined]
    with pytest.raises(KubeForbiddenError) as err:
        Kube(k8s.ApiClient(cfg)).list_objects("v1", "Pod", namespace="p")
    assert err.value.reason is None and err.value.message.startswith("list pods in p: HTTP 403")
