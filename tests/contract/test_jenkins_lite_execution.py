"""Execution semantics of docs/jenkins-plan.md: hostile content, timeouts, queue, missing plan."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from jenkins_lite_helpers import Lite, config_xml, plan, stage, step, wait_for

pytestmark = pytest.mark.integration

PAYLOAD = "a ''' b \"\"\" c $HOME ${HOME} ${X:-y} $(touch pwned) `touch pwned` \\ \\\\ \\n \\$ end"


def test_hostile_stage_names_and_scripts_run_literally_and_nothing_else_runs(
    lite: Lite, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    evil_name = f"x'); sh('touch {marker}"
    script = f"cat <<'EOF'\n{PAYLOAD}\nEOF"
    name, n, info = lite.run(plan(stage(evil_name, [step(script)])))
    assert info["result"] == "SUCCESS"
    assert lite.step_log(name, n, "step-1-0").decode() == PAYLOAD + "\n"
    assert [s["name"] for s in lite.stages(name, n)["stages"]] == [evil_name, "step-1-0"]
    assert not marker.exists()
    ws = Path(lite.server.state.home) / "workspace" / f"{name}@{n}"
    assert not (ws / "pwned").exists()


def test_a_step_that_throws_fails_the_step_and_the_build_with_the_exception_in_the_console(
    lite: Lite,
) -> None:
    # /bin/sh cannot be given an argument with a NUL: the step throws before a process starts.
    name, n, info = lite.run(plan(stage("Nul", [step("echo a\x00b"), step("echo fine")])))
    assert info["result"] == "FAILURE"
    by_name = {s["name"]: s for s in lite.stages(name, n)["stages"]}
    assert by_name["step-1-0"]["status"] == "FAILED"
    assert "null byte" in (by_name["step-1-0"]["error"] or {}).get("message", "")
    assert by_name["Nul"]["status"] == "FAILED"
    assert by_name["step-1-1"]["status"] == "SUCCESS"
    console = lite.client.get_build_console_output(name, n)
    assert "ERROR: ValueError: embedded null byte" in console
    assert "Finished: FAILURE" in console
    assert b"embedded null byte" in lite.step_log(name, n, "step-1-0")


def test_plan_env_step_env_and_build_variables_reach_the_step(lite: Lite) -> None:
    s = step('echo "$A|$B|$WORKSPACE|$(pwd)|$BUILD_NUMBER"', env={"B": "from-step"})
    name, n, _ = lite.run(plan(stage("Env", [s]), env={"A": "from-plan", "B": "overridden"}))
    a, b, ws, cwd, num = lite.step_log(name, n, "step-1-0").decode().strip().split("|")
    assert (a, b, num) == ("from-plan", "from-step", str(n))
    assert ws == cwd and Path(ws).is_dir()


def test_a_script_without_the_plan_comment_fails_with_the_documented_message(lite: Lite) -> None:
    name = lite.create(None, script="pipeline { agent any }\n")
    n = lite.start(name)
    info = lite.finished(name, n)
    assert info["result"] == "FAILURE"
    console = lite.client.get_build_console_output(name, n)
    assert "ERROR: jenkins-lite: no cubepaas-plan comment in the pipeline script" in console


def test_a_step_timeout_kills_the_process_group_and_aborts(lite: Lite) -> None:
    s = step("sleep 30 & sleep 30; echo never", timeoutSeconds=0.5)
    t0 = time.monotonic()
    name, n, info = lite.run(plan(stage("Slow", [s])))
    assert time.monotonic() - t0 < 10
    assert info["result"] == "ABORTED"
    by_name = {s["name"]: s for s in lite.stages(name, n)["stages"]}
    assert by_name["step-1-0"]["status"] == "ABORTED" and by_name["Slow"]["status"] == "ABORTED"


def test_a_stage_timeout_and_a_build_timeout_abort_too(lite: Lite) -> None:
    _, _, info = lite.run(plan(stage("S", [step("sleep 30")], timeoutSeconds=0.5)))
    assert info["result"] == "ABORTED"
    _, _, info = lite.run(plan(stage("B", [step("sleep 30")]), timeout=0.5))
    assert info["result"] == "ABORTED"


def test_parallel_steps_run_at_the_same_time(lite: Lite) -> None:
    t0 = time.monotonic()
    _, _, info = lite.run(plan(stage("Par", [step("sleep 1"), step("sleep 1"), step("sleep 1")])))
    assert info["result"] == "SUCCESS"
    assert time.monotonic() - t0 < 2.8


def test_builds_beyond_the_executors_wait_for_the_next_available_executor(
    make_lite: Callable[..., Lite],
) -> None:
    lite = make_lite(executors=1)
    name = lite.create(plan(stage("Hold", [step("sleep 1")])))
    first = lite.start(name, "e/1")
    qid = lite.client.build_job(name, {"CUBEPAAS_EXECUTION_ID": "e/2", "delay": "0sec"})
    item = wait_for(
        lambda: (lambda i: i if i.get("why") == "Waiting for next available executor" else None)(
            lite.client.get_queue_item(qid)
        )
    )
    assert item["_class"] == "hudson.model.Queue$BuildableItem"
    lite.finished(name, first)
    second = wait_for(lambda: lite.client.get_queue_item(qid).get("executable"))
    assert second["number"] == first + 1


def test_a_left_queue_item_expires_after_the_ttl(make_lite: Callable[..., Lite]) -> None:
    lite = make_lite(queue_item_ttl=0.5)
    name = lite.create(plan())
    qid = lite.client.build_job(name, {"CUBEPAAS_EXECUTION_ID": "ttl", "delay": "0sec"})
    wait_for(lambda: lite.client.get_queue_item(qid).get("executable"))
    wait_for(lambda: lite.get(f"queue/item/{qid}/api/json").status_code == 404, timeout=5)


def test_a_job_with_concurrent_builds_disabled_blocks_the_next_build(lite: Lite) -> None:
    name = lite.create(plan(stage("Hold", [step("sleep 1")])), concurrent=False)
    first = lite.start(name, "c/1")
    qid = lite.client.build_job(name, {"CUBEPAAS_EXECUTION_ID": "c/2", "delay": "0sec"})
    item = wait_for(
        lambda: (lambda i: i if i["_class"].endswith("BlockedItem") else None)(
            lite.client.get_queue_item(qid)
        )
    )
    assert item["why"] == f"Build #{first} is already in progress"
    assert wait_for(lambda: lite.client.get_queue_item(qid).get("executable"))["number"] == first + 1


def test_undefined_parameters_are_dropped_and_defaults_fill_the_rest(lite: Lite) -> None:
    name = lite.create(
        plan(stage("P", [step('echo "[$CUBEPAAS_EXECUTION_ID][$OTHER][${EXTRA:-unset}]"')])),
        params=("CUBEPAAS_EXECUTION_ID", "OTHER"),
    )
    r = lite.post(
        f"job/{name}/buildWithParameters",
        params={"CUBEPAAS_EXECUTION_ID": "x", "EXTRA": "no", "delay": "0sec"},
    )
    qid = int(r.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    n = wait_for(lambda: lite.client.get_queue_item(qid).get("executable"))["number"]
    lite.finished(name, n)
    assert lite.step_log(name, n, "step-1-0") == b"[x][][unset]\n"


def test_build_on_a_job_without_parameters_and_build_with_parameters_misuse(lite: Lite) -> None:
    name = lite.create(plan(), params=())
    r = lite.post(f"job/{name}/build?delay=0sec")
    assert r.status_code == 201 and "/queue/item/" in r.headers["Location"]
    assert lite.post(f"job/{name}/buildWithParameters").status_code == 500
    other = lite.create(plan())
    assert lite.post(f"job/{other}/build").status_code == 400


def test_reconfig_takes_effect_for_the_next_build(lite: Lite) -> None:
    name = lite.create(plan(stage("V", [step("echo v1")])))
    lite.client.reconfig_job(name, config_xml(plan(stage("V", [step("echo v2")]))))
    n = lite.start(name)
    lite.finished(name, n)
    assert lite.step_log(name, n, "step-1-0") == b"v2\n"
