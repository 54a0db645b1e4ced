"""The loop ``make demo`` shows: push → build and push an image → the registry's notification → deploy.

The demo's two Pipelines and their files, and the waits that follow one commit through the loop, each
printing what happened and when (seconds since the push).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.messages import PROJECT_LABEL
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec, Triggers
from crds.pipeline_file import PipelineConfig
from crds.reasons import ExecutionPhase, TriggeredBy
from devstack.stack import StackError

BUILD = "demo"
DEPLOY = "demo-deploy"
APPS_NAMESPACE = "demo-apps"
APP = "hello"
IMAGE_REPOSITORY = "demo/hello"
POLL_INTERVAL = "5s"
LOOP_TIMEOUT = 600.0

T = TypeVar("T")

BUILD_FILE = """\
# The demo's build pipeline (devstack/demo_loop.py): SCM polling starts it when main moves.
# The clone stage is added automatically.
stages:
- name: Test
  steps:
  - runScriptConfig:
      image: alpine:3.20
      shellScript: |
        echo "running the unit tests"
        sh ./test.sh
- name: Build
  steps:
  - runScriptConfig:
      image: busybox:1.36
      shellScript: |
        mkdir -p build && cp hello.sh build/hello && cp version.txt build/version.txt
        printf 'FROM %s\\nCOPY hello version.txt /\\nCMD ["/hello"]\\n' \\
          "$CICD_LOCAL_REGISTRY/cubepaas/base:busybox" > build/Dockerfile
        echo "built hello $(cat version.txt)"
- name: Image
  steps:
  - publishImageConfig:
      dockerfilePath: build/Dockerfile
      buildContext: build
      tag: "IMAGE:run-${CICD_EXECUTION_SEQUENCE}"
timeout: 10m
""".replace("IMAGE", IMAGE_REPOSITORY)

DEPLOYMENT = f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {APP}
  namespace: {APPS_NAMESPACE}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {APP}}}
  template:
    metadata:
      labels: {{app: {APP}}}
    spec:
      containers:
      - name: {APP}
        image: "${{CICD_LOCAL_REGISTRY}}/${{CICD_IMAGE_REPO}}@${{CICD_IMAGE_DIGEST}}"
"""

# The deploy pipeline's file lives in the Pipeline (spec.config): an image push, not a commit, starts it.
DEPLOY_CONFIG = {
    "stages": [
        {
            "name": "Deploy",
            "steps": [{"applyYamlConfig": {"content": DEPLOYMENT}, "timeout": "3m"}],
        }
    ]
}


@dataclass(frozen=True)
class LoopResult:
    build: PipelineExecution
    deploy: PipelineExecution
    digest: str
    image: str


def apply_pipelines(kube: Kube, namespace: str, repo_url: str) -> None:
    """The build Pipeline (pollScm on main) and the deploy Pipeline (imagePush of the built repository),
    plus the namespace the app is deployed to (labelled as the project's, so its steps may deploy there)."""
    kube.ensure(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": APPS_NAMESPACE, "labels": {PROJECT_LABEL: namespace}},
        }
    )
    wanted = {
        BUILD: PipelineSpec(
            display_name="make demo: test, build and push the image",
            repository_url=repo_url,
            default_branch="main",
            triggers=Triggers.model_validate(
                {"webhookPullRequest": False, "pollScm": {"interval": POLL_INTERVAL, "branch": "main"}}
            ),
        ),
        DEPLOY: PipelineSpec(
            display_name="make demo: deploy the pushed image by digest",
            repository_url=repo_url,
            default_branch="main",
            config=PipelineConfig.model_validate(DEPLOY_CONFIG),
            triggers=Triggers.model_validate(
                {
                    "webhookPush": False,
                    "webhookPullRequest": False,
                    "webhookTag": False,
                    "imagePush": {"repository": IMAGE_REPOSITORY},
                }
            ),
        ),
    }
    for name, spec in wanted.items():
        pipeline = Pipeline(metadata=ObjectMeta(name=name, namespace=namespace), spec=spec)
        live = kube.find(Pipeline, namespace, name)
        if live is None:
            kube.create(pipeline)
        elif live.spec.to_dict() != spec.to_dict():
            pipeline.metadata.resource_version = live.metadata.resource_version
            pipeline.status = live.status
            kube.replace(pipeline)


