"""Projects whose pipelines run in another cluster: the stack's data plane ``dp1``, driven by the real worker.

The management cluster keeps the CRs and their statuses; a project whose PipelineSetting names a
kubeconfig Secret for dp1 gets its pipeline namespace, RoleBindings, agent pods and deployments there,
built by dp1's own jenkins-lite (``DP1_JENKINS_URL``, whose Kubernetes cloud is dp1's apiserver). The
kubeconfig is that of the minimal data-plane identity of ``deploy/dataplane/rbac.yaml``. Nothing here
writes a status: dp1's controllers and kwok run the pods, the worker writes the CRs.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client

from activities.dataplane import kube_from_kubeconfig
from activities.errors import KubeForbiddenError
from activities.kube import Kube, encode_secret_data
from crds.execution import PipelineExecution
from crds.meta import SecretReference
from crds.reasons import ConditionType, ExecutionPhase, Reason
from crds.setting import (
    DEFAULT_SETTING_NAME,
    DataPlaneSettings,
    JenkinsMode,
    JenkinsSettings,
    PipelineSetting,
)
from devstack.cluster import DP1
from devstack.dataplane_identity import dataplane_kubeconfig
from devstack.stack import Stack
from worker.runs import create_run

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 300.0
PROJECT_LABEL = "devops.cubepaas.io/project"
SECRET = "dp1-kubeconfig"


@pytest.fixture(scope="module")
def dp1(stack: Stack) -> Iterator[dict[str, str]]:
    """The stack with its data plane (started here when the stack runs without it); the stack's env."""
    stack.up(started_by="harness", data_plane=True)
    yield stack.env()


@pytest.fixture(scope="module")
def dp1_kube(dp1: dict[str, str]) -> Iterator[Kube]:
    kube = Kube.from_kubeconfig(dp1["DP1_KUBECONFIG"])
    yield kube
    kube.close()


def remote_project(
    kube: Kube,
    dp1_kube: Kube,
    project_namespace: Callable[..., str],
    env: dict[str, str],
    kubeconfig: str,
) -> tuple[str, str]:
    """A project whose runs happen in dp1: its setting names dp1's Jenkins and the kubeconfig Secret, and
    it has a namespace in dp1 (labelled as the project's) to deploy into. ``(project, dp1 team ns)``."""
    ns = project_namespace("dp")
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": SECRET, "namespace": ns},
            "data": encode_secret_data({"kubeconfig": kubeconfig}),
        }
    )
    setting = kube.get(PipelineSetting, ns, DEFAULT_SETTING_NAME)
    setting.spec.jenkins = JenkinsSettings(
        mode=JenkinsMode.EXTERNAL,
        url=env["DP1_JENKINS_URL"],
        credentials_secret_ref=setting.spec.jenkins.credentials_secret_ref,
    )
    setting.spec.data_plane = DataPlaneSettings(kubeconfig_secret_ref=SecretReference(name=SECRET))
    kube.replace(setting)
    team = f"{ns}-team"
    dp1_kube.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": team, "labels": {PROJECT_LABEL: ns}}}
    )
    return ns, team


def deployment(name: str, namespace: str) -> str:
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n"
        f"  template:\n    metadata: {{labels: {{app: {name}}}}}\n"
        f"    spec: {{containers: [{{name: app, image: busybox}}]}}\n"
    )


def start(
    kube_api_client: Any,
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
    ns: str,
    stages: list[dict[str, Any]],
) -> PipelineExecution:
    url, sha = git_repo(json.dumps({"stages": stages}))
    pipeline_factory(ns, "app", url)
    return create_run(kube_api_client, ns, "app", commit=sha)


def wait_terminal(kube: Kube, ns: str, name: str, timeout: float = RUN_TIMEOUT) -> PipelineExecution:
    deadline = time.monotonic() + timeout
    while True:
        pe = kube.get(PipelineExecution, ns, name)
        if pe.status is not None and pe.status.phase is not None and pe.status.phase.is_terminal:
            return pe
        if time.monotonic() > deadline:
            pytest.fail(f"{ns}/{name} not finished after {timeout:.0f}s: {pe.status}", pytrace=False)
        time.sleep(0.5)


def scheduled_pods(kube: Kube, namespace: str) -> set[str]:
    """The pods the cluster's scheduler placed in ``namespace`` (its Events outlive the pods)."""
    events = kube.list_objects("v1", "Event", namespace=namespace)
    return {
        e["involvedObject"]["name"]
        for e in events
        if e.get("reason") == "Scheduled" and e.get("involvedObject", {}).get("kind") == "Pod"
    }


