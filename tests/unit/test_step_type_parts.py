"""The step types' building blocks that need no server: reports read back from logs, registry logins, image
references, cache inheritance, the pipeline namespace's quota objects, and the generated scripts run by
/bin/sh (with real git for publishCatalog)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from activities.bootstrap import limit_range_manifest, resource_quota_manifest, with_live_quantities
from activities.errors import ConfigError
from activities.jenkins.jenkinsfile import (
    JenkinsfileError,
    JenkinsfileInput,
    build_plan,
    image_reference,
    publish_catalog_script,
    step_resources,
)
from activities.jenkins.stepreport import read_report
from activities.registry import docker_config_logins, local_registry, registry_host
from crds import build_status
from crds.messages import BootstrapInput
from crds.pipeline_file import Cache, PipelineConfig, PublishCatalogConfig, PublishImageConfig, Resources
from crds.setting import PipelineSettingSpec
from devstack.gitrepo import git
from workflows import endings

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32


def test_a_step_log_reports_its_image_release_and_error_and_the_last_mark_of_a_kind_wins() -> None:
    report = read_report(
        [
            "Building...\n",
            f"##cubepaas image repository=127.0.0.1:5000/demo/app tag=v1 digest={DIGEST}\n",
            "##cubepaas release name=web namespace=team revision=3",
            "##cubepaas error first\n",
            "##cubepaas error kubectl apply was refused: Error from server (Forbidden): no\r\n",
        ]
    )
    assert report.image is not None and report.image.repository == "127.0.0.1:5000/demo/app"
    assert (report.image.tag, report.image.digest) == ("v1", DIGEST)
    assert report.release is not None and (report.release.name, report.release.revision) == ("web", 3)
    assert report.error == "kubectl apply was refused: Error from server (Forbidden): no"


def test_malformed_marks_and_ordinary_lines_report_nothing() -> None:
    report = read_report(
        [
            "echo ##cubepaas image repository=a tag=b digest=" + DIGEST,  # not at the start of the line
            "##cubepaas image repository=a tag=b digest=sha256:short",
            "##cubepaas release name=web namespace=team revision=three",
            "##cubepaas error   ",
            "##cubepaasimage repository=a tag=b digest=" + DIGEST,
        ]
    )
    assert report.empty()


def test_a_long_error_is_cut_to_a_readable_length() -> None:
    report = read_report(["##cubepaas error " + "x" * 5000])
    assert report.error is not None and len(report.error) == 1000 and report.error.endswith("…")


def test_docker_config_logins_accept_auth_and_username_password_under_any_key_form() -> None:
    doc = {
        "auths": {
            "https://registry.example:5000/v1/": {"auth": base64.b64encode(b"robot:p:w").decode()},
            "127.0.0.1:5000": {"username": "u", "password": "s3cret"},
            "ignored.example": {"auth": base64.b64encode(b":nouser").decode()},
        }
    }
    logins = docker_config_logins(json.dumps(doc), "Secret p/regcred")
    assert set(logins) == {"registry.example:5000", "127.0.0.1:5000"}
    assert (logins["registry.example:5000"].username, logins["registry.example:5000"].password) == (
        "robot",
        "p:w",
    )
    assert "s3cret" not in repr(logins)  # never printed by accident
    assert registry_host("http://h:1") == "h:1" and registry_host("h/x") == "h"


def test_a_broken_docker_config_names_the_secret_and_never_its_content() -> None:
    with pytest.raises(ConfigError) as err:
        docker_config_logins("{not json s3cret", "Secret p/regcred")
    assert "Secret p/regcred" in str(err.value) and "s3cret" not in str(err.value)
    with pytest.raises(ConfigError, match="no auths"):
        docker_config_logins("{}", "Secret p/regcred")


def test_the_local_registry_is_the_settings_host_else_the_managed_one() -> None:
    spec = PipelineSettingSpec()
    assert local_registry(spec, "p-pipeline") == "registry.p-pipeline.svc:5000"
    spec.registry.host = "127.0.0.1:5000"
    assert local_registry(spec, "p-pipeline") == "127.0.0.1:5000"


@pytest.mark.parametrize(
    ("tag", "remote", "expected"),
    [
        ("demo/app:v1", None, ("reg:5000", "reg:5000/demo/app", "v1")),
        ("demo/app", None, ("reg:5000", "reg:5000/demo/app", "latest")),
        ("reg:5000/demo/app:${CICD_EXECUTION_SEQUENCE}", None, ("reg:5000", "reg:5000/demo/app", "7")),
        ("team/app:1.0", "quay.example", ("quay.example", "quay.example/team/app", "1.0")),
    ],
)
def test_image_references_are_relative_to_the_project_registry_or_the_remote_one(
    tag: str, remote: str | None, expected: tuple[str, str, str]
) -> None:
    cfg = PublishImageConfig(tag=tag, push_remote=remote is not None, registry=remote)
    assert (
        image_reference(cfg, {"CICD_LOCAL_REGISTRY": "reg:5000", "CICD_EXECUTION_SEQUENCE": "7"}) == expected
    )


@pytest.mark.parametrize("tag", ["Demo/App:v1", "demo/app:v 1", "app:-x"])
def test_an_invalid_image_reference_is_a_config_error_with_the_reference(tag: str) -> None:
    with pytest.raises(JenkinsfileError, match="not a valid image reference"):
        image_reference(PublishImageConfig(tag=tag), {"CICD_LOCAL_REGISTRY": "reg:5000"})


def test_an_invalid_image_in_the_file_names_the_step_where_it_is() -> None:
    config = PipelineConfig.model_validate(
        {"stages": [{"name": "B", "steps": [{"publishImageConfig": {"tag": "Bad/Name"}}]}]}
    )
    inp = JenkinsfileInput(
        config=config, namespace="p", pipeline="a", run=1, execution_id="p/a-1/u", git_url="file:///r",
        commit="c", local_registry="reg:5000",
    )  # fmt: skip
    with pytest.raises(JenkinsfileError, match=r"^stages\[0\]\.steps\[0\]: publishImageConfig"):
        build_plan(inp)


def test_a_step_inherits_pipeline_and_stage_caches_and_can_turn_them_off() -> None:
    config = PipelineConfig.model_validate(
        {
            "cache": {"paths": ["/p"]},
            "stages": [
                {
                    "name": "A",
                    "cache": {"paths": ["/s", "/p"]},
                    "steps": [
                        {"runScriptConfig": {"image": "x", "shellScript": "x"}},
                        {"runScriptConfig": {"image": "x", "shellScript": "x"}, "cache": {"enabled": False}},
                        {"runScriptConfig": {"image": "x", "shellScript": "x"}, "cache": {"paths": ["/own"]}},
                    ],
                },
                {
                    "name": "B",
                    "cache": {"enabled": False},
                    "steps": [
                        {"runScriptConfig": {"image": "x", "shellScript": "x"}},
                        {"runScriptConfig": {"image": "x", "shellScript": "x"}, "cache": {"paths": ["/b"]}},
                    ],
                },
            ],
        }
    )
    assert config.step_cache_paths(0, 0) == ["/p", "/s"]
    assert config.step_cache_paths(0, 1) == []
    assert config.step_cache_paths(0, 2) == ["/p", "/s", "/own"]
    assert config.step_cache_paths(1, 0) == []
    assert config.step_cache_paths(1, 1) == ["/b"]
    with pytest.raises(ValueError, match="absolute"):
        Cache.model_validate({"paths": ["relative"]})


def test_a_steps_own_resources_override_the_executors_field_by_field() -> None:
    executor = Resources(cpu_request="100m", cpu_limit="1", memory_limit="512Mi")
    own = Resources(cpu_limit="2")
    assert step_resources(own, executor) == {"cpuRequest": "100m", "cpuLimit": "2", "memoryLimit": "512Mi"}
    assert step_resources(None, None) == {}


def test_the_settings_quota_and_executor_defaults_become_a_resource_quota_and_a_limit_range() -> None:
    spec = PipelineSettingSpec.model_validate(
        {
            "resourceQuota": {"requestsCpu": "2", "limitsMemory": "4Gi", "pods": 5},
            "executorResources": {"cpuRequest": "0.5", "cpuLimit": 1, "memoryLimit": "1Gi"},
            "persistence": {"enabled": True, "storageClassName": "fast", "jenkinsSize": "5Gi"},
        }
    )
    inp = BootstrapInput.for_setting("p", "p-pipeline", spec)
    assert (inp.storage_class, inp.jenkins_volume_size, inp.persistent_volumes) == ("fast", "5Gi", True)
    quota = resource_quota_manifest(inp)
    assert quota is not None and quota["spec"]["hard"] == {
        "limits.memory": "4Gi",
        "pods": "5",
        "requests.cpu": "2",
    }
    limits = limit_range_manifest(inp)
    assert limits is not None and limits["spec"]["limits"] == [
        {"type": "Container", "defaultRequest": {"cpu": "0.5"}, "default": {"cpu": "1", "memory": "1Gi"}}
    ]
    assert (
        resource_quota_manifest(BootstrapInput.for_setting("p", "p-pipeline", PipelineSettingSpec())) is None
    )
    assert limit_range_manifest(BootstrapInput.for_setting("p", "p-pipeline", PipelineSettingSpec())) is None


def test_quantities_keep_the_spelling_of_the_live_object_when_the_amount_is_the_same() -> None:
    ours: dict[str, Any] = {
        "kind": "LimitRange",
        "spec": {"limits": [{"defaultRequest": {"cpu": "0.5", "memory": "1Gi"}}]},
    }
    live = {"spec": {"limits": [{"defaultRequest": {"cpu": "500m", "memory": "2Gi"}}]}}
    assert with_live_quantities(ours, live)["spec"] == {
        "limits": [{"defaultRequest": {"cpu": "500m", "memory": "1Gi"}}]
    }
    assert with_live_quantities(ours, None) is ours


# ------------------------------------------------------------------------------- scripts run by /bin/sh


def _sh(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "WORKSPACE": str(cwd)}
    return subprocess.run(
        ["/bin/sh", "-c", script], cwd=cwd, env={**base, **env}, capture_output=True, text=True, check=False
    )


def _chart(workspace: Path, version_text: str) -> None:
    chart = workspace / "chart"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text(
        f"apiVersion: v2\nname: web\nversion: 0.1.0\ndescription: {version_text}\n"
    )
    (chart / "templates" / "cm.yaml").write_text("kind: ConfigMap\n")


def test_publish_catalog_pushes_refuses_a_changed_version_and_overwrites_when_asked(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(catalog))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    _chart(workspace, "first")
    cfg = PublishCatalogConfig(
        path="./chart", catalog_template="web", version="0.1.0", git_url=catalog.as_uri(), git_branch="main"
    )
    first = _sh(publish_catalog_script(cfg, {}, with_credentials=False), workspace)
    assert first.returncode == 0, first.stderr
    assert "description: first" in git(
        tmp_path, "--git-dir", str(catalog), "show", "main:templates/web/0.1.0/Chart.yaml"
    )

    again = _sh(publish_catalog_script(cfg, {}, with_credentials=False), workspace)
    assert again.returncode == 0 and "already published with this content" in again.stdout

    _chart(workspace, "second")
    refused = _sh(publish_catalog_script(cfg, {}, with_credentials=False), workspace)
    assert refused.returncode != 0
    assert read_report(refused.stdout.splitlines()).error == (
        "catalog template web version 0.1.0 is already published with different content"
        " (set overwrite: true to replace it)"
    )
    shown = git(tmp_path, "--git-dir", str(catalog), "show", "main:templates/web/0.1.0/Chart.yaml")
    assert "description: first" in shown  # nothing was pushed

    forced = _sh(publish_catalog_script(cfg.model_copy(update={"overwrite": True}), {}, False), workspace)
    assert forced.returncode == 0, forced.stderr
    assert "description: second" in git(
        tmp_path, "--git-dir", str(catalog), "show", "main:templates/web/0.1.0/Chart.yaml"
    )
    assert git(tmp_path, "--git-dir", str(catalog), "rev-list", "--count", "main") == "2"


def test_manifests_and_values_get_the_published_image_and_other_variables_at_run_time(tmp_path: Path) -> None:
    from activities.jenkins.jenkinsfile import substitution_function

    text = 'image: "${CICD_PUBLISHED_IMAGE_REPO}@${CICD_PUBLISHED_IMAGE_DIGEST}"\n'
    text += "pushed: ${CICD_IMAGE_REPO}@${CICD_IMAGE_DIGEST}\n"
    text += "b: ${CICD_GIT_BRANCH} ${HOME} ${CICD_NOT_OURS} ${CICD_GIT_TAG}\n"
    (tmp_path / "in").write_text(text)
    env = {"CICD_PUBLISHED_IMAGE_REPO": "reg:5000/demo/app", "CICD_PUBLISHED_IMAGE_DIGEST": DIGEST}
    env |= {"CICD_IMAGE_REPO": "demo/base", "CICD_IMAGE_DIGEST": DIGEST}  # an image-push run's variables
    env["CICD_GIT_BRANCH"] = 'fix/a&b|c\\d"e'
    script = substitution_function() + "cubepaas_subst in out\ncubepaas_subst in out.json json\n"
    done = _sh(script, tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").read_text() == (
        f'image: "reg:5000/demo/app@{DIGEST}"\n'
        f"pushed: demo/base@{DIGEST}\n"
        'b: fix/a&b|c\\d"e ${HOME} ${CICD_NOT_OURS} ${CICD_GIT_TAG}\n'
    )
    # In JSON values, quotes and backslashes of a value are escaped so the document stays valid.
    assert 'b: fix/a&b|c\\\\d\\"e ' in (tmp_path / "out.json").read_text()


# ------------------------------------------------------------------------------- status from reports


def _status() -> tuple[Any, PipelineConfig]:
    from crds.execution import PipelineExecutionStatus
    from workflows import progress

    config = PipelineConfig.model_validate(
        {
            "stages": [
                {
                    "name": "Ship",
                    "steps": [
                        {"publishImageConfig": {"tag": "demo/app:v1"}},
                        {"applyYamlConfig": {"content": "kind: ConfigMap", "namespace": "elsewhere"}},
                    ],
                }
            ]
        }
    )
    status = PipelineExecutionStatus()
    progress.init_stages(status, config, "main", "push")
    return status, config


def test_a_stored_report_records_the_image_and_its_error_becomes_the_steps_and_the_runs_message() -> None:
    from crds.execution import PublishedImage
    from crds.messages import BuildSnapshot, StepReport, StepSnapshot

    status, config = _status()
    snap = BuildSnapshot(
        building=False,
        result="FAILURE",
        steps=[
            StepSnapshot(stage=1, step=0, state="Success", started_ms=1, ended_ms=2),
            StepSnapshot(stage=1, step=1, state="Failed", started_ms=1, ended_ms=2, message="exit code 1"),
        ],
    )
    build_status.apply_snapshot(status, snap, config)
    image = PublishedImage(repository="reg:5000/demo/app", tag="v1", digest=DIGEST)
    build_status.set_log_object(status, 1, 0, "log-0", StepReport(image=image))
    forbidden = 'kubectl apply was refused: Error from server (Forbidden): ... cannot patch "x"'
    build_status.set_log_object(status, 1, 1, "log-1", StepReport(error=forbidden))
    build_status.apply_snapshot(status, snap, config)  # a later snapshot keeps the report's words
    steps = status.stages[1].steps
    assert steps[0].image == image and steps[0].log_object == "log-0"
    assert steps[1].message == forbidden
    ending = endings.for_build(status, snap, rejected=False, stop_requested=False)
    assert ending.phase == "Failed"
    assert ending.message == f"Step '{steps[1].name}' of stage 'Ship' failed: {forbidden}"


def test_an_unscheduled_agent_shows_the_schedulers_reason_until_it_runs() -> None:
    from crds.messages import BuildSnapshot

    status, config = _status()
    reason = "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
    build_status.apply_snapshot(status, BuildSnapshot(agent_waiting=reason), config)
    assert status.message == f"Waiting for the build agent to be scheduled: {reason}"
    assert BuildSnapshot(agent_waiting=reason).key() != BuildSnapshot().key()  # follow returns on a change
    build_status.apply_snapshot(status, BuildSnapshot(), config)
    assert status.message == "Building"


def test_a_build_that_failed_outside_every_step_names_the_consoles_error() -> None:
    from crds.messages import BuildSnapshot

    status, config = _status()
    refused = 'ERROR: pods "agent" is forbidden: exceeded quota: cubepaas-executors, requested: pods=1'
    snap = BuildSnapshot(building=False, result="FAILURE", failure=refused)
    build_status.apply_snapshot(status, snap, config)
    ending = endings.for_build(status, snap, rejected=False, stop_requested=False)
    assert ending.message == f"The build ended FAILURE: {refused}"


def test_the_consoles_error_keeps_the_lines_that_continue_it() -> None:
    from activities.build import console_failure

    console = (
        "Started by user admin\n[Pipeline] podTemplate\n"
        "ERROR: Unable to create pod kubernetes p-pipeline/agent-x.\n"
        'pods "agent-x" is forbidden: exceeded quota: cubepaas-executors, requested: pods=1\n'
        "[Pipeline] End of Pipeline\nFinished: FAILURE\n"
    )
    assert console_failure(console) == (
        "ERROR: Unable to create pod kubernetes p-pipeline/agent-x. "
        'pods "agent-x" is forbidden: exceeded quota: cubepaas-executors, requested: pods=1'
    )
    assert console_failure("Finished: SUCCESS\n") is None


def test_the_registry_of_a_step_is_known_before_its_tags_variables_are() -> None:
    from activities.jenkins.jenkinsfile import image_registry

    # The login is bound when the job is written, from the tag's registry alone (the tag may use variables).
    step = PublishImageConfig(tag="demo/app:run-${CICD_EXECUTION_SEQUENCE}")
    assert image_registry(step, "reg:5000") == "reg:5000"
    assert image_registry(PublishImageConfig(tag="a", push_remote=True, registry="quay.example/"), "r") == (
        "quay.example"
    )
