"""JSON shapes, status codes and headers of jenkins-lite held to Jenkins' documented ones.

Each expected shape names its source. Types: a type or a tuple of types per field (NoneType: null).
"""

from __future__ import annotations

from typing import Any

import pytest
from jenkins_lite_helpers import Lite, plan, stage, step, wait_for

pytestmark = pytest.mark.integration

NONE = type(None)

# Jenkins core hudson.model.Hudson exported bean (GET /api/json); python-jenkins get_jobs reads jobs[].
HUDSON = {
    "_class": str,
    "jobs": list,
    "mode": str,
    "numExecutors": int,
    "url": str,
    "useCrumbs": bool,
    "useSecurity": bool,
    "views": list,
    "primaryView": dict,
    "quietingDown": bool,
}
JOB_REF = {"_class": str, "name": str, "url": str, "color": str}
# hudson.security.csrf.DefaultCrumbIssuer (python-jenkins maybe_add_crumb reads crumbRequestField and crumb).
CRUMB = {"_class": str, "crumb": str, "crumbRequestField": str}
# WorkflowJob (Job/_api.jelly, @Exported getters; python-jenkins get_job_info)
WORKFLOW_JOB = {
    "_class": str,
    "name": str,
    "fullName": str,
    "url": str,
    "builds": list,
    "lastBuild": (dict, NONE),
    "lastCompletedBuild": (dict, NONE),
    "inQueue": bool,
    "queueItem": (dict, NONE),
    "nextBuildNumber": int,
    "color": str,
    "property": list,
    "firstBuild": (dict, NONE),
    "actions": list,
    "buildable": bool,
    "concurrentBuild": bool,
}
# hudson.model.ParametersDefinitionProperty / StringParameterDefinition as exported in property[].
PARAM_DEF = {"_class": str, "defaultParameterValue": dict, "description": str, "name": str, "type": str}
# hudson.model.Queue$Item (Queue.Item @Exported): id, why, task...; $LeftItem adds cancelled, executable.
QUEUE_ITEM = {
    "_class": str,
    "id": int,
    "why": (str, NONE),
    "actions": list,
    "blocked": bool,
    "buildable": bool,
    "inQueueSince": int,
    "params": str,
    "stuck": bool,
    "task": dict,
    "url": str,
}
LEFT_ITEM = {**QUEUE_ITEM, "cancelled": bool, "executable": (dict, NONE)}
# hudson.model.Run (Run/_api.jelly + @Exported getters) for a WorkflowRun.
RUN = {
    "_class": str,
    "number": int,
    "building": bool,
    "result": (str, NONE),
    "duration": int,
    "timestamp": int,
    "url": str,
    "id": str,
    "fullDisplayName": str,
    "displayName": str,
    "actions": list,
    "queueId": int,
    "estimatedDuration": int,
    "keepLog": bool,
    "inProgress": bool,
    "artifacts": list,
}
# pipeline-stage-view-plugin rest-api README + RunExt / StageNodeExt / AtomFlowNodeExt / FlowNodeLogExt.
RUN_EXT = {
    "_links": dict,
    "id": str,
    "name": str,
    "status": str,
    "startTimeMillis": int,
    "endTimeMillis": int,
    "durationMillis": int,
    "queueDurationMillis": int,
    "pauseDurationMillis": int,
    "stages": list,
}
STAGE_EXT = {
    "_links": dict,
    "id": str,
    "name": str,
    "execNode": str,
    "status": str,
    "startTimeMillis": int,
    "durationMillis": int,
    "pauseDurationMillis": int,
}
ATOM_EXT = {**STAGE_EXT, "parentNodes": list, "parameterDescription": str}
NODE_LOG = {"nodeId": str, "nodeStatus": str, "length": int, "hasMore": bool, "text": str, "consoleUrl": str}
STATUSES = {"NOT_EXECUTED", "ABORTED", "SUCCESS", "IN_PROGRESS", "PAUSED_PENDING_INPUT", "FAILED", "UNSTABLE"}
# PendingInputActionsExt.
PENDING_INPUT = {
    "id": str,
    "proceedText": str,
    "message": str,
    "inputs": list,
    "proceedUrl": str,
    "abortUrl": str,
    "redirectApprovalUrl": str,
}
# credentials plugin CredentialsStoreAction$CredentialsWrapper (@Exported getters).
CREDENTIAL = {
    "_class": str,
    "description": str,
    "displayName": str,
    "fingerprint": NONE,
    "fullName": str,
    "id": str,
    "typeName": str,
}


