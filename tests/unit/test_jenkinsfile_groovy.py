"""Generated Jenkinsfiles are valid Groovy and say exactly what the pipeline file says.

One JVM (tests/groovy/harness.groovy) compiles every generated script with Groovy 2.4 (the Groovy that
Jenkins' Pipeline runs), executes it with stub Pipeline steps that record their calls, and evaluates
literal round trips. Needs Debian's ``groovy`` package (``apt-get install -y groovy``) and fails without it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.jenkins.jenkinsfile import (
    JenkinsfileInput,
    PodExtension,
    PodVolume,
    build_plan,
    groovy_string,
    published_image_prelude,
    render_jenkinsfile,
)
from crds.pipeline_file import PipelineConfig

pytestmark = pytest.mark.unit

HARNESS = Path(__file__).resolve().parents[1] / "groovy" / "harness.groovy"
INSTALL_HINT = "install it with: apt-get update && apt-get install -y groovy (and set JAVA_HOME to the JDK)"

HOSTILE_NAME = "x'); sh('touch /tmp/pwned"
HOSTILE_SCRIPT = (
    "echo '''triple''' \"\"\"dq\"\"\" $HOME ${HOME} ${env.X} \\\\ \\n \\u0027 done\n"
    "echo \"it's\" '\\' # `id` $(id -u)\n"
)


def _groovy_env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("JAVA_HOME"):
        for candidate in ("/usr/lib/jvm/default-java", "/usr/lib/jvm/java-17-openjdk-amd64"):
            if Path(candidate, "bin", "java").exists():
                env["JAVA_HOME"] = candidate
                break
    return env


def _config(stages: list[dict[str, Any]], **top: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({"stages": stages, **top})


def _inp(config: PipelineConfig, **kw: Any) -> JenkinsfileInput:
    fields: dict[str, Any] = {
        "config": config,
        "namespace": "team-a",
        "pipeline": "web",
        "run": 7,
        "execution_id": "team-a/web-7/0b1c",
        "git_url": "https://git.example/org/web.git",
        "commit": "4f2a9c0",
        "branch": "main",
        "event": "push",
        "local_registry": "registry.local:5000",
    }
    fields.update(kw)
    return JenkinsfileInput.model_validate(fields)


def _cases() -> dict[str, JenkinsfileInput]:
    all_types = _config(
        [
            {
                "name": "Build",
                "timeout": "20m",
                "steps": [
                    {
                        "runScriptConfig": {"image": "golang:1.22", "shellScript": "go test ./..."},
                        "env": {"CGO_ENABLED": "0", "TAG": "v-${CICD_GIT_COMMIT}"},
                        "envFrom": [
                            {"sourceName": "my-secret", "sourceKey": "token", "targetKey": "API_TOKEN"}
                        ],
                        "timeout": "10m",
                        "resources": {"cpuLimit": "1", "memoryLimit": "1Gi"},
                    },
                    {"publishImageConfig": {"tag": "app:${CICD_GIT_COMMIT}"}},
                ],
            },
            {
                "name": "Approve and deploy",
                "approval": True,
                "steps": [
                    {"applyYamlConfig": {"path": "./deploy/app.yaml", "namespace": "prod"}},
                    {"applyYamlConfig": {"content": "kind: ConfigMap\nmetadata: {name: 'x'}\n"}},
                    {
                        "applyAppConfig": {
                            "chart": "./charts/app",
                            "name": "app",
                            "targetNamespace": "prod",
                            "values": {"replicas": 2, "q": "it's $x"},
                        }
                    },
                    {
                        "publishCatalogConfig": {
                            "path": "./charts/app",
                            "catalogTemplate": "app",
                            "version": "1.2.0",
                            "gitUrl": "https://git.example/catalog.git",
                            "gitBranch": "main",
                        }
                    },
                ],
            },
            {
                "name": "Only on tags",
                "when": {"event": "tag"},
                "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": "echo never"}}],
            },
        ],
        timeout="45m",
    )
    hostile = _config(
        [
            {
                "name": HOSTILE_NAME,
                "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": HOSTILE_SCRIPT}}],
            },
            {
                "name": "ünïcödé 😀 \\ ' \" $x ${y}",
                "steps": [
                    {
                        "runScriptConfig": {"image": "alpine", "shellScript": "printf '%s\\n' 'ü😀'"},
                        "env": {"V": "a'b\\c\n$d"},
                    }
                ],
            },
        ]
    )
    long_script = _config(
        [
            {
                "name": "Long",
                "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": "echo é😀'\n" * 20_000}}],
            }
        ]
    )
    cached = _config(
        [
            {
                "name": "Build",
                "cache": {"paths": ["/root/.cache/go-build"]},
                "steps": [
                    {"runScriptConfig": {"image": "golang:1.22", "shellScript": "go build ./..."}},
                    {
                        "runScriptConfig": {"image": "maven:3", "shellScript": "mvn -q package"},
                        "cache": {"paths": ["/root/.m2", "/go/pkg/mod"]},
                    },
                    {
                        "runScriptConfig": {"image": "alpine", "shellScript": "echo fresh"},
                        "cache": {"enabled": False},
                    },
                ],
            },
            {
                "name": "Lint",
                "cache": {"enabled": False},
                "steps": [
                    {"runScriptConfig": {"image": "alpine", "shellScript": "echo lint"}},
                    {
                        "runScriptConfig": {"image": "maven:3", "shellScript": "mvn -q verify"},
                        "cache": {"paths": ["/root/.m2"]},
                    },
                ],
            },
        ],
        cache={"paths": ["/go/pkg/mod"]},
    )
    return {
        "cached": _inp(cached, cache_root="/var/lib/cubepaas-devops/cache", cache_nodes=["node-b", "node-a"]),
        "all_types": _inp(
            all_types,
            git_credential_id="team-a-web-7-git",
            env_from_credentials={"my-secret/token": "team-a-web-7-my-secret-token"},
        ),
        "hostile": _inp(hostile, branch="feat/x'y", execution_id="team-a/web-7/$(id)"),
        "long_script": _inp(long_script),
        "pull_request": _inp(all_types, event="pull_request", secrets_withheld=True),
    }


def _nasty_strings(n: int) -> list[str]:
    rnd = random.Random(1234)
    alphabet = [
        *"ab'\"\\$ {}\n\r\t\b\f\x00\x01\x1b\x7f/()",
        "é",
        "ü",
        "\u2028",
        "\u0085",
        "\ufeff",
        "😀",
        "\\u0027",
        "\\u000a",
        "'''",
        '"""',
        "${x}",
    ]
    return ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40))) for _ in range(n)] + [
        "",
        "\\",
        "'",
        "\\u0041",
        "\\\\u0041",
        "x" * 70_000,
    ]


