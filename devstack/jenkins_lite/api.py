"""JSON shapes of Jenkins' REST API (core `api/json`, Pipeline Stage View `wfapi`, credentials plugin).

Every function is called with State.lock held. `root` is the absolute root URL ending in "/".
Stage View links are context-relative ("/job/..."), core `url` fields are absolute, like in Jenkins.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

from devstack.jenkins_lite.model import Build, FlowNode, Job, QueueItem, State, now_ms
from devstack.jenkins_lite.runner import STRING_CREDENTIALS, USERNAME_PASSWORD, quiet_period_why

WORKFLOW_JOB = "org.jenkinsci.plugins.workflow.job.WorkflowJob"
WORKFLOW_RUN = "org.jenkinsci.plugins.workflow.job.WorkflowRun"
WFAPI_LOG_MAX = 10 * 1024  # FlowNodeLogExt.maxReturnChars


def enc(name: str) -> str:
    """hudson.Util.rawEncode."""
    return quote(name, safe="")


def job_path(name: str) -> str:
    return f"job/{enc(name)}/"


def build_path(b: Build) -> str:
    return f"{job_path(b.job)}{b.number}/"


_COLORS = {
    "SUCCESS": "blue",
    "FAILURE": "red",
    "ABORTED": "aborted",
    "UNSTABLE": "yellow",
    "NOT_BUILT": "notbuilt",
}


def color(job: Job) -> str:
    done = job.last_matching(None)
    base = _COLORS.get(done.result or "", "notbuilt") if done is not None else "notbuilt"
    last = job.last_build
    return base + "_anime" if last is not None and last.building else base


def build_ref(b: Build | None, root: str) -> dict[str, Any] | None:
    if b is None:
        return None
    return {"_class": WORKFLOW_RUN, "number": b.number, "url": root + build_path(b)}


def job_ref(job: Job, root: str) -> dict[str, Any]:
    return {"_class": WORKFLOW_JOB, "name": job.name, "url": root + job_path(job.name), "color": color(job)}


def hudson(state: State, root: str) -> dict[str, Any]:
    return {
        "_class": "hudson.model.Hudson",
        "assignedLabels": [{"name": "built-in"}],
        "mode": "NORMAL",
        "nodeDescription": "the Jenkins controller's built-in node",
        "nodeName": "",
        "numExecutors": state.executors,
        "description": None,
        "jobs": [job_ref(j, root) for j in sorted(state.jobs.values(), key=lambda j: j.name.lower())],
        "overallLoad": {},
        "primaryView": {"_class": "hudson.model.AllView", "name": "all", "url": root},
        "quietDownReason": None,
        "quietingDown": False,
        "slaveAgentPort": -1,
        "unlabeledLoad": {"_class": "jenkins.model.UnlabeledLoadStatistics"},
        "url": root,
        "useCrumbs": True,
        "useSecurity": True,
        "views": [{"_class": "hudson.model.AllView", "name": "all", "url": root}],
    }


def param_definitions(job: Job) -> list[dict[str, Any]]:
    if job.config is None:
        return []
    out: list[dict[str, Any]] = []
    for p in job.config.params:
        value: Any = p.default == "true" if p.type_name == "BooleanParameterDefinition" else p.default
        d: dict[str, Any] = {
            "_class": p.cls,
            "defaultParameterValue": {"_class": p.value_class, "name": p.name, "value": value},
            "description": p.description,
            "name": p.name,
            "type": p.type_name,
        }
        if p.choices:
            d["choices"] = p.choices
        if p.type_name == "PasswordParameterDefinition":
            d["defaultParameterValue"] = {"_class": p.value_class, "name": p.name}
        out.append(d)
    return out


def job_json(state: State, job: Job, root: str) -> dict[str, Any]:
    defs = param_definitions(job)
    props: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = [{}]
    if defs:
        props.append({"_class": "hudson.model.ParametersDefinitionProperty", "parameterDefinitions": defs})
        actions.insert(0, props[0])
    builds = sorted(job.builds.values(), key=lambda b: b.number, reverse=True)[:100]
    queued = [i for i in state.queue.values() if i.job == job.name and i.state != "left"]
    concurrent = job.config.concurrent if job.config is not None else True
    return {
        "_class": WORKFLOW_JOB,
        "actions": actions,
        "description": job.config.description if job.config is not None else "",
        "displayName": job.name,
        "displayNameOrNull": None,
        "fullDisplayName": job.name,
        "fullName": job.name,
        "name": job.name,
        "url": root + job_path(job.name),
        "buildable": True,
        "builds": [build_ref(b, root) for b in builds],
        "color": color(job),
        "firstBuild": build_ref(job.builds[min(job.builds)] if job.builds else None, root),
        "healthReport": [],
        "inQueue": bool(queued),
        "keepDependencies": False,
        "lastBuild": build_ref(job.last_build, root),
        "lastCompletedBuild": build_ref(job.last_matching(None), root),
        "lastFailedBuild": build_ref(job.last_matching({"FAILURE"}), root),
        "lastStableBuild": build_ref(job.last_matching({"SUCCESS"}), root),
        "lastSuccessfulBuild": build_ref(job.last_matching({"SUCCESS", "UNSTABLE"}), root),
        "lastUnstableBuild": build_ref(job.last_matching({"UNSTABLE"}), root),
        "lastUnsuccessfulBuild": build_ref(
            job.last_matching({"FAILURE", "ABORTED", "UNSTABLE", "NOT_BUILT"}), root
        ),
        "nextBuildNumber": job.next_build_number,
        "property": props,
        "queueItem": queue_item_json(state, queued[0], root) if queued else None,
        "concurrentBuild": concurrent,
        "resumeBlocked": False,
    }


def parameters_action(params: list[dict[str, Any]]) -> dict[str, Any]:
    shown = []
    for p in params:
        if p["_class"] == "hudson.model.PasswordParameterValue":
            shown.append({"_class": p["_class"], "name": p["name"]})
        else:
            shown.append(dict(p))
    return {"_class": "hudson.model.ParametersAction", "parameters": shown}


def cause_action(user: str) -> dict[str, Any]:
    return {
        "_class": "hudson.model.CauseAction",
        "causes": [
            {
                "_class": "hudson.model.Cause$UserIdCause",
                "shortDescription": f"Started by user {user}",
                "userId": user,
                "userName": user,
            }
        ],
    }


def queue_item_json(state: State, item: QueueItem, root: str) -> dict[str, Any]:
    job = state.jobs.get(item.job)
    actions: list[dict[str, Any]] = []
    if item.params:
        actions.append(parameters_action(item.params))
    actions.append(cause_action(item.user))
    task = job_ref(job, root) if job is not None else {"_class": WORKFLOW_JOB, "name": item.job}
    d: dict[str, Any] = {
        "actions": actions,
        "blocked": item.state == "blocked",
        "buildable": item.state == "buildable",
        "id": item.id,
        "inQueueSince": item.in_queue_since,
        "params": "".join(f"\n{p['name']}={p['value']}" for p in item.params),
        "stuck": False,
        "task": task,
        "url": f"queue/item/{item.id}/",
        "why": item.why,
    }
    if item.state == "waiting":
        d["_class"] = "hudson.model.Queue$WaitingItem"
        d["timestamp"] = item.quiet_until
        # Asked as it is answered, as Jenkins' getWhy() is: an item made a moment ago says so too.
        d["why"] = quiet_period_why(item.quiet_until - now_ms())
    elif item.state == "blocked":
        d["_class"] = "hudson.model.Queue$BlockedItem"
    elif item.state == "buildable":
        d["_class"] = "hudson.model.Queue$BuildableItem"
        d["pending"] = False
        d["buildableStartMilliseconds"] = item.buildable_since or item.in_queue_since
    else:
        d["_class"] = "hudson.model.Queue$LeftItem"
        d["why"] = None
        d["cancelled"] = item.cancelled
        b = job.builds.get(item.build_number) if job is not None and item.build_number is not None else None
        d["executable"] = build_ref(b, root)
    return dict(sorted(d.items()))


def queue_json(state: State, root: str) -> dict[str, Any]:
    items = [queue_item_json(state, i, root) for i in sorted(state.queue.values(), key=lambda i: i.id)]
    return {
        "_class": "hudson.model.Queue",
        "discoverableItems": [],
        "items": [i for i in items if "executable" not in i],
    }


def build_json(state: State, b: Build, root: str) -> dict[str, Any]:
    job = state.jobs[b.job]
    actions: list[dict[str, Any]] = []
    if b.params:
        actions.append(parameters_action(b.params))
    actions.append(cause_action(b.user))
    actions += [{}, {"_class": "org.jenkinsci.plugins.workflow.job.views.FlowGraphAction"}, {}]
    numbers = sorted(job.builds)
    i = numbers.index(b.number)
    prev = job.builds[numbers[i - 1]] if i > 0 else None
    nxt = job.builds[numbers[i + 1]] if i + 1 < len(numbers) else None
    return {
        "_class": WORKFLOW_RUN,
        "actions": actions,
        "artifacts": [],
        "building": b.building,
        "description": None,
        "displayName": f"#{b.number}",
        "duration": b.duration,
        "estimatedDuration": -1,
        "executor": {"_class": "hudson.model.OneOffExecutor"} if b.building else None,
        "fullDisplayName": f"{b.job} #{b.number}",
        "id": str(b.number),
        "keepLog": False,
        "number": b.number,
        "queueId": b.queue_id,
        "result": b.result,
        "timestamp": b.start_ms,
        "url": root + build_path(b),
        "changeSets": [],
        "culprits": [],
        "inProgress": b.building,
        "nextBuild": build_ref(nxt, root),
        "previousBuild": build_ref(prev, root),
    }


# ---- Stage View (pipeline-stage-view-plugin rest-api) ---------------------------------------------------

_RUN_STATUS = {
    "SUCCESS": "SUCCESS",
    "FAILURE": "FAILED",
    "ABORTED": "ABORTED",
    "UNSTABLE": "UNSTABLE",
    "NOT_BUILT": "NOT_EXECUTED",
}


def run_status(b: Build) -> str:
    if b.building:
        return "PAUSED_PENDING_INPUT" if b.pending_input is not None else "IN_PROGRESS"
    return _RUN_STATUS.get(b.result or "", "FAILED")


def _node_href(b: Build, n: FlowNode, what: str) -> dict[str, str]:
    return {"href": f"/{build_path(b)}execution/node/{n.id}/{what}"}


def flow_node_ext(b: Build, n: FlowNode, t: int) -> dict[str, Any]:
    d: dict[str, Any] = {
        "_links": {"self": _node_href(b, n, "wfapi/describe")},
        "id": n.id,
        "name": n.name,
        "execNode": "",
        "status": n.status,
    }
    if n.error is not None and n.status != "NOT_EXECUTED":
        d["error"] = dict(n.error)
    if n.param_desc is not None:
        d["parameterDescription"] = n.param_desc
    executed = n.status != "NOT_EXECUTED"
    d["startTimeMillis"] = n.start_ms if executed else 0
    d["durationMillis"] = n.duration(t) if executed else 0
    d["pauseDurationMillis"] = n.pause_ms
    return d


def atom_ext(b: Build, n: FlowNode, t: int) -> dict[str, Any]:
    d = flow_node_ext(b, n, t)
    if n.status != "NOT_EXECUTED" and n.has_log:
        d["_links"]["log"] = _node_href(b, n, "wfapi/log")
    d["parentNodes"] = [n.stage] if n.stage else []
    return d


def stage_ext(b: Build, n: FlowNode, t: int, with_children: bool) -> dict[str, Any]:
    d = flow_node_ext(b, n, t)
    if with_children:
        d["stageFlowNodes"] = [atom_ext(b, a, t) for a in b.nodes if a.kind == "atom" and a.stage == n.id]
    return d


def run_ext(b: Build, root: str) -> dict[str, Any]:
    t = now_ms()
    status = run_status(b)
    links: dict[str, Any] = {"self": {"href": f"/{build_path(b)}wfapi/describe"}}
    if b.pending_input is not None:
        links["pendingInputActions"] = {"href": f"/{build_path(b)}wfapi/pendingInputActions"}
        links["nextPendingInputAction"] = {"href": f"/{build_path(b)}wfapi/nextPendingInputAction"}
    links["artifacts"] = {"href": f"/{build_path(b)}wfapi/artifacts"}
    stages = [stage_ext(b, n, t, False) for n in b.nodes if n.kind == "stage"]
    end = b.end_ms if b.end_ms is not None else t
    first = next((s for s in stages if s["status"] != "NOT_EXECUTED"), None)
    queue_ms = max(0, first["startTimeMillis"] - b.start_ms) if first is not None else 0
    return {
        "_links": links,
        "id": str(b.number),
        "name": f"#{b.number}",
        "status": status,
        "startTimeMillis": b.start_ms,
        "endTimeMillis": end,
        "durationMillis": max(0, end - b.start_ms - queue_ms),
        "queueDurationMillis": queue_ms,
        "pauseDurationMillis": sum(n.pause_ms for n in b.nodes if n.kind == "stage"),
        "stages": stages,
    }


def job_wfapi(job: Job) -> dict[str, Any]:
    return {
        "_links": {
            "self": {"href": f"/{job_path(job.name)}wfapi/describe"},
            "runs": {"href": f"/{job_path(job.name)}wfapi/runs"},
        },
        "name": job.name,
        "runCount": len(job.builds),
    }


def pending_inputs(b: Build) -> list[dict[str, Any]]:
    p = b.pending_input
    if p is None:
        return []
    run = f"/{build_path(b)}"
    return [
        {
            "id": p["id"],
            "proceedText": p["proceedText"],
            "message": p["message"],
            "inputs": [],
            "proceedUrl": f"{run}wfapi/inputSubmit?inputId={p['id']}",
            "abortUrl": f"{run}input/{enc(p['id'])}/abort",
            "redirectApprovalUrl": f"{run}input/",
        }
    ]


def node_log_ext(b: Build, n: FlowNode, data: bytes, total: int) -> dict[str, Any]:
    """FlowNodeLogExt: the LAST 10 KiB of the log, HTML-escaped (AnnotatedLargeText.writeHtmlTo)."""
    d: dict[str, Any] = {"nodeId": n.id, "nodeStatus": n.status}
    if not n.has_log:
        d.update({"length": 0, "hasMore": False, "consoleUrl": None})
        return d
    length = min(WFAPI_LOG_MAX, total)
    d["length"] = length
    d["hasMore"] = total > WFAPI_LOG_MAX
    if total > 0:
        d["text"] = html.escape(data.decode("utf-8", "replace"), quote=False)
    d["consoleUrl"] = f"/{build_path(b)}execution/node/{n.id}/log"
    return d


# ---- credentials plugin ---------------------------------------------------------------------------------


def credential_json(c: dict[str, Any]) -> dict[str, Any]:
    """CredentialsStoreAction$CredentialsWrapper: never any secret."""
    desc = c.get("description") or ""
    if c["$class"] == USERNAME_PASSWORD:
        display = f"{c.get('username', '')}/******" + (f" ({desc})" if desc else "")
        type_name = "Username with password"
    else:
        display = desc or c["id"]
        type_name = "Secret text"
    return {
        "_class": "com.cloudbees.plugins.credentials.CredentialsStoreAction$CredentialsWrapper",
        "description": desc,
        "displayName": display,
        "fingerprint": None,
        "fullName": f"system/_/{c['id']}",
        "id": c["id"],
        "typeName": type_name,
    }


def credential_xml(c: dict[str, Any]) -> str:
    """GET .../credential/<id>/config.xml with secrets redacted (CredentialsWrapper.SECRETS_REDACTED)."""
    esc = html.escape
    cls = c["$class"]
    body = [
        f"  <scope>{esc(c.get('scope', 'GLOBAL'))}</scope>",
        f"  <id>{esc(c['id'])}</id>",
        f"  <description>{esc(c.get('description') or '')}</description>",
    ]
    if cls == USERNAME_PASSWORD:
        body += [
            f"  <username>{esc(c.get('username', ''))}</username>",
            "  <password>&lt;redacted&gt;</password>",
            "  <usernameSecret>false</usernameSecret>",
        ]
    elif cls == STRING_CREDENTIALS:
        body.append("  <secret>&lt;redacted&gt;</secret>")
    return f"<{cls}>\n" + "\n".join(body) + f"\n</{cls}>"


def credentials_domain(state: State) -> dict[str, Any]:
    return {
        "_class": "com.cloudbees.plugins.credentials.CredentialsStoreAction$DomainWrapper",
        "credentials": [{"id": cid} for cid in sorted(state.credentials)],
        "description": "Credentials that should be available irrespective of domain specification "
        "to requirements matching.",
        "displayName": "Global credentials (unrestricted)",
        "fullDisplayName": "System \u00bb Global credentials (unrestricted)",
        "fullName": "system/_",
        "global": True,
        "urlName": "_",
    }
