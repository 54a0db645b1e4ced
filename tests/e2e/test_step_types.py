"""Every step type does real work on the cluster-shaped stack, driven by the real worker.

jenkins-lite creates each build's agent pod from the generated Jenkinsfile, the scheduler places it on a kwok
node, and the steps run with /bin/sh on the host with the pod's hostPath mounts and a kubeconfig of the
pipeline namespace's ``jenkins`` ServiceAccount; buildah pushes to the stack's registry, which holds a base
image seeded from local files (:mod:`devstack.baseimage`). Nothing here writes a pod or a status.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from temporalio.client import Client

from activities.jenkins.jenkinsfile import EXECUTION_LABEL
from activities.kube import Kube, encode_secret_data
from crds.execution import PipelineExecution
from crds.meta import SecretReference
from crds.pipeline import Pipeline
from crds.reasons import ExecutionPhase, StageState
from crds.setting import DEFAULT_SETTING_NAME, PipelineSetting
from devstack.baseimage import manifest_digest, seed_base_image
from devstack.gitrepo import git
from worker.runs import create_run

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 420.0
PROJECT_LABEL = "devops.cubepaas.io/project"

CHART = {
    "chart/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\ndescription: the demo app\n",
    "chart/values.yaml": "image: busybox\nreplicas: 1\n",
    "chart/templates/deployment.yaml": """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-chart
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Release.Name }}-chart}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}-chart}
    spec:
      containers:
      - name: app
        image: {{ .Values.image | quote }}
""",
}

BUILD_SCRIPT = r"""mkdir -p build
cat > build/app <<'APP'
#!/bin/sh
echo "hello from the demo app"
APP
chmod +x build/app
base="$CICD_LOCAL_REGISTRY/cubepaas/base:busybox"
printf 'FROM %s\nCOPY app /app\nRUN /app\nCMD ["/app"]\n' "$base" > build/Dockerfile
echo "built the app for run $CICD_EXECUTION_SEQUENCE"
"""


def _deployment(name: str, namespace: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: "${{CICD_PUBLISHED_IMAGE_REPO}}@${{CICD_PUBLISHED_IMAGE_DIGEST}}"
"""


def _pipeline(team: str, catalog_url: str) -> str:
    return json.dumps(
        {
            "stages": [
                {
                    "name": "Compile",
                    "steps": [{"runScriptConfig": {"image": "busybox", "shellScript": BUILD_SCRIPT}}],
                },
                {
                    "name": "Image",
                    "steps": [
                        {
                            "publishImageConfig": {
                                "dockerfilePath": "build/Dockerfile",
                                "buildContext": "build",
                                "tag": "demo/app:run-${CICD_EXECUTION_SEQUENCE}",
                            }
                        }
                    ],
                },
                {
                    "name": "Deploy",
                    "steps": [
                        {"applyYamlConfig": {"content": _deployment("web", team)}, "timeout": "3m"},
                        {
                            "applyAppConfig": {
                                "chart": "./chart",
                                "name": "web",
                                "targetNamespace": team,
                                "values": {
                                    "image": "${CICD_PUBLISHED_IMAGE_REPO}@${CICD_PUBLISHED_IMAGE_DIGEST}"
                                },
                            },
                            "timeout": "3m",
                        },
                    ],
                },
                {
                    "name": "Catalog",
                    "steps": [
                        {
                            "publishCatalogConfig": {
                                "path": "./chart",
                                "catalogTemplate": "web",
                                "version": "0.1.0",
                                "gitUrl": catalog_url,
                                "gitBranch": "main",
                            }
                        }
                    ],
                },
            ]
        }
    )


# ------------------------------------------------------------------------------------------- helpers


def wait_terminal(kube: Kube, ns: str, name: str, timeout: float = RUN_TIMEOUT) -> PipelineExecution:
    deadline = time.monotonic() + timeout
    while True:
        pe = kube.get(PipelineExecution, ns, name)
        if pe.status is not None and pe.status.phase is not None and pe.status.phase.is_terminal:
            return pe
        if time.monotonic() > deadline:
            pytest.fail(f"{ns}/{name} not finished after {timeout:.0f}s: {pe.status}", pytrace=False)
        time.sleep(0.5)


def registry_host(stack_env: dict[str, str]) -> str:
    return urlsplit(stack_env["REGISTRY_URL"]).netloc