@pytest.fixture(scope="module")
def groovy_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    groovy = shutil.which("groovy")
    if groovy is None:
        pytest.fail(f"the groovy command is missing: {INSTALL_HINT}")
    src = tmp_path_factory.mktemp("groovy-in")
    out = tmp_path_factory.mktemp("groovy-out")
    for name, inp in _cases().items():
        (src / f"{name}.groovy").write_text(render_jenkinsfile(inp), encoding="utf-8")
    strings = _nasty_strings(400)
    body = "return [\n" + ",\n".join(groovy_string(s) for s in strings) + "\n]\n"
    (src / "eval_literals.groovy").write_text(body, encoding="utf-8")
    proc = subprocess.run(
        [groovy, str(HARNESS), str(src), str(out)],
        env=_groovy_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"groovy failed ({INSTALL_HINT}):\n{proc.stdout}\n{proc.stderr}"
    results = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in out.glob("*.json")}
    results["__strings__"] = strings
    return results


def _calls(results: dict[str, Any], name: str) -> list[dict[str, Any]]:
    result = results[name]
    assert result["ok"], result.get("error")
    calls: list[dict[str, Any]] = result["calls"]
    return calls


def test_cached_paths_become_host_path_volumes_and_recent_nodes_are_preferred(
    groovy_results: dict[str, Any],
) -> None:
    pod = _calls(groovy_results, "cached")[0]
    assert pod.get("volumes") is None  # podTemplate volumes would be mounted in every container
    spec = yaml.safe_load(pod["yaml"])
    volumes = {v["name"]: v["hostPath"] for v in spec["spec"]["volumes"]}
    assert len(volumes) == 3  # a path shared by steps and levels: once
    for host_path in volumes.values():
        assert host_path["path"].startswith("/var/lib/cubepaas-devops/cache/team-a/web/")
        assert host_path["type"] == "DirectoryOrCreate"
    mounts = {
        c["name"]: sorted(m["mountPath"] for m in c["volumeMounts"]) for c in spec["spec"]["containers"]
    }
    assert mounts == {
        # pipeline level (/go/pkg/mod) + stage level (/root/.cache/go-build)
        "step-1-0": ["/go/pkg/mod", "/root/.cache/go-build"],
        # ... + the step's own
        "step-1-1": ["/go/pkg/mod", "/root/.cache/go-build", "/root/.m2"],
        # step-1-2 turned the cache off; stage Lint turned it off, and its second step caches its own path
        "step-2-1": ["/root/.m2"],
    }
    preferred = spec["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert [(p["weight"], p["preference"]["matchExpressions"][0]["values"]) for p in preferred] == [
        (100, ["node-b"]),
        (80, ["node-a"]),
    ]
    assert spec["metadata"]["labels"]["devops.cubepaas.io/execution"]