def _wait(what: str, probe: Callable[[], T | None], timeout: float = LOOP_TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise StackError(f"demo: {what} did not happen within {timeout:.0f}s")
        time.sleep(0.5)


def wait_polled(kube: Kube, namespace: str) -> str:
    """The commit SCM polling has seen last (its first poll records the head without building it)."""

    def probe() -> str | None:
        status = kube.get(Pipeline, namespace, BUILD).status
        return status.last_polled_commit if status and status.last_polled_commit else None

    return _wait("the first SCM poll of the build pipeline", probe, 120)


def _runs(kube: Kube, namespace: str, pipeline: str) -> list[PipelineExecution]:
    return [
        pe for pe in kube.list_resources(PipelineExecution, namespace) if pe.spec.pipeline_name == pipeline
    ]


class Loop:
    """Follows one pushed commit through the loop, printing each step with the seconds since the push."""

    def __init__(self, kube: Kube, namespace: str, say: Callable[[str], None]) -> None:
        self.kube, self.namespace, self._say = kube, namespace, say
        self.began = time.monotonic()

    def say(self, text: str) -> None:
        self._say(f"[{time.monotonic() - self.began:5.1f}s] {text}")

    def follow(self, sha: str, watch: Callable[[str], PipelineExecution]) -> LoopResult:
        build = _wait(
            f"a build run of commit {sha[:12]}",
            lambda: next(
                (pe for pe in _runs(self.kube, self.namespace, BUILD) if pe.spec.commit == sha), None
            ),
        )
        self.say(
            f"SCM polling saw {sha[:12]}: pipelineexecution/{build.name} created "
            f"(triggeredBy {build.spec.triggered_by.value}, event {build.spec.event.value})"
        )
        if build.spec.triggered_by != TriggeredBy.POLL:
            raise StackError(f"demo: {build.name} was not started by SCM polling")
        build = watch(build.name)
        if build.status is None or build.status.phase != ExecutionPhase.SUCCESS:
            raise StackError(f"demo: the build run {build.name} did not succeed")
        images = [
            step.image for stage in build.status.stages for step in stage.steps if step.image is not None
        ]
        if not images:
            raise StackError(f"demo: the build run {build.name} recorded no published image")
        image = images[-1]
        self.say(f"{build.name} pushed {image.repository}:{image.tag}@{image.digest}")

        def deploy_run() -> PipelineExecution | None:
            for pe in _runs(self.kube, self.namespace, DEPLOY):
                if pe.spec.variables.get("CICD_IMAGE_DIGEST") == image.digest:
                    return pe
            return None

        deploy = _wait("the registry's notification to start the deploy pipeline", deploy_run, 120)
        self.say(
            f"the registry notified the webhook receiver: pipelineexecution/{deploy.name} created "
            f"(triggeredBy {deploy.spec.triggered_by.value}, CICD_IMAGE_TAG "
            f"{deploy.spec.variables.get('CICD_IMAGE_TAG')}, CICD_IMAGE_DIGEST {image.digest})"
        )
        if deploy.spec.triggered_by != TriggeredBy.IMAGE:
            raise StackError(f"demo: {deploy.name} was not started by the image push")
        deploy = watch(deploy.name)
        if deploy.status is None or deploy.status.phase != ExecutionPhase.SUCCESS:
            raise StackError(f"demo: the deploy run {deploy.name} did not succeed")
        pinned = _wait(
            f"Deployment {APPS_NAMESPACE}/{APP} to be Available with the pushed digest",
            lambda: self._available_image(image.digest),
            120,
        )
        self.say(f"deployment/{APP} in {APPS_NAMESPACE} is Available, running {pinned}")
        return LoopResult(build=build, deploy=deploy, digest=image.digest, image=pinned)

    def _available_image(self, digest: str) -> str | None:
        found: dict[str, Any] | None = self.kube.find_object("apps/v1", "Deployment", APP, APPS_NAMESPACE)
        if found is None:
            return None
        image = str(found["spec"]["template"]["spec"]["containers"][0]["image"])
        conditions = found.get("status", {}).get("conditions", [])
        available = any(c["type"] == "Available" and c["status"] == "True" for c in conditions)
        updated = found.get("status", {}).get("updatedReplicas") == found["spec"].get("replicas")
        return image if image.endswith(f"@{digest}") and available and updated else None
