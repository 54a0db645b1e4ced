"""jenkins-lite's Kubernetes cloud with ``container_cap=1`` on the real stack: a second build of the
product's Jenkinsfile creates no pod while the first one's agent exists, says so as Jenkins does, and runs
once that agent is gone.
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
    execution_label_value,
    render_jenkinsfile,
)
from activities.kube import Kube
from crds.messages import BootstrapInput
from crds.pipeline_file import PipelineConfig
from devstack.gitrepo import make_git_repo
from devstack.jenkins_lite import LiteServer, serve

pytestmark = pytest.mark.integration

USER, TOKEN = "admin", "cloud-capacity-token"


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 120) -> Any:
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
    ns = f"cap-{uuid.uuid4().hex[:6]}"
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
        container_cap=1,
    )
    yield server
    server.shutdown()


class Build:
    def __init__(self, lite: LiteServer, engine: JenkinsEngine, namespace: str, git: tuple[str, str]) -> None:
        uid = uuid.uuid4().hex[:8]
        step = {"runScriptConfig": {"image": "alpine", "shellScript": f"echo ran {uid}"}}
        self.inp = JenkinsfileInput(
            config=PipelineConfig.model_validate({"stages": [{"name": "Build", "steps": [step]}]}),
            namespace=namespace,
            pipeline=f"p{uid}",
            run=1,
            execution_id=f"{namespace}/p{uid}-1/{uid}",
            git_url=git[0],
            commit=git[1],
            agent_namespace=namespace,
            cache_root="/var/lib/cubepaas-devops/cache",
        )
        self.lite, self.uid = lite, uid
        self.job = job_name(namespace, self.inp.pipeline, 1)
        engine.ensure_job(self.job, render_jenkinsfile(self.inp))
        ref = engine.wait_for_start(
            self.job, engine.trigger(self.job, self.inp.execution_id), self.inp.execution_id, timeout=30
        )
        assert ref.number is not None
        self.number = ref.number

    def get(self, path: str) -> requests.Response:
        return requests.get(
            f"{self.lite.url}job/{self.job}/{self.number}/{path}", auth=(USER, TOKEN), timeout=10
        )

    def console(self) -> str:
        return self.get("consoleText").text

    def result(self) -> str | None:
        info = self.get("api/json").json()
        return None if info["building"] else str(info["result"])

    def pods(self, kube: Kube) -> list[dict[str, Any]]:
        selector = f"{EXECUTION_LABEL}={execution_label_value(self.inp.execution_id)}"
        return kube.list_objects("v1", "Pod", namespace=self.inp.agent_namespace, label_selector=selector)

    def proceed_gate(self) -> None:
        pending = wait_for(lambda: self.get("wfapi/pendingInputActions").json(), "the gate")
        url = f"{self.lite.url.rstrip('/')}{pending[0]['proceedUrl']}"
        requests.post(url, auth=(USER, TOKEN), timeout=10).raise_for_status()


def test_at_the_container_cap_a_build_creates_no_pod_until_the_running_agent_is_deleted(
    kube: Kube, agent_namespace: str, lite: LiteServer, tmp_path: Path
) -> None:
    engine = JenkinsEngine(lite.url, USER, TOKEN, timeout=30, poll_interval=0.1)
    git = make_git_repo(tmp_path / "git", "stages: []\n", author="capacity")
    first = Build(lite, engine, agent_namespace, git)
    wait_for(lambda: any(p["spec"].get("nodeName") for p in first.pods(kube)), "the first agent pod")

    second = Build(lite, engine, agent_namespace, git)
    wait_for(lambda: "There are no nodes with the label \u2018" in second.console(), "the capacity wait")
    console = second.console()
    assert "Still waiting to schedule task\nThere are no nodes with the label \u2018" in console
    assert "Created Pod:" not in console
    assert second.pods(kube) == []

    first.proceed_gate()
    assert wait_for(first.result, "the first build to end") == "SUCCESS"
    wait_for(lambda: any(p["spec"].get("nodeName") for p in second.pods(kube)), "the second agent pod")
    second.proceed_gate()
    assert wait_for(second.result, "the second build to end") == "SUCCESS"
    console = second.console()
    assert f"ran {second.uid}" in console
    assert console.count("Still waiting to schedule task") == 1
    assert console.index("There are no nodes with the label") < console.index("Created Pod: kubernetes")
