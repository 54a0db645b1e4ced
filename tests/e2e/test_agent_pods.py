"""Deploy steps run with the pipeline service account's kubeconfig: RBAC decides what they may touch.

The stack's jenkins-lite runs every build in its agent pod (kube-scheduler places it, kwok runs it); the
steps' KUBECONFIG holds a token of the pod's service account, the ``jenkins`` account of the pipeline
namespace, which our RoleBinding reconcile grants the project's ClusterRole in the project's namespaces only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.messages import PROJECT_LABEL
from crds.reasons import ExecutionPhase, StageState
from worker.runs import create_run

pytestmark = pytest.mark.e2e

TERMINAL = {p.value for p in ExecutionPhase if p.is_terminal}

DEPLOY = """
stages:
- name: Inside
  steps:
  - applyYamlConfig:
      namespace: {inside}
      content: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: deployed-by-pipeline}}
        data: {{where: inside}}
- name: Outside
  steps:
  - applyYamlConfig:
      namespace: {outside}
      content: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: deployed-by-pipeline}}
        data: {{where: outside}}
"""


def test_a_deploy_yaml_step_creates_in_a_project_namespace_and_is_refused_outside_the_project(
    worker_process: Any,
    kube: Kube,
    kube_api_client: Any,
    project_namespace: Callable[..., str],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
    s3_client: Any,
    wait_until: Callable[..., Any],
) -> None:
    ns = project_namespace("deploy")
    inside, outside = f"{ns}-app", f"other-{uuid.uuid4().hex[:6]}"
    kube.ensure(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": inside, "labels": {PROJECT_LABEL: ns}}}
    )
    kube.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": outside}})
    try:
        url, sha = git_repo(DEPLOY.format(inside=inside, outside=outside))
        pipeline_factory(ns, "deploy", url)
        pe = create_run(kube_api_client, ns, "deploy", commit=sha)
        done = wait_until(
            lambda: (
                p
                if (p := kube.get(PipelineExecution, ns, pe.name)).status and p.status.phase in TERMINAL
                else None
            ),
            240,
            "the run to end",
        )
        st = done.status
        assert st is not None
        assert st.phase == ExecutionPhase.FAILED, st.message
        inside_step, outside_step = st.stages[1].steps[0], st.stages[2].steps[0]
        assert inside_step.state == StageState.SUCCESS
        assert outside_step.state == StageState.FAILED
        # The run's message names the step and says why, in the apiserver's words.
        assert st.message is not None
        assert st.message.startswith(f"Step '{outside_step.name}' of stage 'Outside' failed: ")
        assert "forbidden" in st.message

        created = kube.read_object("v1", "ConfigMap", "deployed-by-pipeline", inside)
        assert created["data"] == {"where": "inside"}
        assert kube.find_object("v1", "ConfigMap", "deployed-by-pipeline", outside) is None
        log = s3_client.get_object("pipeline-logs", outside_step.log_object).read().decode()
        assert "forbidden" in log and f"system:serviceaccount:{ns}-pipeline:jenkins" in log
    finally:
        for name in (inside, outside):
            kube.delete_object("v1", "Namespace", name, missing_ok=True)