def assert_shape(obj: Any, shape: dict[str, Any]) -> None:
    assert isinstance(obj, dict), obj
    for key, typ in shape.items():
        assert key in obj, f"missing {key!r} in {sorted(obj)}"
        assert isinstance(obj[key], typ), f"{key!r} is {type(obj[key]).__name__}, want {typ}"


def test_every_answer_carries_x_jenkins_including_errors(lite: Lite) -> None:
    for r in (
        lite.get("api/json"),
        lite.get("job/does-not-exist/api/json"),
        lite.http.get(lite.url + "api/json", auth=("admin", "wrong")),
        lite.post("queue/cancelItem?id=999999"),
    ):
        assert r.headers["X-Jenkins"] == "2.492.3", r.status_code


def test_wrong_token_answers_401_with_www_authenticate(lite: Lite) -> None:
    r = lite.http.get(lite.url + "api/json", auth=("admin", "wrong"))
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic")


def test_anonymous_api_calls_answer_403_but_login_is_open(lite: Lite) -> None:
    import requests

    assert requests.get(lite.url + "api/json", timeout=10).status_code == 403
    assert requests.get(lite.url + "login", timeout=10).status_code == 200


def test_root_api_json_is_a_hudson_with_jobs(lite: Lite) -> None:
    name = lite.create(plan())
    d = lite.json("api/json")
    assert_shape(d, HUDSON)
    assert d["_class"] == "hudson.model.Hudson"
    job = next(j for j in d["jobs"] if j["name"] == name)
    assert_shape(job, JOB_REF)
    assert job["_class"] == "org.jenkinsci.plugins.workflow.job.WorkflowJob"
    assert job["url"] == f"{lite.url}job/{name}/"
    assert job["color"] == "notbuilt"


def test_crumb_issuer_answers_the_default_crumb_issuer_shape(lite: Lite) -> None:
    d = lite.json("crumbIssuer/api/json")
    assert_shape(d, CRUMB)
    assert d["_class"] == "hudson.security.csrf.DefaultCrumbIssuer"
    assert d["crumbRequestField"] == "Jenkins-Crumb"


def test_tree_query_keeps_only_the_requested_fields_and_class(lite: Lite) -> None:
    name = lite.create(plan())
    assert lite.json(f"job/{name}/api/json?tree=name") == {
        "_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
        "name": name,
    }
    d = lite.json("api/json?tree=jobs[name]{0,1}")
    assert set(d) == {"_class", "jobs"} and len(d["jobs"]) == 1 and set(d["jobs"][0]) == {"_class", "name"}


def test_create_item_twice_answers_400_with_x_error(lite: Lite) -> None:
    name = lite.create(plan())
    r = lite.post(f"createItem?name={name}", data=b"<flow-definition/>", headers={"Content-Type": "text/xml"})
    assert r.status_code == 400
    assert r.headers["X-Error"].startswith("A job already exists with the name")


def test_post_only_urls_answer_405_to_get(lite: Lite) -> None:
    name = lite.create(plan())
    assert lite.get(f"job/{name}/build").status_code == 405
    assert lite.get(f"job/{name}/doDelete").status_code == 405


def test_unknown_things_answer_404(lite: Lite) -> None:
    name = lite.create(plan())
    for path in (
        "job/nope/api/json",
        f"job/{name}/7/api/json",
        "queue/item/987654/api/json",
        f"job/{name}/lastBuild/api/json",
        "credentials/store/system/domain/_/credential/nope/api/json",
    ):
        assert lite.get(path).status_code == 404, path


