"""jenkins-lite reads the agent pod from the generated Jenkinsfile's podTemplate, as the kubernetes plugin
builds it, and runs a step in a mount namespace with its hostPath volumes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.jenkins.jenkinsfile import (
    EXECUTION_LABEL,
    JenkinsfileInput,
    groovy_string,
    render_jenkinsfile,
)
from crds.pipeline_file import PipelineConfig
from devstack.jenkins_lite import mountns
from devstack.jenkins_lite.agents import Agent, KubernetesCloud, node_path, pod_wait
from devstack.jenkins_lite.groovy_args import Call, GroovyError, find_call
from devstack.jenkins_lite.mountns import parse
from devstack.jenkins_lite.podtemplate import (
    AgentPodSpec,
    HostMount,
    PodTemplateError,
    agent_pod,
    merge,
    pod_label,
    pod_name,
)

pytestmark = pytest.mark.unit

ROOT = "http://127.0.0.1:8080/"


def _jenkinsfile(**kw: Any) -> str:
    config = PipelineConfig.model_validate(
        {
            "stages": [
                {
                    "name": "Build",
                    "steps": [
                        {
                            "runScriptConfig": {"image": "golang:1.23", "shellScript": "go build ./..."},
                            "cache": {"paths": ["/root/.cache/go-build"]},
                            "resources": {"cpuRequest": "250m", "memoryLimit": "1Gi"},
                        },
                        {"runScriptConfig": {"image": "alpine", "shellScript": "echo it's \\ done"}},
                    ],
                }
            ]
        }
    )
    fields: dict[str, Any] = {
        "config": config,
        "namespace": "team-a",
        "pipeline": "web",
        "run": 7,
        "execution_id": "team-a/web-7/0b1c",
        "git_url": "https://git.example/org/web.git",
        "commit": "4f2a9c0",
        "agent_namespace": "team-a-pipeline",
        "cache_root": "/var/lib/cubepaas/cache",
        "cache_nodes": ["node-2", "node-1"],
    }
    fields.update(kw)
    return render_jenkinsfile(JenkinsfileInput.model_validate(fields))


def test_the_agent_pod_is_the_generated_pod_template() -> None:
    spec = agent_pod(_jenkinsfile(), "team-a-web-7", 1, ROOT)
    assert spec is not None
    pod = spec.pod
    assert spec.namespace == pod["metadata"]["namespace"] == "team-a-pipeline"
    assert pod["spec"]["serviceAccountName"] == "jenkins" == spec.service_account
    assert pod["metadata"]["labels"][EXECUTION_LABEL] == "web-7"
    assert pod["metadata"]["labels"]["jenkins/label"].startswith("team-a-web-7_1-")
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert list(containers) == ["step-0-0", "step-1-0", "step-1-1", "jnlp"]
    assert containers["step-1-0"]["image"] == "golang:1.23"
    assert containers["step-1-0"]["command"] == ["sleep"] and containers["step-1-0"]["args"] == ["99d"]
    assert containers["step-1-0"]["resources"] == {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}
    preferred = pod["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert [(p["weight"], p["preference"]["matchExpressions"][0]["values"]) for p in preferred] == [
        (100, ["node-2"]),
        (80, ["node-1"]),
    ]
    host_volumes = [v for v in pod["spec"]["volumes"] if "hostPath" in v]
    assert len(host_volumes) == 1 and host_volumes[0]["hostPath"]["path"].startswith(
        "/var/lib/cubepaas/cache/"
    )
    # Only the container of the step that caches the path mounts it (the pod YAML's per-container mounts).
    mounts = spec.host_mounts["step-1-0"]
    assert [(m.host_path, m.mount_path) for m in mounts] == [
        (host_volumes[0]["hostPath"]["path"], "/root/.cache/go-build")
    ]
    assert spec.host_mounts["step-1-1"] == []
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_a_script_without_pod_template_has_no_agent_pod() -> None:
    assert agent_pod("// cubepaas-plan: {}\nnode { sh('podTemplate(') }\n", "j", 1, ROOT) is None


def test_pod_names_are_dns_labels_made_from_the_job_and_build() -> None:
    label = pod_label("Team_A.web/7", 12)
    name = pod_name(label)
    assert len(name) <= 63 and name == name.lower()
    assert name.startswith("team-a-web-7-12-")
    assert all(ch.isalnum() or ch == "-" for ch in name)
    assert len(pod_name(pod_label("x" * 200, 1))) <= 63


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_every_value_the_generator_escapes_reads_back_unchanged(value: str) -> None:
    call = find_call(f"// {value!r}\nf(x: {groovy_string(value)}, y: [1, true, null])", "f")
    assert call is not None
    assert call.kwargs == {"x": value, "y": [1, True, None]}


def test_long_values_are_read_back_from_their_concatenated_chunks() -> None:
    value = "é'\\\n" * 9000
    call = find_call(f"f(x: {groovy_string(value)})", "f")
    assert call is not None and call.kwargs["x"] == value


def test_nested_calls_lists_and_maps_are_data() -> None:
    call = find_call(
        "a /* podTemplate( */ podTemplate(c: [g(k: 'v'),], m: [a: 1], e: [:], s: merge()) {", "podTemplate"
    )
    assert call == Call(
        "podTemplate",
        kwargs={"c": [Call("g", kwargs={"k": "v"})], "m": {"a": 1}, "e": {}, "s": Call("merge")},
    )


@pytest.mark.parametrize(
    "text",
    ['podTemplate(yaml: "${env.X}")', "podTemplate(namespace: env.NS)", "podTemplate(namespace: 'x'"],
)
def test_what_is_not_a_literal_is_refused_with_its_line(text: str) -> None:
    with pytest.raises(GroovyError, match="line 1"):
        find_call(text, "podTemplate")
    with pytest.raises(PodTemplateError, match="podTemplate"):
        agent_pod(text, "j", 1, ROOT)


def test_merge_keeps_yaml_fields_and_merges_named_lists_by_name() -> None:
    base = {"spec": {"containers": [{"name": "a", "env": [1]}, {"name": "b"}], "hostNetwork": True}}
    overlay = {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "c"}]}}
    assert merge(base, overlay) == {
        "spec": {
            "containers": [{"name": "b"}, {"name": "a", "env": [1], "image": "x"}, {"name": "c"}],
            "hostNetwork": True,
        }
    }


def test_an_unschedulable_pod_says_why_like_the_plugin() -> None:
    pod = {
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 node(s) were unschedulable.",
                }
            ],
        }
    }
    assert (
        pod_wait(pod).line()
        == "Pod [Pending][Unschedulable] 0/3 nodes are available: 3 node(s) were unschedulable."
    )
    assert pod_wait({"status": {"phase": "Running"}}).reason == ""


def test_host_paths_live_in_a_folder_per_node(tmp_path: Any) -> None:
    assert node_path(tmp_path, "node-1", "/var/cache/x") == tmp_path / "node-1" / "var" / "cache" / "x"


def test_the_mount_launcher_reads_its_mounts_and_command() -> None:
    assert parse(["--bind", "/a", "/b", "--ro-bind", "/c", "/d", "--", "/bin/sh", "-c", "x"]) == (
        [("/a", "/b", False), ("/c", "/d", True)],
        ["/bin/sh", "-c", "x"],
    )
    with pytest.raises(ValueError, match="no command"):
        parse(["--bind", "/a", "/b", "--"])


def test_a_container_without_host_paths_runs_its_step_without_the_mount_launcher(tmp_path: Path) -> None:
    pod = {"metadata": {"name": "agent-1"}}
    mounts = {"step-0-0": [HostMount("/var/cache/x", "/cache")]}
    cloud = KubernetesCloud(None, tmp_path)  # type: ignore[arg-type]  # no request is made
    agent = Agent(cloud, AgentPodSpec("ns", pod, mounts), "node-1", tmp_path / "kubeconfig")
    argv = ["/bin/sh", "-c", "true"]
    assert agent.command("step-1-0", argv) == argv
    assert agent.command("step-0-0", argv) == [
        sys.executable, "-E", "-S", mountns.__file__,
        "--bind", str(tmp_path / "node-1" / "var" / "cache" / "x"), "/cache", "--", *argv,
    ]  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root (CAP_SYS_ADMIN), as in CI")
def test_a_step_sees_its_bind_mount_and_the_host_does_not(tmp_path: Path) -> None:
    source, target = tmp_path / "node-1" / "cache", tmp_path / "mnt" / "cache"
    script = "echo from-step > cache-file; ls"
    launcher = [sys.executable, "-E", "-S", mountns.__file__, "--bind", str(source), str(target), "--"]
    done = subprocess.run(
        [*launcher, "/bin/sh", "-c", f"cd {target} && {script}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cache-file"]
    assert (source / "cache-file").read_text() == "from-step\n"  # written through the mount
    assert target.is_dir() and not any(target.iterdir())  # the host sees only the empty mount point
