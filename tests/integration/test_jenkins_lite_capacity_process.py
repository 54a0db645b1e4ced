"""A real jenkins-lite process with ``--executors 1 --container-cap 1`` and no cloud: podTemplate builds wait
for the cap, not for the executors; builds without a podTemplate wait for an executor.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
import requests

pytestmark = pytest.mark.integration

USER, TOKEN = "admin", "capacity-test-token"
WAITING = "Waiting for next available executor"


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}", pytrace=False)
        time.sleep(0.1)


class Lite:
    def __init__(self, url: str, markers: Path) -> None:
        self.url = url
        self.markers = markers

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, auth=(USER, TOKEN), timeout=10)

    def post(self, path: str, **kw: Any) -> requests.Response:
        answer = requests.post(self.url + path, auth=(USER, TOKEN), timeout=10, allow_redirects=False, **kw)
        assert answer.status_code < 400, answer.text
        return answer

    def start(self, job: str, pod_template: bool) -> int:
        """Create ``job`` (one step that marks it started, then waits for its release file) and trigger it;
        the queue item id."""
        started, release = self.markers / f"{job}.started", self.markers / f"{job}.release"
        step = {
            "index": 0, "node": "step-1-0", "type": "runScript", "image": "alpine", "env": {},
            "credentials": [], "timeoutSeconds": None,
            "script": f"touch {started}; while [ ! -e {release} ]; do sleep 0.1; done",
        }  # fmt: skip
        stage = {"index": 1, "name": "Build", "gate": None, "skip": False, "timeoutSeconds": None}
        plan: dict[str, Any] = {
            "version": 1,
            "timeoutSeconds": None,
            "env": {},
            "stages": [{**stage, "steps": [step]}],
        }
        body = "podTemplate(yaml: '') {\n  node(POD_LABEL) {}\n}\n" if pod_template else "node {}\n"
        script = f"// cubepaas-plan: {json.dumps(plan)}\n{body}"
        xml = (
            "<?xml version='1.1' encoding='UTF-8'?>\n<flow-definition><properties/>"
            "<definition class='org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition'>"
            f"<script>{escape(script)}</script><sandbox>true</sandbox></definition></flow-definition>"
        )
        self.post(f"createItem?name={job}", data=xml, headers={"Content-Type": "application/xml"})
        location = self.post(f"job/{job}/build?delay=0sec").headers["Location"]
        return int(location.rstrip("/").rsplit("/", 1)[1])

    def item(self, item_id: int) -> dict[str, Any]:
        return dict(self.get(f"queue/item/{item_id}/api/json").json())

    def build_of(self, item_id: int) -> int:
        executable = wait_for(lambda: self.item(item_id).get("executable"), f"queue item {item_id} to start")
        return int(executable["number"])

    def console(self, job: str) -> str:
        return self.get(f"job/{job}/1/consoleText").text

    def result(self, job: str) -> str | None:
        info = self.get(f"job/{job}/1/api/json").json()
        return None if info["building"] else str(info["result"])

    def started(self, job: str) -> bool:
        return (self.markers / f"{job}.started").exists()

    def release(self, job: str) -> None:
        (self.markers / f"{job}.release").touch()

    def waits_for_capacity(self, job: str) -> bool:
        console = self.console(job)
        return "Still waiting to schedule task\nThere are no nodes with the label \u2018" in console


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Lite]:
    home = tmp_path / "home"
    argv = [sys.executable, "-m", "devstack.jenkins_lite", "--port", "0", "--home", str(home), "--user", USER]
    argv += ["--token", TOKEN, "--executors", "1", "--container-cap", "1", "--quiet-period", "0"]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("jenkins-lite listening on "), line
        markers = tmp_path / "markers"
        markers.mkdir()
        yield Lite(line.split()[-1], markers)
    finally:
        proc.terminate()
        proc.wait(30)


def test_pod_template_builds_wait_for_the_container_cap_and_plain_builds_for_an_executor(lite: Lite) -> None:
    lite.build_of(lite.start("plain", pod_template=False))
    wait_for(lambda: lite.started("plain"), "the plain build's step")

    # The only executor is busy: a podTemplate build runs all the same, on its agent.
    lite.build_of(lite.start("first", pod_template=True))
    wait_for(lambda: lite.started("first"), "the first podTemplate build's step")

    # The cap (1) is reached: the next podTemplate build starts and waits for its agent.
    lite.build_of(lite.start("second", pod_template=True))
    wait_for(lambda: lite.waits_for_capacity("second"), "the second build to wait for capacity")
    assert not lite.started("second")
    assert lite.result("second") is None

    # A build without a podTemplate still waits in the queue for the executor.
    queued = lite.start("queued", pod_template=False)
    wait_for(lambda: lite.item(queued).get("why") == WAITING, "the queued build's cause")
    assert "executable" not in lite.item(queued)

    lite.release("first")
    assert wait_for(lambda: lite.result("first"), "the first build to end") == "SUCCESS"
    wait_for(lambda: lite.started("second"), "the second build's step once the agent was released")
    lite.release("second")
    assert wait_for(lambda: lite.result("second"), "the second build to end") == "SUCCESS"
    assert "executable" not in lite.item(queued)  # podTemplate builds did not free or take the executor

    lite.release("plain")
    lite.build_of(queued)
    wait_for(lambda: lite.started("queued"), "the queued build's step")
    lite.release("queued")


def test_a_build_aborted_while_it_waits_for_capacity_ends_aborted_and_leaves_the_slot(lite: Lite) -> None:
    lite.build_of(lite.start("holder", pod_template=True))
    wait_for(lambda: lite.started("holder"), "the holder's step")
    lite.build_of(lite.start("aborted", pod_template=True))
    wait_for(lambda: lite.waits_for_capacity("aborted"), "the build to wait for capacity")

    lite.post("job/aborted/1/stop")
    assert wait_for(lambda: lite.result("aborted"), "the aborted build to end") == "ABORTED"
    assert "Aborted by admin" in lite.console("aborted")
    assert not lite.started("aborted")

    lite.build_of(lite.start("next", pod_template=True))
    wait_for(lambda: lite.waits_for_capacity("next"), "the next build to wait for the holder's slot")
    lite.release("holder")
    wait_for(lambda: lite.started("next"), "the next build's step once the holder ended")
    lite.release("next")
    assert wait_for(lambda: lite.result("next"), "the next build to end") == "SUCCESS"
