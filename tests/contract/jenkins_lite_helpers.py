"""Helpers for the jenkins-lite contract tests: plans, config.xml, python-jenkins clients, waiting."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from xml.sax.saxutils import escape

import jenkins
import requests

from devstack.jenkins_lite import LiteServer

USER = "admin"
TOKEN = "contract-token"
T = TypeVar("T")
_names = itertools.count(1)


def job_name(prefix: str = "job") -> str:
    return f"{prefix}-{next(_names)}"


def step(script: str, node: str = "", **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "index": 0,
        "node": node,
        "type": "runScript",
        "image": "alpine",
        "script": script,
        "env": {},
        "credentials": [],
        "timeoutSeconds": None,
    }
    d.update(extra)
    return d


def stage(name: str, steps: list[dict[str, Any]], index: int = 1, **extra: Any) -> dict[str, Any]:
    for i, s in enumerate(steps):
        s["index"] = i
        s["node"] = s["node"] or f"step-{index}-{i}"
    d: dict[str, Any] = {
        "index": index,
        "name": name,
        "gate": None,
        "skip": False,
        "timeoutSeconds": None,
        "steps": steps,
    }
    d.update(extra)
    return d


def plan(
    *stages: dict[str, Any], timeout: float | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    return {"version": 1, "timeoutSeconds": timeout, "env": env or {}, "stages": list(stages)}


def pipeline_script(p: dict[str, Any] | None) -> str:
    """What the product's generator emits: the plan comment first, then (here, stand-in) Groovy."""
    body = "node {\n  echo 'real Jenkins would run the generated Groovy here'\n}\n"
    if p is None:
        return body
    return (
        "// cubepaas-plan: "
        + json.dumps(p, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
        + "\n"
        + body
    )


def config_xml(
    p: dict[str, Any] | None,
    params: tuple[str, ...] = ("CUBEPAAS_EXECUTION_ID",),
    script: str | None = None,
    concurrent: bool = True,
) -> str:
    defs = "".join(
        f"<hudson.model.StringParameterDefinition><name>{escape(n)}</name><description></description>"
        f"<defaultValue></defaultValue><trim>false</trim></hudson.model.StringParameterDefinition>"
        for n in params
    )
    props = (
        f"<hudson.model.ParametersDefinitionProperty><parameterDefinitions>{defs}</parameterDefinitions>"
        f"</hudson.model.ParametersDefinitionProperty>"
        if params
        else ""
    )
    if not concurrent:
        props += "<org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty/>"
    text = script if script is not None else pipeline_script(p)
    return (
        "<?xml version='1.1' encoding='UTF-8'?>\n"
        '<flow-definition plugin="workflow-job@1400.v7fd111b_ec82f">\n'
        "  <description></description>\n  <keepDependencies>false</keepDependencies>\n"
        f"  <properties>{props}</properties>\n"
        '  <definition class="org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition"'
        ' plugin="workflow-cps@4009">\n'
        f"    <script>{escape(text)}</script>\n    <sandbox>true</sandbox>\n  </definition>\n"
        "  <triggers/>\n  <disabled>false</disabled>\n</flow-definition>\n"
    )


def wait_for(fn: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.05, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or fn}")
        time.sleep(interval)


class Lite:
    """A jenkins-lite plus helpers that speak to it the way the engine does (python-jenkins + REST)."""

    def __init__(self, server: LiteServer | None = None, url: str | None = None) -> None:
        self._server = server
        self.url = url or (server.url if server is not None else "")
        self.client = self.new_client()
        self.http = requests.Session()
        self.http.auth = (USER, TOKEN)

    @property
    def server(self) -> LiteServer:
        assert self._server is not None, "an out-of-process jenkins-lite has no in-process handle"
        return self._server

    def new_client(self) -> jenkins.Jenkins:
        j = jenkins.Jenkins(self.url, username=USER, password=TOKEN, timeout=30)
        # resolve auth first: python-jenkins' get_version() alone is anonymous (see docs/jenkins-lite.md)
        j.get_whoami()
        return j

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.url + path.lstrip("/"), timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.http.post(self.url + path.lstrip("/"), timeout=30, allow_redirects=False, **kw)

    def json(self, path: str) -> Any:
        r = self.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r.json()

    def create(self, p: dict[str, Any] | None, name: str | None = None, **kw: Any) -> str:
        name = name or job_name()
        self.client.create_job(name, config_xml(p, **kw))
        return name

    def start(self, name: str, execution_id: str = "ns/exec/uid") -> int:
        """Trigger like the engine (delay=0sec) and wait for the build number via the queue item."""
        qid = self.client.build_job(name, {"CUBEPAAS_EXECUTION_ID": execution_id, "delay": "0sec"})

        def number() -> int | None:
            ex = self.client.get_queue_item(qid).get("executable")
            return int(ex["number"]) if ex else None

        return wait_for(number, what=f"queue item {qid} of {name}")

    def finished(self, name: str, number: int, timeout: float = 20.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            info: dict[str, Any] = self.client.get_build_info(name, number)
            return None if info["building"] else info

        return wait_for(done, timeout=timeout, what=f"{name}#{number} to finish")

    def run(self, p: dict[str, Any], timeout: float = 20.0) -> tuple[str, int, dict[str, Any]]:
        name = self.create(p)
        n = self.start(name)
        return name, n, self.finished(name, n, timeout)

    def stages(self, name: str, number: int) -> dict[str, Any]:
        d: dict[str, Any] = self.client.get_build_stages(name, number)
        return d

    def stage_nodes(self, name: str, number: int, stage_name: str) -> list[dict[str, Any]]:
        st = next(s for s in self.stages(name, number)["stages"] if s["name"] == stage_name)
        nodes: list[dict[str, Any]] = self.json(st["_links"]["self"]["href"])["stageFlowNodes"]
        return nodes

    def node_log(self, name: str, number: int, node_id: str) -> bytes:
        """The complete log of a flow node through progressiveText, the way the engine pages it."""
        out = bytearray()
        start = 0
        while True:
            r = self.client.jenkins_request(
                requests.Request(
                    "GET",
                    f"{self.url}job/{name}/{number}/execution/node/{node_id}/log/logText/progressiveText",
                    params={"start": start},
                )
            )
            out += r.content
            start = int(r.headers["X-Text-Size"])
            if r.headers.get("X-More-Data") != "true":
                return bytes(out)
            time.sleep(0.05)

    def step_log_so_far(self, name: str, number: int, step_stage: str) -> bytes:
        """Whatever a running step has written yet (b"" before its stage appears)."""
        try:
            nodes = self.stage_nodes(name, number, step_stage)
        except StopIteration:
            return b""
        if not nodes:
            return b""
        r = self.get(f"job/{name}/{number}/execution/node/{nodes[0]['id']}/log/logText/progressiveText")
        return r.content if r.status_code == 200 else b""

    def step_log(self, name: str, number: int, step_stage: str) -> bytes:
        (sh,) = self.stage_nodes(name, number, step_stage)
        return self.node_log(name, number, sh["id"])