def test_job_api_json_matches_workflow_job_with_parameter_definitions(lite: Lite) -> None:
    name = lite.create(plan())
    d = lite.json(f"job/{name}/api/json")
    assert_shape(d, WORKFLOW_JOB)
    assert d["_class"] == "org.jenkinsci.plugins.workflow.job.WorkflowJob"
    assert (
        d["nextBuildNumber"] == 1 and d["builds"] == [] and d["queueItem"] is None and d["inQueue"] is False
    )
    (prop,) = d["property"]
    assert prop["_class"] == "hudson.model.ParametersDefinitionProperty"
    (pdef,) = prop["parameterDefinitions"]
    assert_shape(pdef, PARAM_DEF)
    assert pdef["_class"] == "hudson.model.StringParameterDefinition"
    assert pdef["name"] == "CUBEPAAS_EXECUTION_ID" and pdef["type"] == "StringParameterDefinition"
    assert pdef["defaultParameterValue"] == {
        "_class": "hudson.model.StringParameterValue",
        "name": "CUBEPAAS_EXECUTION_ID",
        "value": "",
    }


def test_build_with_parameters_answers_201_with_a_queue_location(lite: Lite) -> None:
    name = lite.create(plan())
    r = lite.post(f"job/{name}/buildWithParameters?CUBEPAAS_EXECUTION_ID=a/b/c&delay=0sec")
    assert r.status_code == 201
    assert r.headers["Location"].startswith(f"{lite.url}queue/item/") and r.headers["Location"].endswith("/")


def test_a_waiting_queue_item_says_why_and_has_no_executable_until_it_leaves(lite: Lite) -> None:
    name = lite.create(plan())
    qid = lite.client.build_job(name, {"CUBEPAAS_EXECUTION_ID": "q/w/1"})  # no delay: the 5 s quiet period
    d = lite.json(f"queue/item/{qid}/api/json")
    assert_shape(d, QUEUE_ITEM)
    assert d["_class"] == "hudson.model.Queue$WaitingItem"
    assert d["why"].startswith("In the quiet period. Expires in")
    assert "executable" not in d and "cancelled" not in d  # only $LeftItem exports them
    params = next(a for a in d["actions"] if a.get("_class") == "hudson.model.ParametersAction")
    assert params["parameters"] == [
        {"_class": "hudson.model.StringParameterValue", "name": "CUBEPAAS_EXECUTION_ID", "value": "q/w/1"}
    ]
    job = lite.json(f"job/{name}/api/json")
    assert job["inQueue"] is True and job["queueItem"]["id"] == qid
    assert len(lite.json("queue/api/json")["items"]) >= 1
    # Queue.doCancelItem: 204, then the item is a cancelled $LeftItem; a second cancel cannot cancel it.
    assert lite.post(f"queue/cancelItem?id={qid}").status_code == 204
    left = lite.json(f"queue/item/{qid}/api/json")
    assert_shape(left, LEFT_ITEM)
    assert left["_class"] == "hudson.model.Queue$LeftItem" and left["cancelled"] is True
    assert left["executable"] is None
    assert lite.post(f"queue/cancelItem?id={qid}").status_code == 500
    assert lite.post("queue/cancelItem?id=987654").status_code == 404


def test_a_second_trigger_with_the_same_parameters_folds_into_the_waiting_item(lite: Lite) -> None:
    name = lite.create(plan())
    a = lite.client.build_job(name, {"CUBEPAAS_EXECUTION_ID": "same"})
    b = lite.client.build_job(name, {"CUBEPAAS_EXECUTION_ID": "same"})
    c = lite.client.build_job(name, {"CUBEPAAS_EXECUTION_ID": "other"})
    assert a == b != c
    for q in (a, c):
        lite.post(f"queue/cancelItem?id={q}")


