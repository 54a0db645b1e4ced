"""Image push end to end: buildah pushes an image to a real distribution registry (Debian's
``docker-registry``), whose notifications go to the receiver process; the Pipeline whose ``imagePush``
matches runs on the worker with the pushed digest in its CICD_IMAGE_* variables.

The registry here is this module's own (started with a notifications endpoint pointing at the test's
receiver), so the test needs nothing of the stack but the apiserver, Temporal and jenkins-lite.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.kube import Kube, encode_secret_data
from crds.execution import PipelineExecution
from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec, Triggers
from crds.reasons import ExecutionPhase
from crds.setting import PipelineSetting
from devstack.proc import free_port

pytestmark = pytest.mark.e2e

PIPELINE = """
stages:
- name: Deploy
  steps:
  - runScriptConfig:
      image: alpine
      shellScript: |
        echo "deploying ${CICD_IMAGE_REPO}:${CICD_IMAGE_TAG}@${CICD_IMAGE_DIGEST}"
        test -n "$CICD_IMAGE_DIGEST"
"""


class Registry:
    def __init__(self, root: Path, notify_url: str, token: str) -> None:
        self.port = free_port()
        self.root = root
        config = {
            "version": 0.1,
            "log": {"level": "info"},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
            "http": {"addr": f"127.0.0.1:{self.port}", "debug": {"addr": f"127.0.0.1:{free_port()}"}},
            "notifications": {
                "endpoints": [
                    {
                        "name": "cubepaas",
                        "url": notify_url,
                        "headers": {"Authorization": [f"Bearer {token}"]},
                        "timeout": "2s",
                        "threshold": 3,
                        "backoff": "1s",
                    }
                ]
            },
        }
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.yml").write_text(yaml.safe_dump(config))
        self.log = root / "registry.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Registry:
        binary = shutil.which("docker-registry") or shutil.which("registry")
        if binary is None:
            pytest.fail(
                "the distribution registry is needed (apt-get install docker-registry)", pytrace=False
            )
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "serve", str(self.root / "config.yml")], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"the registry did not start: {self.log.read_text()[-2000:]}", pytrace=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def registry_for(tmp_path: Path) -> Iterator[Callable[[str, str], Registry]]:
    made: list[Registry] = []

    def make(notify_url: str, token: str) -> Registry:
        registry = Registry(tmp_path / f"registry{len(made)}", notify_url, token).start()
        made.append(registry)
        return registry

    yield make
    for registry in made:
        registry.stop()


def buildah(tmp: Path, *args: str) -> str:
    if shutil.which("buildah") is None:
        pytest.fail("buildah is needed to push an image (apt-get install buildah)", pytrace=False)
    storage = ["--root", str(tmp / "containers"), "--runroot", str(tmp / "run"), "--storage-driver", "vfs"]
    done = subprocess.run(
        ["buildah", *storage, *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"buildah {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def test_an_image_pushed_to_the_registry_runs_the_pipeline_whose_image_push_matches_with_its_digest(
    kube: Kube,
    webhook_receiver: Any,
    worker_process: Any,
    project_namespace: Callable[..., str],
    git_repo: Callable[..., tuple[str, str]],
    registry_for: Callable[[str, str], Registry],
    wait_until: Callable[..., Any],
    tmp_path: Path,
) -> None:
    ns = project_namespace("imgpush")
    token = secrets.token_hex(16)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "registry-hook", "namespace": ns},
            "data": encode_secret_data({"token": token}),
        }
    )
    kube.patch(
        PipelineSetting,
        ns,
        "default",
        {"spec": {"webhook": {"imageTokenSecretRef": {"name": "registry-hook"}}}},
    )
    url, _ = git_repo(PIPELINE)
    for name, image_push in (
        ("deploy", {"repository": "team/app", "tag": "v*"}),
        ("other", {"repository": "team/web"}),
    ):
        kube.create(
            Pipeline(
                metadata=ObjectMeta(name=name, namespace=ns),
                spec=PipelineSpec(
                    repository_url=url, triggers=Triggers.model_validate({"imagePush": image_push})
                ),
            )
        )
    registry = registry_for(f"{webhook_receiver.url}/hooks/registry/{ns}", token)

    context = tmp_path / "context"
    context.mkdir()
    (context / "hello.txt").write_text("hello from the e2e test\n")
    (context / "Containerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    buildah(tmp_path, "bud", "-q", "-t", "localhost/team/app:v1", str(context))
    digest_file = tmp_path / "digest"
    buildah(
        tmp_path,
        "push",
        "--tls-verify=false",
        "--digestfile",
        str(digest_file),
        "localhost/team/app:v1",
        f"docker://127.0.0.1:{registry.port}/team/app:v1",
    )
    digest = digest_file.read_text().strip()
    assert digest.startswith("sha256:")

    def the_run() -> PipelineExecution | None:
        found = kube.list_resources(
            PipelineExecution, ns, label_selector="devops.cubepaas.io/pipeline=deploy"
        )
        return found[0] if found and found[0].is_finished else None

    run = wait_until(the_run, 180, "the deploy pipeline's run of the pushed image to finish")
    assert (run.spec.event, run.spec.triggered_by) == ("image", "image")
    assert run.spec.variables == {
        "CICD_IMAGE_REPO": "team/app",
        "CICD_IMAGE_TAG": "v1",
        "CICD_IMAGE_DIGEST": digest,
    }
    assert run.status is not None and run.status.phase == ExecutionPhase.SUCCESS, run.status
    # Exactly one run (the registry delivers at least once), and none for the pipeline of another repository.
    assert len(kube.list_resources(PipelineExecution, ns)) == 1


def test_an_image_pushed_to_the_stacks_registry_reaches_a_receiver_started_with_the_stack_environment(
    kube: Kube,
    stack_env: dict[str, str],
    worker_process: Any,
    project_namespace: Callable[..., str],
    git_repo: Callable[..., tuple[str, str]],
    wait_until: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """The stack's registry (devstack) notifies ``CUBEPAAS_WEBHOOK_PORT`` with ``CUBEPAAS_REGISTRY_TOKEN``;
    the receiver, given exactly the stack's environment, trusts it for every project."""
    from webhook_client import ReceiverProcess

    for name in ("REGISTRY_HOST", "CUBEPAAS_WEBHOOK_PORT", "CUBEPAAS_REGISTRY_TOKEN"):
        assert stack_env.get(name), f"the stack's environment has no {name}"
    ns = project_namespace("stackreg")
    url, _ = git_repo(PIPELINE)
    repository = f"{ns}/app"
    kube.create(
        Pipeline(
            metadata=ObjectMeta(name="deploy", namespace=ns),
            spec=PipelineSpec(
                repository_url=url,
                triggers=Triggers.model_validate({"imagePush": {"repository": repository}}),
            ),
        )
    )
    receiver = ReceiverProcess(
        dict(stack_env), tmp_path / "webhooks.log", port=int(stack_env["CUBEPAAS_WEBHOOK_PORT"])
    )
    receiver.start()
    try:
        context = tmp_path / "context"
        context.mkdir()
        (context / "hello.txt").write_text("pushed to the stack's registry\n")
        (context / "Containerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
        buildah(tmp_path, "bud", "-q", "-t", f"localhost/{repository}:2.0", str(context))
        digest_file = tmp_path / "digest"
        buildah(
            tmp_path,
            "push",
            "--tls-verify=false",
            "--digestfile",
            str(digest_file),
            f"localhost/{repository}:2.0",
            f"docker://{stack_env['REGISTRY_HOST']}/{repository}:2.0",
        )
        digest = digest_file.read_text().strip()

        def the_run() -> PipelineExecution | None:
            found = kube.list_resources(PipelineExecution, ns)
            return found[0] if found and found[0].is_finished else None

        run = wait_until(the_run, 180, "the run of the image pushed to the stack's registry to finish")
    finally:
        assert receiver.stop() == 0
    assert run.spec.variables == {
        "CICD_IMAGE_REPO": repository,
        "CICD_IMAGE_TAG": "2.0",
        "CICD_IMAGE_DIGEST": digest,
    }
    assert run.status is not None and run.status.phase == ExecutionPhase.SUCCESS, run.status
    assert len(kube.list_resources(PipelineExecution, ns)) == 1