class PodRecorder:
    """Records every agent pod of a namespace as the apiserver shows it while the build runs (the pod is
    deleted when the build ends)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.pods: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.3):
            try:
                pods = self.kube.list_objects(
                    "v1", "Pod", namespace=self.namespace, label_selector=EXECUTION_LABEL
                )
            except Exception:  # the pipeline namespace may not exist yet
                continue
            for pod in pods:
                self.pods[pod["metadata"]["name"]] = pod

    def __enter__(self) -> PodRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def step_project(
    kube: Kube,
    project_namespace: Callable[..., str],
    stack_env: dict[str, str],
) -> Callable[..., tuple[str, str, str]]:
    """``(**setting) -> (project, team namespace, registry password)``: a project whose registry is the
    stack's (insecure, plain HTTP) with a dockerconfigjson login, keeping its last Jenkins job, plus a
    namespace of the project to deploy into."""

    def make(**setting: Any) -> tuple[str, str, str]:
        ns = project_namespace("steps", keep_jenkins_jobs=5)
        team = f"{ns}-team"
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": team, "labels": {PROJECT_LABEL: ns}},
            }
        )
        host = registry_host(stack_env)
        password = "regpw-" + uuid.uuid4().hex
        auth = base64.b64encode(f"robot:{password}".encode()).decode()
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": "registry-login", "namespace": ns},
                "data": encode_secret_data(
                    {".dockerconfigjson": json.dumps({"auths": {host: {"auth": auth}}})}
                ),
            }
        )
        live = kube.get(PipelineSetting, ns, DEFAULT_SETTING_NAME)
        spec = live.spec.model_copy(deep=True)
        spec.registry.host = host
        spec.registry.insecure = True
        spec.registry.credentials_secret_ref = SecretReference(name="registry-login")
        spec = spec.model_validate({**spec.to_dict(), **setting})
        live.spec = spec
        kube.replace(live)
        return ns, team, password

    return make


def run_pipeline(
    kube: Kube,
    kube_api_client: Any,
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
    ns: str,
    pipeline_file: str,
    files: dict[str, str] | None = None,
    name: str = "app",
) -> tuple[PipelineExecution, str]:
    url, sha = git_repo(pipeline_file, files)
    pipeline_factory(ns, name, url)
    return create_run(kube_api_client, ns, name, commit=sha), sha


def jenkins_get(stack_env: dict[str, str], path: str) -> str:
    request = urllib.request.Request(stack_env["JENKINS_URL"].rstrip("/") + path)
    token = base64.b64encode(f"{stack_env['JENKINS_USER']}:{stack_env['JENKINS_TOKEN']}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        body: bytes = response.read()
    return body.decode("utf-8", "replace")


def helm_status(stack_env: dict[str, str], release: str, namespace: str) -> subprocess.CompletedProcess[str]:
    command = [stack_env["HELM"], "status", release, "--namespace", namespace]
    return subprocess.run(
        [*command, "--kubeconfig", stack_env["KUBECONFIG"]], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def seeded_registry(stack_env: dict[str, str]) -> Iterator[str]:
    host = registry_host(stack_env)
    seed_base_image(host)
    yield host


# ------------------------------------------------------------------------------------------- tests


async def test_a_pipeline_builds_and_pushes_an_image_deploys_it_by_digest_installs_and_publishes_its_chart(
    worker_process: Any,
    kube: Kube,
    kube_api_client: Any,
    step_project: Callable[..., tuple[str, str, str]],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
    seeded_registry: str,
    stack_env: dict[str, str],
    s3_client: Any,
    temporal_client: Client,
    tmp_path: Path,
) -> None:
    ns, team, password = step_project(
        executorResources={
            "cpuRequest": "100m",
            "cpuLimit": "1",
            "memoryRequest": "64Mi",
            "memoryLimit": "512Mi",
        },
        resourceQuota={"requestsCpu": "8", "limitsMemory": "16Gi", "pods": 20},
    )
    catalog = tmp_path / "catalog.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(catalog))
    with PodRecorder(kube, f"{ns}-pipeline") as recorder:
        pe, _ = run_pipeline(
            kube, kube_api_client, pipeline_factory, git_repo, ns, _pipeline(team, catalog.as_uri()), CHART
        )
        done = wait_terminal(kube, ns, pe.name)
    st = done.status
    assert st is not None and st.phase == ExecutionPhase.SUCCESS, st.message if st else None

    # publishImage: the step status records what the registry holds, digest and all.
    image = st.stages[2].steps[0].image
    assert image is not None
    assert (image.repository, image.tag) == (f"{seeded_registry}/demo/app", "run-1")
    assert manifest_digest(seeded_registry, "demo/app", "run-1") == image.digest
    assert image.digest != manifest_digest(seeded_registry, "cubepaas/base", "busybox")  # a new image

    # applyYaml: the Deployment pinned to that digest became Available through the controllers and kwok.
    deployment = kube.read_object("apps/v1", "Deployment", "web", team)
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"{image.repository}@{image.digest}"
    )
    available = {c["type"]: c["status"] for c in deployment["status"].get("conditions", [])}
    assert available.get("Available") == "True"
    managers = {m["manager"] for m in deployment["metadata"]["managedFields"]}
    assert "app" in managers  # server-side apply with the pipeline's field manager

    # applyApp: helm reports the release deployed, with the revision the step recorded.
    release = st.stages[3].steps[1].release
    assert release is not None and (release.name, release.namespace, release.revision) == ("web", team, 1)
    status = helm_status(stack_env, "web", team)
    assert status.returncode == 0 and "STATUS: deployed" in status.stdout, status.stderr
    secret = kube.read_object("v1", "Secret", "sh.helm.release.v1.web.v1", team)
    assert secret["metadata"]["labels"]["status"] == "deployed"
    chart_deployment = kube.read_object("apps/v1", "Deployment", "web-chart", team)
    assert (
        chart_deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"{image.repository}@{image.digest}"
    )

    # publishCatalog: the chart is in the catalog repository.
    chart = git(tmp_path, "--git-dir", str(catalog), "show", "main:templates/web/0.1.0/Chart.yaml")
    assert chart == CHART["chart/Chart.yaml"].strip()

    # executorResources reached the agent pod's containers; the quota is in the pipeline namespace.
    assert recorder.pods, "no agent pod was seen"
    pod = next(iter(recorder.pods.values()))
    steps = [c for c in pod["spec"]["containers"] if c["name"].startswith("step-")]
    assert steps and all(
        c["resources"]
        == {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
        for c in steps
    )
    quota = kube.read_object("v1", "ResourceQuota", "cubepaas-executors", f"{ns}-pipeline")
    assert quota["spec"]["hard"]["requests.cpu"] == "8"

    # The registry login never shows: not in the Jenkinsfile, a console log, the history or a CR.
    assert st.jenkins is not None
    job = st.jenkins.job
    jenkinsfile = jenkins_get(stack_env, f"/job/{job}/config.xml")
    assert "CUBEPAAS_REGISTRY_PASSWORD" in jenkinsfile  # bound by withCredentials ...
    console = jenkins_get(stack_env, f"/job/{job}/{st.jenkins.build}/consoleText")
    stored = [
        s3_client.get_object("pipeline-logs", step.log_object).read().decode()
        for stage in st.stages
        for step in stage.steps
        if step.log_object
    ]
    assert st.workflow is not None
    history = (await temporal_client.get_workflow_handle(st.workflow.id).fetch_history()).to_json()
    crs = json.dumps(kube.read_object(done.api_version, done.kind, done.name, ns)) + json.dumps(
        kube.read_object("devops.cubepaas.io/v1alpha1", "PipelineSetting", DEFAULT_SETTING_NAME, ns)
    )
    auth = base64.b64encode(f"robot:{password}".encode()).decode()
    for where, text in [
        ("Jenkinsfile", jenkinsfile),
        ("console", console),
        ("history", history),
        ("CRs", crs),
    ] + [(f"stored log {i}", t) for i, t in enumerate(stored)]:
        assert password not in text, where  # ... and never written out
        assert auth not in text, where


def test_a_deploy_into_a_namespace_outside_the_project_fails_with_the_rbac_message_naming_stage_and_step(
    worker_process: Any,
    kube: Kube,
    kube_api_client: Any,
    step_project: Callable[..., tuple[str, str, str]],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
) -> None:
    ns, _, _ = step_project()
    outside = f"{ns}-outside"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": outside}})
    cm = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: intruder, namespace: {outside}}}\n"
    pipeline = json.dumps({"stages": [{"name": "Deploy", "steps": [{"applyYamlConfig": {"content": cm}}]}]})
    pe, _ = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, pipeline)
    st = wait_terminal(kube, ns, pe.name).status
    assert st is not None and st.phase == ExecutionPhase.FAILED
    step = st.stages[1].steps[0]
    assert step.state == StageState.FAILED
    assert step.message is not None and "forbidden" in step.message
    assert f"system:serviceaccount:{ns}-pipeline:jenkins" in step.message and outside in step.message
    assert st.message is not None
    assert (
        st.message.startswith(f"Step '{step.name}' of stage 'Deploy' failed: ") and "forbidden" in st.message
    )
    assert kube.find_object("v1", "ConfigMap", "intruder", outside) is None


def test_an_oversized_request_leaves_the_agent_pod_pending_and_the_run_shows_the_schedulers_reason(
    worker_process: Any,
    kube: Kube,
    kube_api_client: Any,
    step_project: Callable[..., tuple[str, str, str]],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
) -> None:
    ns, _, _ = step_project()
    pipeline = json.dumps(
        {
            "stages": [
                {
                    "name": "Huge",
                    "steps": [
                        {
                            "runScriptConfig": {"image": "busybox", "shellScript": "echo never"},
                            "resources": {"cpuRequest": "512"},
                        }
                    ],
                }
            ]
        }
    )
    pe, _ = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, pipeline)
    deadline = time.monotonic() + RUN_TIMEOUT
    message = ""
    while time.monotonic() < deadline:
        st = kube.get(PipelineExecution, ns, pe.name).status
        message = (st.message if st else None) or ""
        if message.startswith("Waiting for the build agent to be scheduled:"):
            break
        time.sleep(0.5)
    assert "Insufficient cpu" in message, message
    pods = kube.list_objects("v1", "Pod", namespace=f"{ns}-pipeline", label_selector=EXECUTION_LABEL)
    assert pods and all(p["status"]["phase"] == "Pending" for p in pods)
    kube.merge_patch_object(pe.api_version, pe.kind, pe.name, ns, {"spec": {"cancelled": True}})
    ended = wait_terminal(kube, ns, pe.name).status
    assert ended is not None and ended.phase == ExecutionPhase.ABORTED


def test_an_agent_pod_beyond_the_quota_is_refused_and_the_run_fails_with_the_quotas_message(
    worker_process: Any,
    kube: Kube,
    kube_api_client: Any,
    step_project: Callable[..., tuple[str, str, str]],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
) -> None:
    # The pipeline namespace runs the registry and the object store (External Jenkins): two pods, all the
    # quota allows, so the agent pod is the one too many.
    ns, _, _ = step_project(resourceQuota={"pods": 2})
    pipeline = json.dumps(
        {
            "stages": [
                {"name": "Test", "steps": [{"runScriptConfig": {"image": "busybox", "shellScript": "true"}}]}
            ]
        }
    )
    pe, _ = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, pipeline)
    st = wait_terminal(kube, ns, pe.name).status
    assert st is not None and st.phase == ExecutionPhase.FAILED
    assert st.message is not None and "exceeded quota: cubepaas-executors" in st.message, st.message


CACHE_PIPELINE = """
stages:
- name: Build
  cache: {paths: [/var/cache/demo]}
  steps:
  - runScriptConfig:
      image: busybox
      shellScript: |
        if [ -f /var/cache/demo/seen ]; then echo "cache from run $(cat /var/cache/demo/seen)"; fi
        echo "$CICD_EXECUTION_SEQUENCE" > /var/cache/demo/seen
