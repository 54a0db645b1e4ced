"""Unmodified python-jenkins 1.8.3 against jenkins-lite: every call the engine makes."""

from __future__ import annotations

import json

import jenkins
import pytest
import requests
from jenkins_lite_helpers import TOKEN, USER, Lite, config_xml, job_name, plan, stage, step, wait_for

pytestmark = pytest.mark.integration


def test_get_version_reads_x_jenkins_once_auth_is_resolved(lite: Lite) -> None:
    assert lite.client.get_version() == "2.492.3"


def test_get_version_as_the_very_first_call_is_anonymous_and_fails_like_on_a_secured_jenkins(
    lite: Lite,
) -> None:
    fresh = jenkins.Jenkins(lite.url, username=USER, password=TOKEN)
    with pytest.raises(jenkins.BadHTTPException):
        fresh.get_version()
    fresh.get_whoami()
    assert fresh.get_version() == "2.492.3"


def test_create_reconfig_get_config_exists_and_delete_job(lite: Lite) -> None:
    j = lite.client
    name = job_name("pj")
    assert not j.job_exists(name)
    j.create_job(name, config_xml(plan(stage("A", [step("echo one")]))))
    assert j.job_exists(name)
    with pytest.raises(jenkins.JenkinsException):
        j.create_job(name, config_xml(plan()))
    new = config_xml(plan(stage("B", [step("echo two")])))
    j.reconfig_job(name, new)
    assert j.get_job_config(name) == new
    assert name in [x["name"] for x in j.get_jobs()]
    j.delete_job(name)
    assert not j.job_exists(name)
    with pytest.raises(jenkins.NotFoundException):
        j.get_job_config(name)


def test_build_job_with_parameters_queue_item_build_info_and_console(lite: Lite) -> None:
    j = lite.client
    name = lite.create(
        plan(stage("Build", [step('echo "id=$CUBEPAAS_EXECUTION_ID job=$JOB_NAME n=$BUILD_NUMBER"')]))
    )
    qid = j.build_job(name, {"CUBEPAAS_EXECUTION_ID": "ns/e1/u1", "delay": "0sec"})
    assert isinstance(qid, int)
    item = wait_for(lambda: (lambda i: i if i.get("executable") else None)(j.get_queue_item(qid)))
    n = item["executable"]["number"]
    info = lite.finished(name, n)
    assert info["result"] == "SUCCESS" and info["queueId"] == qid
    params = next(a for a in info["actions"] if a.get("_class") == "hudson.model.ParametersAction")[
        "parameters"
    ]
    assert {p["name"]: p["value"] for p in params} == {"CUBEPAAS_EXECUTION_ID": "ns/e1/u1"}
    console = j.get_build_console_output(name, n)
    assert console.startswith("Started by user admin\n")
    assert f"id=ns/e1/u1 job={name} n={n}\n" in console
    assert console.endswith("Finished: SUCCESS\n")
    assert j.get_job_info(name)["lastCompletedBuild"]["number"] == n


def test_get_build_stages_and_progressive_console_via_jenkins_request(lite: Lite) -> None:
    j = lite.client
    name = lite.create(plan(stage("Build", [step("for i in 1 2 3; do echo line$i; sleep 0.2; done")])))
    n = lite.start(name)
    text, start, polls = b"", 0, 0
    while True:
        r = j.jenkins_request(
            requests.Request(
                "GET", f"{lite.url}job/{name}/{n}/logText/progressiveText", params={"start": start}
            )
        )
        text += r.content
        start = int(r.headers["X-Text-Size"])
        polls += 1
        if r.headers.get("X-More-Data") != "true":
            break
        wait_for(lambda: True, timeout=0.1)
    assert polls > 1
    assert text.decode() == j.get_build_console_output(name, n)
    assert b"line1\nline2\nline3\n" in text and text.endswith(b"Finished: SUCCESS\n")
    stages = j.get_build_stages(name, n)
    assert [s["name"] for s in stages["stages"]] == ["Build", "step-1-0"]
    assert j.get_build_stages(name, 99) is None  # python-jenkins maps the 404 to None


def test_proceed_a_gate_and_abort_another(lite: Lite) -> None:
    j = lite.client
    p = plan(
        stage("One", [step("echo one")], gate="approve"), stage("Two", [step("echo two")], index=2, gate="Go")
    )
    name = lite.create(p)
    n = lite.start(name)

    def pending() -> list[dict[str, str]] | None:
        acts: list[dict[str, str]] = json.loads(
            j.jenkins_open(requests.Request("GET", f"{lite.url}job/{name}/{n}/wfapi/pendingInputActions"))
        )
        return acts or None

    (first,) = wait_for(pending)
    assert first["id"] == "Approve"
    j.jenkins_open(requests.Request("POST", f"{lite.url}job/{name}/{n}/input/{first['id']}/proceedEmpty"))
    second = wait_for(lambda: [a for a in (pending() or []) if a["id"] == "Go"])
    j.jenkins_open(requests.Request("POST", lite.url + second[0]["abortUrl"].lstrip("/")))
    info = lite.finished(name, n)
    assert info["result"] == "ABORTED"
    by_name = {s["name"]: s["status"] for s in j.get_build_stages(name, n)["stages"]}
    assert by_name == {"One": "SUCCESS", "step-1-0": "SUCCESS", "Two": "ABORTED"}
    console = j.get_build_console_output(name, n)
    assert "Approved by admin" in console and "Rejected by admin" in console and "\ntwo\n" not in console