async def test_a_project_with_a_data_plane_runs_there_while_another_project_runs_in_the_management_cluster(
    worker_process: Any,
    kube: Kube,
    dp1_kube: Kube,
    dp1: dict[str, str],
    kube_api_client: Any,
    temporal_client: Client,
    project_namespace: Callable[..., str],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
) -> None:
    kubeconfig = dataplane_kubeconfig(Path(dp1["DP1_KUBECONFIG"]))
    remote, team = remote_project(kube, dp1_kube, project_namespace, dp1, kubeconfig)
    local = project_namespace("mp")
    deploy = [{"name": "Deploy", "steps": [{"applyYamlConfig": {"content": deployment("web", team)}}]}]
    script = [{"name": "Build", "steps": [{"runScriptConfig": {"image": "busybox", "shellScript": "true"}}]}]
    remote_run = start(kube_api_client, pipeline_factory, git_repo, remote, deploy)
    local_run = start(kube_api_client, pipeline_factory, git_repo, local, script)

    for ns, run in ((remote, remote_run), (local, local_run)):
        st = wait_terminal(kube, ns, run.name).status
        assert st is not None and st.phase == ExecutionPhase.SUCCESS, (ns, st.message if st else None)

    pipeline_ns = f"{remote}-pipeline"
    # In dp1: the pipeline namespace, Jenkins' ServiceAccount, the RoleBinding in the project's namespace,
    # the agent pod (placed by dp1's scheduler) and the deployed Deployment, rolled out by dp1's controllers.
    assert dp1_kube.find_object("v1", "Namespace", pipeline_ns) is not None
    assert dp1_kube.find_object("v1", "ServiceAccount", "jenkins", pipeline_ns) is not None
    bindings = dp1_kube.list_objects("rbac.authorization.k8s.io/v1", "RoleBinding", namespace=team)
    assert any(s.get("namespace") == pipeline_ns for b in bindings for s in b.get("subjects") or [])
    assert scheduled_pods(dp1_kube, pipeline_ns), "no agent pod was scheduled in dp1"
    web = dp1_kube.read_object("apps/v1", "Deployment", "web", team)
    assert (web.get("status") or {}).get("availableReplicas") == 1
    # ... and none of it in the management cluster, which holds the CRs (dp1 has no CRDs of ours at all).
    assert kube.find_object("v1", "Namespace", pipeline_ns) is None
    assert kube.find_object("v1", "Namespace", team) is None
    assert not dp1_kube.list_objects("v1", "Namespace", label_selector=f"{PROJECT_LABEL}={local}")
    assert kube.find_object("v1", "Namespace", f"{local}-pipeline") is not None
    assert scheduled_pods(kube, f"{local}-pipeline"), "the management project's agent pod ran elsewhere"
    assert dp1_kube.find_object("v1", "Namespace", f"{local}-pipeline") is None
    setting = kube.get(PipelineSetting, remote, DEFAULT_SETTING_NAME)
    assert setting.status is not None and setting.status.pipeline_namespace == pipeline_ns

    # The data plane's credentials appear in no history, CR or worker log.
    user = yaml.safe_load(kubeconfig)["users"][0]["user"]
    secrets = [v for k, v in user.items() if k in ("token", "client-key-data")]
    assert secrets, "the kubeconfig carries a credential to look for"
    done = kube.get(PipelineExecution, remote, remote_run.name)
    assert done.status is not None and done.status.workflow is not None
    history = (await temporal_client.get_workflow_handle(done.status.workflow.id).fetch_history()).to_json()
    crs = json.dumps(
        [
            kube.read_object(done.api_version, done.kind, done.name, remote),
            kube.read_object(setting.api_version, setting.kind, DEFAULT_SETTING_NAME, remote),
        ]
    )
    log = worker_process.log_path.read_text(errors="replace")
    for secret in secrets:
        for text, where in ((history, "the workflow history"), (crs, "the CRs"), (log, "the worker log")):
            assert secret not in text, where
            assert base64.b64encode(secret.encode()).decode()[:-4] not in text, where


