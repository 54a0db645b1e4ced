"""jenkins-lite's agent pods on the real stack: kube-apiserver, kube-scheduler and kwok nodes.

jenkins-lite runs in-process with the stack's kubeconfig (its Kubernetes cloud); the pod template's namespace
has the ``jenkins`` ServiceAccount and the agents RoleBinding the product's bootstrap creates. Nothing here
writes a pod's status or binds a pod: the scheduler places it, kwok reports it Running.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from activities.bootstrap import agents_rolebinding_manifest, service_account_manifest
from activities.jenkins.client import JenkinsEngine, job_name
from activities.jenkins.jenkinsfile import (
    EXECUTION_LABEL,
    JenkinsfileInput,
    cache_host_path,
    execution_label_value,
    render_jenkinsfile,
)
from activities.kube import Kube
from crds.messages import BootstrapInput
from crds.pipeline_file import PipelineConfig
from devstack.gitrepo import make_git_repo
from devstack.jenkins_lite import LiteServer, serve

pytestmark = pytest.mark.integration

USER, TOKEN = "admin", "agents-test-token"
CACHE_ROOT = "/var/lib/cubepaas-devops/cache"
CACHE_PATH = "/root/.cache/agent-test"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}", pytrace=False)
        time.sleep(0.2)


@pytest.fixture
def agent_namespace(kube: Kube) -> Iterator[str]:
    """A pipeline namespace as the bootstrap leaves it for agents: the jenkins account and its RoleBinding."""
    ns = f"agents-{uuid.uuid4().hex[:6]}"
    kube.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    inp = BootstrapInput(project_namespace=ns, pipeline_namespace=ns, jenkins_mode="External")
    kube.ensure(service_account_manifest(inp))
    kube.ensure(agents_rolebinding_manifest(inp))
    yield ns
    kube.delete_object("v1", "Namespace", ns, missing_ok=True)


@pytest.fixture
def lite(stack: Any, tmp_path: Path) -> Iterator[LiteServer]:
    server = serve(
        tmp_path / "home",
        user=USER,
        token=TOKEN,
        kubeconfig=stack.kubeconfig_path,
        nodes_dir=tmp_path / "nodes",
    )
    yield server
    server.shutdown()


@pytest.fixture
def engine(lite: LiteServer) -> JenkinsEngine:
    return JenkinsEngine(lite.url, USER, TOKEN, timeout=30, poll_interval=0.1)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_git_repo(tmp_path_factory.mktemp("git"), "stages: []\n", author="agents")


def _inp(namespace: str, repo: tuple[str, str], steps: list[dict[str, Any]]) -> JenkinsfileInput:
    uid = uuid.uuid4().hex[:8]
    return JenkinsfileInput(
        config=PipelineConfig.model_validate({"stages": [{"name": "Build", "steps": steps}]}),
        namespace=namespace,
        pipeline=f"p{uid}",
        run=1,
        execution_id=f"{namespace}/p{uid}-1/{uid}",
        git_url=repo[0],
        commit=repo[1],
        agent_namespace=namespace,
        cache_root=CACHE_ROOT,
    )


def _start(engine: JenkinsEngine, inp: JenkinsfileInput) -> tuple[str, int]:
    """Create the job and start its build."""
    job = job_name(inp.namespace, inp.pipeline, inp.run)
    script = render_jenkinsfile(inp)
    engine.ensure_job(job, script)
    ref = engine.wait_for_start(job, engine.trigger(job, inp.execution_id), inp.execution_id, timeout=30)
    assert ref.number is not None
    return job, ref.number


def _console(lite: LiteServer, job: str, number: int) -> str:
    return requests.get(f"{lite.url}job/{job}/{number}/consoleText", auth=(USER, TOKEN), timeout=10).text


def _result(lite: LiteServer, job: str, number: int) -> str | None:
    info = requests.get(f"{lite.url}job/{job}/{number}/api/json", auth=(USER, TOKEN), timeout=10).json()
    return None if info["building"] else str(info["result"])


def _pods(kube: Kube, namespace: str, inp: JenkinsfileInput) -> list[dict[str, Any]]:
    selector = f"{EXECUTION_LABEL}={execution_label_value(inp.execution_id)}"
    return kube.list_objects("v1", "Pod", namespace=namespace, label_selector=selector)


def _proceed_gate(lite: LiteServer, job: str, number: int) -> None:
    """Wait for the build's next gate (before every user stage) and proceed it."""
    pending = wait_for(
        lambda: requests.get(
            f"{lite.url}job/{job}/{number}/wfapi/pendingInputActions", auth=(USER, TOKEN), timeout=10
        ).json(),
        60,
        "the gate",
    )
    answer = requests.post(
        f"{lite.url.rstrip('/')}{pending[0]['proceedUrl']}", auth=(USER, TOKEN), timeout=10
    )
    answer.raise_for_status()