def test_stop_build_aborts_a_running_step(lite: Lite) -> None:
    j = lite.client
    name = lite.create(plan(stage("Long", [step("echo started; sleep 60")])))
    n = lite.start(name)
    wait_for(lambda: b"started" in lite.step_log_so_far(name, n, "step-1-0"))
    j.stop_build(name, n)
    info = lite.finished(name, n)
    assert info["result"] == "ABORTED"
    stages = {s["name"]: s for s in j.get_build_stages(name, n)["stages"]}
    assert stages["step-1-0"]["status"] == "ABORTED" and stages["Long"]["status"] == "ABORTED"
    assert "Aborted by admin" in j.get_build_console_output(name, n)


def test_a_build_ignoring_sigterm_survives_stop_and_term_and_ends_at_kill(lite: Lite) -> None:
    j = lite.client
    name = lite.create(plan(stage("Stubborn", [step("trap '' TERM; echo armed; sleep 60")])))
    n = lite.start(name)
    wait_for(lambda: b"armed" in lite.step_log_so_far(name, n, "step-1-0"))
    j.stop_build(name, n)
    j.jenkins_open(requests.Request("POST", f"{lite.url}job/{name}/{n}/term"))
    wait_for(lambda: True, timeout=0.5)
    assert j.get_build_info(name, n)["building"] is True
    j.jenkins_open(requests.Request("POST", f"{lite.url}job/{name}/{n}/kill"))
    info = lite.finished(name, n, timeout=10)
    assert info["result"] == "ABORTED"
    assert "Hard kill!" in j.get_build_console_output(name, n)


def test_cancel_queue_removes_a_waiting_item(lite: Lite) -> None:
    j = lite.client
    name = lite.create(plan())
    qid = j.build_job(name, {"CUBEPAAS_EXECUTION_ID": "to-cancel"})
    j.cancel_queue(qid)
    assert j.get_queue_item(qid)["cancelled"] is True
    assert j.get_job_info(name)["inQueue"] is False


def test_delete_job_with_a_running_build_aborts_it(lite: Lite) -> None:
    j = lite.client
    name = lite.create(plan(stage("Long", [step("sleep 60")])))
    lite.start(name)
    j.delete_job(name)
    assert not j.job_exists(name)


def test_credentials_created_over_rest_are_read_back_and_bound_into_steps(lite: Lite) -> None:
    j = lite.client
    base = f"{lite.url}credentials/store/system/domain/_/"
    up = {
        "": "0",
        "credentials": {
            "scope": "GLOBAL",
            "id": "pj-git",
            "username": "git-user",
            "password": "pw-XYZ",
            "description": "git",
            "$class": "com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl",
        },
    }
    tok = {
        "": "0",
        "credentials": {
            "scope": "GLOBAL",
            "id": "pj-token",
            "secret": "tok-ABC",
            "description": "",
            "$class": "org.jenkinsci.plugins.plaincredentials.impl.StringCredentialsImpl",
        },
    }
    for body in (up, tok):
        j.jenkins_request(
            requests.Request("POST", base + "createCredentials", data={"json": json.dumps(body)})
        )
    info = json.loads(j.jenkins_open(requests.Request("GET", base + "credential/pj-git/api/json")))
    assert info["id"] == "pj-git" and "pw-XYZ" not in json.dumps(info)
    creds = [
        {"id": "pj-git", "kind": "usernamePassword", "usernameVariable": "U", "passwordVariable": "P"},
        {"id": "pj-token", "kind": "string", "variable": "T"},
    ]
    script = (
        'echo "$U"; [ "$P" = pw-XYZ ] && echo pw-ok; [ "$T" = tok-ABC ] && echo tok-ok; echo "leak $P $T"'
    )
    name, n, result = lite.run(plan(stage("Use", [step(script, credentials=creds)])))
    assert result["result"] == "SUCCESS"
    log = lite.step_log(name, n, "step-1-0").decode()
    assert log == "git-user\npw-ok\ntok-ok\nleak **** ****\n"  # bound secrets are masked, like Jenkins does
    assert "pw-XYZ" not in j.get_build_console_output(name, n)


def test_a_missing_credential_fails_the_step_before_it_runs(lite: Lite) -> None:
    creds = [{"id": "pj-absent", "kind": "string", "variable": "T"}]
    name, n, info = lite.run(plan(stage("Use", [step("echo ran", credentials=creds)])))
    assert info["result"] == "FAILURE"
    assert "Could not find credentials entry with ID" in lite.client.get_build_console_output(name, n)
    assert b"ran" not in lite.step_log(name, n, "step-1-0")