def test_a_malformed_data_plane_kubeconfig_fails_the_run_at_once_naming_the_secret(
    worker_process: Any,
    kube: Kube,
    dp1_kube: Kube,
    dp1: dict[str, str],
    kube_api_client: Any,
    project_namespace: Callable[..., str],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
) -> None:
    ns, _ = remote_project(kube, dp1_kube, project_namespace, dp1, "clusters: [oops\n")
    stages = [{"name": "Build", "steps": [{"runScriptConfig": {"image": "busybox", "shellScript": "true"}}]}]
    run = start(kube_api_client, pipeline_factory, git_repo, ns, stages)
    st = wait_terminal(kube, ns, run.name, timeout=60).status
    assert st is not None and st.phase == ExecutionPhase.FAILED
    assert st.message is not None and f"data-plane kubeconfig Secret {ns}/{SECRET}" in st.message
    cond = st.condition(ConditionType.PROVISIONED)
    assert cond is not None and cond.reason == Reason.DATA_PLANE_INVALID
    assert kube.find_object("v1", "Namespace", f"{ns}-pipeline") is None


def test_a_stopped_data_plane_holds_its_runs_saying_why_and_they_finish_when_it_returns(
    worker_process: Any,
    stack: Stack,
    kube: Kube,
    dp1_kube: Kube,
    dp1: dict[str, str],
    kube_api_client: Any,
    project_namespace: Callable[..., str],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
) -> None:
    kubeconfig = dataplane_kubeconfig(Path(dp1["DP1_KUBECONFIG"]))
    remote, team = remote_project(kube, dp1_kube, project_namespace, dp1, kubeconfig)
    local = project_namespace("mp")
    stages = [
        {"name": "Wait", "steps": [{"runScriptConfig": {"image": "busybox", "shellScript": "sleep 25"}}]},
        {"name": "Deploy", "steps": [{"applyYamlConfig": {"content": deployment("late", team)}}]},
    ]
    remote_run = start(kube_api_client, pipeline_factory, git_repo, remote, stages)

    def building() -> bool:
        pe = kube.get(PipelineExecution, remote, remote_run.name)
        return pe.status is not None and pe.status.phase == ExecutionPhase.BUILDING

    deadline = time.monotonic() + RUN_TIMEOUT
    while not building():
        assert time.monotonic() < deadline, "the remote run never started building"
        time.sleep(0.3)
    apiserver = DP1.component("kube-apiserver")
    stack.stop_component(apiserver)
    try:
        messages: set[str] = set()
        deadline = time.monotonic() + 60
        while not any(m.startswith("Waiting for data-plane cluster dp1") for m in messages):
            assert time.monotonic() < deadline, f"the run never said it waits for dp1: {messages}"
            pe = kube.get(PipelineExecution, remote, remote_run.name)
            messages.add((pe.status.message if pe.status else None) or "")
            time.sleep(0.3)
        # Another project's run is not held up by dp1's outage.
        script = [{"name": "B", "steps": [{"runScriptConfig": {"image": "busybox", "shellScript": "true"}}]}]
        local_run = start(kube_api_client, pipeline_factory, git_repo, local, script)
        st = wait_terminal(kube, local, local_run.name, timeout=120).status
        assert st is not None and st.phase == ExecutionPhase.SUCCESS
        pe = kube.get(PipelineExecution, remote, remote_run.name)
        assert pe.status is not None and pe.status.phase == ExecutionPhase.BUILDING
    finally:
        stack.start_component(apiserver)
    st = wait_terminal(kube, remote, remote_run.name).status
    assert st is not None and st.phase == ExecutionPhase.SUCCESS, st.message if st else None
    assert dp1_kube.find_object("apps/v1", "Deployment", "late", team) is not None


def test_the_data_plane_identity_can_neither_make_cluster_roles_nor_bind_cluster_admin(
    dp1: dict[str, str], dp1_kube: Kube
) -> None:
    text = dataplane_kubeconfig(Path(dp1["DP1_KUBECONFIG"]))
    config = yaml.safe_load(text)
    file_keys = {"certificate-authority", "client-certificate", "client-key", "tokenFile", "exec"}
    assert not file_keys & {
        k for e in (*config["clusters"], *config["users"]) for k in next(iter(e.values()))
    }
    identity = kube_from_kubeconfig(config)
    target = f"dp-rbac-{time.monotonic_ns()}"
    dp1_kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}})
    try:
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": target},
        }
        with pytest.raises(KubeForbiddenError):
            identity.apply({**role, "rules": []})
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "grab", "namespace": target},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "jenkins", "namespace": target}],
        }
        with pytest.raises(KubeForbiddenError):
            identity.apply(binding)
        # What the worker does there is allowed: binding admin, as the RoleBinding reconcile does.
        identity.apply({**binding, "roleRef": {**binding["roleRef"], "name": "admin"}})
    finally:
        identity.close()
        dp1_kube.delete_object("v1", "Namespace", target, missing_ok=True)