def test_a_build_runs_once_the_scheduler_placed_its_pod_template_pod_and_the_pod_is_deleted_at_the_end(
    kube: Kube,
    agent_namespace: str,
    lite: LiteServer,
    engine: JenkinsEngine,
    stack_env: dict[str, str],
    repo: tuple[str, str],
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    kubectl = stack_env["KUBECTL"]
    script = (
        f"echo on $NODE_NAME; {kubectl} get pod $NODE_NAME -o name; echo cached > {CACHE_PATH}/file; "
        f"while [ ! -e {release} ]; do sleep 0.1; done"
    )
    inp = _inp(
        agent_namespace,
        repo,
        [
            {
                "runScriptConfig": {"image": "busybox:1.36", "shellScript": script},
                "resources": {"cpuRequest": "250m", "memoryRequest": "64Mi"},
                "cache": {"paths": [CACHE_PATH]},
            }
        ],
    )
    job, number = _start(engine, inp)
    pod = wait_for(
        lambda: next(
            (p for p in _pods(kube, agent_namespace, inp) if p["status"].get("phase") == "Running"), None
        ),
        120,
        "the agent pod to run",
    )
    name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
    # The pod is the Jenkinsfile's podTemplate.
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert containers["step-1-0"]["image"] == "busybox:1.36"
    assert containers["step-1-0"]["resources"]["requests"] == {"cpu": "250m", "memory": "64Mi"}
    assert pod["spec"]["serviceAccountName"] == "jenkins"
    host_path = cache_host_path(CACHE_ROOT, inp.namespace, inp.pipeline, CACHE_PATH)
    assert host_path in [v["hostPath"]["path"] for v in pod["spec"]["volumes"] if "hostPath" in v]
    # kube-scheduler placed it on a kwok node matching its node selector.
    events = kube.core.list_namespaced_event(agent_namespace, field_selector=f"involvedObject.name={name}")
    scheduled = [e for e in events.items if e.reason == "Scheduled"]
    assert scheduled and scheduled[0].reporting_component == "default-scheduler", events.items
    assert scheduled[0].message == f"Successfully assigned {agent_namespace}/{name} to {node}"
    assert kube.core.read_node(node).metadata.labels["kubernetes.io/os"] == "linux"

    _proceed_gate(lite, job, number)
    wait_for(
        lambda: (tmp_path / "nodes" / node / host_path.lstrip("/") / "file").is_file(), 60, "the cache file"
    )
    release.touch()
    assert wait_for(lambda: _result(lite, job, number), 60, "the build to end") == "SUCCESS"
    console = _console(lite, job, number)
    assert f"Created Pod: kubernetes {agent_namespace}/{name}" in console
    assert f"on {name}\npod/{name}\n" in console  # the step's kubeconfig is the pod's service account
    assert (tmp_path / "nodes" / node / host_path.lstrip("/") / "file").read_text() == "cached\n"
    wait_for(lambda: not _pods(kube, agent_namespace, inp), 60, "the agent pod to be deleted")


def test_a_build_whose_pod_cannot_be_scheduled_waits_saying_why_and_can_be_aborted(
    kube: Kube, agent_namespace: str, lite: LiteServer, engine: JenkinsEngine, repo: tuple[str, str]
) -> None:
    inp = _inp(
        agent_namespace,
        repo,
        [
            {
                "runScriptConfig": {"image": "alpine", "shellScript": "echo never"},
                "resources": {"cpuRequest": "999"},
            }
        ],
    )
    job, number = _start(engine, inp)
    wait_for(
        lambda: "Pod [Pending][Unschedulable] 0/" in _console(lite, job, number), 60, "the unschedulable line"
    )
    console = _console(lite, job, number)
    assert "Insufficient cpu" in console
    assert "Still waiting to schedule task" in console
    assert _result(lite, job, number) is None  # still waiting
    pods = _pods(kube, agent_namespace, inp)
    assert len(pods) == 1 and not pods[0]["spec"].get("nodeName")

    assert engine.cancel(job, None, number, grace_seconds=10) == "ABORTED"
    assert "never" not in _console(lite, job, number)
    wait_for(lambda: not _pods(kube, agent_namespace, inp), 60, "the agent pod to be deleted")


def test_a_pod_the_namespaces_jenkins_account_may_not_create_fails_the_build_with_the_apis_answer(
    kube: Kube, lite: LiteServer, engine: JenkinsEngine, repo: tuple[str, str]
) -> None:
    ns = f"no-agents-{uuid.uuid4().hex[:6]}"
    kube.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    inp_ = BootstrapInput(project_namespace=ns, pipeline_namespace=ns, jenkins_mode="External")
    kube.ensure(service_account_manifest(inp_))  # the account, but no RoleBinding
    try:
        inp = _inp(ns, repo, [{"runScriptConfig": {"image": "alpine", "shellScript": "echo never"}}])
        job, number = _start(engine, inp)
        assert wait_for(lambda: _result(lite, job, number), 60, "the build to end") == "FAILURE"
        console = _console(lite, job, number)
        assert f"ERROR: Unable to create pod kubernetes {ns}/" in console
        assert "forbidden" in console
        assert "never" not in console
    finally:
        kube.delete_object("v1", "Namespace", ns, missing_ok=True)


def test_a_jenkins_lite_that_stops_during_a_build_aborts_it_and_deletes_its_agent_pod(
    kube: Kube, agent_namespace: str, stack: Any, repo: tuple[str, str], tmp_path: Path
) -> None:
    server = serve(tmp_path / "home2", user=USER, token=TOKEN, kubeconfig=stack.kubeconfig_path)
    try:
        engine = JenkinsEngine(server.url, USER, TOKEN, timeout=30, poll_interval=0.1)
        inp = _inp(
            agent_namespace, repo, [{"runScriptConfig": {"image": "alpine", "shellScript": "sleep 600"}}]
        )
        job, number = _start(engine, inp)
        wait_for(
            lambda: any(p["spec"].get("nodeName") for p in _pods(kube, agent_namespace, inp)), 60, "the pod"
        )
    finally:
        server.shutdown()
    assert (
        "Finished: ABORTED"
        in (tmp_path / "home2" / "jobs" / job / "builds" / str(number) / "log").read_text()
    )
    wait_for(lambda: not _pods(kube, agent_namespace, inp), 60, "the agent pod to be deleted")