def test_without_a_cache_root_or_cached_paths_the_pod_gets_no_volumes() -> None:
    from activities.jenkins.jenkinsfile import pod_extension

    cases = _cases()
    assert pod_extension(cases["cached"].model_copy(update={"cache_root": None})).volumes == []
    assert pod_extension(cases["all_types"].model_copy(update={"cache_root": "/c"})).volumes == []
    first_run = pod_extension(cases["cached"].model_copy(update={"cache_nodes": []}))
    assert len(first_run.volumes) == 3 and first_run.yaml is None


def test_literals_round_trip_through_groovy(groovy_results: dict[str, Any]) -> None:
    result = groovy_results["eval_literals"]
    assert result["ok"], result.get("error")
    assert result["value"] == groovy_results["__strings__"]


@pytest.mark.parametrize("name", ["all_types", "hostile", "long_script", "pull_request", "cached"])
def test_generated_script_compiles_and_runs(groovy_results: dict[str, Any], name: str) -> None:
    calls = _calls(groovy_results, name)
    assert calls[0]["step"] == "podTemplate"
    assert calls[0]["serviceAccount"] == "jenkins"
    assert calls[1] == {"step": "node", "label": "cubepaas-test-pod"}


@pytest.mark.parametrize("name", ["all_types", "hostile", "long_script", "pull_request", "cached"])
def test_stages_and_scripts_reach_jenkins_literally(groovy_results: dict[str, Any], name: str) -> None:
    inp = _cases()[name]
    plan = build_plan(inp)
    calls = _calls(groovy_results, name)
    stage_names = [c["name"] for c in calls if c["step"] == "stage"]
    expected_names: list[str] = []
    for stage in plan["stages"]:
        expected_names.append(stage["name"])
        expected_names += [s["node"] for s in stage["steps"]]
    assert stage_names == expected_names
    shs = {c["label"]: c for c in calls if c["step"] == "sh"}
    for stage in plan["stages"]:
        for step in stage["steps"]:
            sh = shs.pop(step["node"])
            assert sh["script"] == step["script"]
            assert sh["container"] == step["node"]
            assert sh["stages"] == [stage["name"], step["node"]]
            assert sh["env"] == [f"{k}={v}" for k, v in {**plan["env"], **step["env"]}.items()]
            assert [c["credentialsId"] for c in sh["credentials"]] == [c["id"] for c in step["credentials"]]
    assert not shs, "no sh call beyond the plan's steps"
    assert [c["step"] for c in calls].count("sh") == sum(len(s["steps"]) for s in plan["stages"])


def test_gates_precede_every_user_stage(groovy_results: dict[str, Any]) -> None:
    calls = _calls(groovy_results, "all_types")
    top = [
        c
        for c in calls
        if c["step"] == "input" or (c["step"] == "stage" and not c["name"].startswith("step-"))
    ]
    assert [(c["step"], c.get("id") or c.get("name")) for c in top] == [
        ("stage", "Clone"),
        ("input", "Gate1"),
        ("stage", "Build"),
        ("input", "Gate2"),
        ("stage", "Approve and deploy"),
        ("input", "Gate3"),
        ("stage", "Only on tags"),
    ]
    skipped = [c for c in calls if c["step"] == "echo" and c["stages"] == ["Only on tags"]]
    assert skipped, "the skipped stage only echoes"