"""


def test_a_stage_level_cache_lets_the_second_run_on_the_same_node_see_the_first_runs_file(
    worker_process: Any,
    kube: Kube,
    kube_api_client: Any,
    step_project: Callable[..., tuple[str, str, str]],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
    s3_client: Any,
) -> None:
    ns, _, _ = step_project()
    first, sha = run_pipeline(kube, kube_api_client, pipeline_factory, git_repo, ns, CACHE_PIPELINE)
    st1 = wait_terminal(kube, ns, first.name).status
    assert st1 is not None and st1.phase == ExecutionPhase.SUCCESS, st1.message if st1 else None
    after_first = kube.get(Pipeline, ns, "app").status
    assert after_first is not None and after_first.cache_nodes
    warm = after_first.cache_nodes[0].node_name
    second = create_run(kube_api_client, ns, "app", commit=sha)
    with PodRecorder(kube, f"{ns}-pipeline") as recorder:
        st2 = wait_terminal(kube, ns, second.name).status
    assert st2 is not None and st2.phase == ExecutionPhase.SUCCESS, st2
    log1 = s3_client.get_object("pipeline-logs", st1.stages[1].steps[0].log_object).read().decode()
    log2 = s3_client.get_object("pipeline-logs", st2.stages[1].steps[0].log_object).read().decode()
    assert "cache from run" not in log1
    nodes = {p["spec"].get("nodeName") for p in recorder.pods.values()}
    assert nodes == {warm}  # the scheduler put the second run's pod on the node of the first
    assert "cache from run 1" in log2