def test_left_queue_item_and_build_api_json_match_jenkins(lite: Lite) -> None:
    name, n, info = lite.run(plan(stage("Build", [step("echo hi")])))
    qid = info["queueId"]
    left = lite.json(f"queue/item/{qid}/api/json")
    assert_shape(left, LEFT_ITEM)
    assert (
        left["_class"] == "hudson.model.Queue$LeftItem" and left["cancelled"] is False and left["why"] is None
    )
    assert left["executable"] == {
        "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
        "number": n,
        "url": f"{lite.url}job/{name}/{n}/",
    }
    assert_shape(info, RUN)
    assert info["_class"] == "org.jenkinsci.plugins.workflow.job.WorkflowRun"
    assert info["result"] == "SUCCESS" and info["id"] == str(n) and info["fullDisplayName"] == f"{name} #{n}"
    classes = [a.get("_class") for a in info["actions"]]
    assert "hudson.model.ParametersAction" in classes and "hudson.model.CauseAction" in classes
    causes = next(a for a in info["actions"] if a.get("_class") == "hudson.model.CauseAction")["causes"]
    assert causes[0]["_class"] == "hudson.model.Cause$UserIdCause"
    assert causes[0]["shortDescription"] == "Started by user admin"
    assert lite.json(f"job/{name}/lastBuild/api/json")["number"] == n
    assert lite.json(f"job/{name}/lastSuccessfulBuild/api/json")["number"] == n
    job = lite.json(f"job/{name}/api/json")
    assert job["color"] == "blue" and job["lastBuild"]["number"] == n and job["nextBuildNumber"] == n + 1


def test_wfapi_describe_lists_user_stages_then_step_stages_in_start_order(lite: Lite) -> None:
    p = plan(
        stage("Clone", [step("echo a")], index=0),
        stage("Test", [step("echo b"), step("echo c")], index=1),
        stage("Skipped", [step("echo never")], index=2, skip=True),
    )
    name, n, _ = lite.run(p)
    d = lite.stages(name, n)
    assert_shape(d, RUN_EXT)
    assert d["name"] == f"#{n}" and d["id"] == str(n) and d["status"] == "SUCCESS"
    assert d["_links"]["self"]["href"] == f"/job/{name}/{n}/wfapi/describe"
    assert [s["name"] for s in d["stages"]] == [
        "Clone",
        "step-0-0",
        "Test",
        "step-1-0",
        "step-1-1",
        "Skipped",
    ]
    for s in d["stages"]:
        assert_shape(s, STAGE_EXT)
        assert s["status"] in STATUSES
        assert "stageFlowNodes" not in s
    assert d["stages"][-1]["status"] == "NOT_EXECUTED"
    (sh,) = lite.stage_nodes(name, n, "step-1-1")
    assert_shape(sh, ATOM_EXT)
    assert sh["name"] == "Shell Script" and sh["parameterDescription"] == "echo c"
    assert sh["_links"]["log"]["href"] == f"/job/{name}/{n}/execution/node/{sh['id']}/wfapi/log"
    log = lite.json(sh["_links"]["log"]["href"])
    assert_shape(log, NODE_LOG)
    assert log == {
        "nodeId": sh["id"],
        "nodeStatus": "SUCCESS",
        "length": 2,
        "hasMore": False,
        "text": "c\n",
        "consoleUrl": f"/job/{name}/{n}/execution/node/{sh['id']}/log",
    }


def test_a_failing_step_fails_its_stages_and_the_build_and_later_stages_are_absent(lite: Lite) -> None:
    p = plan(
        stage("Test", [step("echo ok"), step("echo bad; exit 3")]), stage("Later", [step("echo no")], index=2)
    )
    name, n, info = lite.run(p)
    assert info["result"] == "FAILURE"
    d = lite.stages(name, n)
    assert d["status"] == "FAILED"
    by_name = {s["name"]: s for s in d["stages"]}
    assert set(by_name) == {"Test", "step-1-0", "step-1-1"}
    assert by_name["step-1-0"]["status"] == "SUCCESS"
    assert by_name["step-1-1"]["status"] == "FAILED" and by_name["Test"]["status"] == "FAILED"
    assert by_name["step-1-1"]["error"] == {
        "message": "script returned exit code 3",
        "type": "hudson.AbortException",
    }
    assert lite.step_log(name, n, "step-1-1") == b"bad\n"
    assert lite.json(f"job/{name}/api/json")["color"] == "red"