def test_hostile_input_runs_literally(groovy_results: dict[str, Any]) -> None:
    calls = _calls(groovy_results, "hostile")
    names = [c["name"] for c in calls if c["step"] == "stage"]
    assert HOSTILE_NAME in names
    sh = next(c for c in calls if c["step"] == "sh" and c["label"] == "step-1-0")
    assert sh["script"] == "set -e\n" + published_image_prelude() + HOSTILE_SCRIPT
    assert "CICD_EXECUTION_ID=team-a/web-7/$(id)" in sh["env"]
    assert "CICD_GIT_BRANCH=feat/x'y" in sh["env"]
    assert not any(c["step"] == "sh" and "pwned" in c["script"] for c in calls)


def test_timeouts_and_resources(groovy_results: dict[str, Any]) -> None:
    calls = _calls(groovy_results, "all_types")
    times = [c["time"] for c in calls if c["step"] == "timeout"]
    assert times[0] == 45 * 60  # pipeline
    assert 20 * 60 in times and 10 * 60 in times  # stage, step
    containers = {c["name"]: c for c in calls[0]["containers"]}
    assert containers["step-1-0"]["resourceLimitCpu"] == "1"
    assert containers["step-1-0"]["resourceLimitMemory"] == "1Gi"
    assert containers["step-1-0"]["image"] == "golang:1.22"
    assert containers["step-0-0"]["image"].startswith("alpine/git")


def test_pull_requests_from_forks_get_no_secrets(groovy_results: dict[str, Any]) -> None:
    calls = _calls(groovy_results, "pull_request")
    step = next(c for c in calls if c["step"] == "sh" and c["label"] == "step-1-0")
    assert step["credentials"] == []


def test_a_pull_request_from_the_same_repository_gets_its_envfrom_secrets() -> None:
    from activities.jenkins.jenkinsfile import build_plan

    inp = _cases()["all_types"].model_copy(update={"event": "pull_request"})
    plan = build_plan(inp)
    step = plan["stages"][1]["steps"][0]
    assert step["credentials"] == [
        {"id": "team-a-web-7-my-secret-token", "kind": "string", "variable": "API_TOKEN"}
    ]


def test_extra_cicd_variables_reach_the_steps_but_cannot_override_the_built_in_ones() -> None:
    from activities.jenkins.jenkinsfile import cicd_variables

    inp = _cases()["long_script"].model_copy(
        update={
            "extra_variables": {"CICD_IMAGE_DIGEST": "sha256:abc", "CICD_GIT_COMMIT": "evil", "PATH": "/x"}
        }
    )
    variables = cicd_variables(inp)
    assert variables["CICD_IMAGE_DIGEST"] == "sha256:abc"
    assert variables["CICD_GIT_COMMIT"] == "4f2a9c0"
    assert "PATH" not in variables


def test_pod_extension_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook's volumes and YAML land in podTemplate (no JVM needed: checks the rendered arguments)."""
    import activities.jenkins.jenkinsfile as jf

    monkeypatch.setattr(
        jf,
        "pod_extension",
        lambda inp, nodes=None: PodExtension(
            volumes=[
                PodVolume(
                    name="cache-1",
                    host_path="/var/cache/x'y",
                    mount_path="/root/.cache",
                    containers=["step-1-0"],
                )
            ],
            yaml="spec:\n  affinity: {}\n",
        ),
    )
    script = jf.render_jenkinsfile(_cases()["all_types"])
    assert "- hostPath:\\n      path: /var/cache/x\\'y\\n" in script
    assert "volumeMounts:\\n    - mountPath: /root/.cache\\n      name: cache-1\\n" in script
    # The hook's YAML is merged into the pod YAML that labels the agent pod with its execution.
    assert "spec:\\n  affinity: {}\\n" in script
    assert "metadata:\\n  labels:\\n    devops.cubepaas.io/execution: " in script