def test_a_gate_is_a_pending_input_action_until_proceeded(lite: Lite) -> None:
    name = lite.create(plan(stage("Deploy", [step("echo deployed")], gate="gate1")))
    n = lite.start(name)
    wait_for(lambda: lite.stages(name, n)["status"] == "PAUSED_PENDING_INPUT", what="pause")
    d = lite.stages(name, n)
    assert d["_links"]["pendingInputActions"]["href"] == f"/job/{name}/{n}/wfapi/pendingInputActions"
    assert d["stages"][0]["status"] == "PAUSED_PENDING_INPUT"
    (pending,) = lite.json(f"job/{name}/{n}/wfapi/pendingInputActions")
    assert_shape(pending, PENDING_INPUT)
    assert pending["id"] == "Gate1"  # InputStep capitalises the id
    assert pending["abortUrl"] == f"/job/{name}/{n}/input/Gate1/abort"
    assert lite.post(f"job/{name}/{n}/input/gate1/proceedEmpty").status_code == 404  # ids are case-sensitive
    assert lite.post(f"job/{name}/{n}/input/Gate1/proceedEmpty").status_code == 200
    assert lite.finished(name, n)["result"] == "SUCCESS"
    assert lite.json(f"job/{name}/{n}/wfapi/pendingInputActions") == []
    assert lite.post(f"job/{name}/{n}/input/Gate1/proceedEmpty").status_code == 404


def test_credentials_create_get_update_delete_never_reveal_secrets(lite: Lite) -> None:
    base = "credentials/store/system/domain/_/"
    form = {
        "json": '{"": "0", "credentials": {"scope": "GLOBAL", "id": "shape-git", "username": "bob", '
        '"password": "s3cr3t-pw", "description": "", '
        '"$class": "com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl"}}'
    }
    r = lite.post(base + "createCredentials", data=form)
    assert r.status_code == 302  # form submission: redirect to the domain, also when the id exists
    d = lite.json(base + "credential/shape-git/api/json")
    assert_shape(d, CREDENTIAL)
    assert d["_class"] == "com.cloudbees.plugins.credentials.CredentialsStoreAction$CredentialsWrapper"
    assert d["typeName"] == "Username with password" and d["displayName"] == "bob/******"
    assert "s3cr3t-pw" not in lite.get(base + "credential/shape-git/api/json").text
    assert "s3cr3t-pw" not in lite.get(base + "credential/shape-git/config.xml").text
    xml = (
        "<org.jenkinsci.plugins.plaincredentials.impl.StringCredentialsImpl><scope>GLOBAL</scope>"
        "<id>shape-token</id><description>api</description><secret>tok-123</secret>"
        "</org.jenkinsci.plugins.plaincredentials.impl.StringCredentialsImpl>"
    )
    hdr = {"Content-Type": "application/xml"}
    assert lite.post(base + "createCredentials", data=xml, headers=hdr).status_code == 200
    assert lite.post(base + "createCredentials", data=xml, headers=hdr).status_code == 409
    assert lite.json(base + "credential/shape-token/api/json")["typeName"] == "Secret text"
    assert (
        lite.post(
            base + "credential/shape-token/config.xml", data=xml.replace("tok-123", "tok-456"), headers=hdr
        ).status_code
        == 200
    )
    assert lite.post(base + "credential/shape-token/doDelete").status_code == 302
    assert lite.get(base + "credential/shape-token/api/json").status_code == 404
    lite.post(base + "credential/shape-git/doDelete")
