"""jenkins-lite runs a podTemplate build without a controller executor, under the cloud's containerCap."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest

from activities.jenkins.jenkinsfile import JenkinsfileInput, render_jenkinsfile
from crds.pipeline_file import PipelineConfig
from devstack.jenkins_lite import agents, runner
from devstack.jenkins_lite.agents import ContainerCap, KubernetesCloud, ProvisionInterrupted
from devstack.jenkins_lite.model import Job, QueueItem, State, now_ms
from devstack.jenkins_lite.plan import parse_config
from devstack.jenkins_lite.runner import Scheduler, needs_executor, pod_template_label

PLAN: dict[str, Any] = {"version": 1, "timeoutSeconds": None, "env": {}, "stages": []}
PLAIN = "// cubepaas-plan: " + json.dumps(PLAN) + "\nnode {\n  sh 'true'\n}\n"
POD = "// cubepaas-plan: " + json.dumps(PLAN) + "\npodTemplate(yaml: '') {\n  node(POD_LABEL) {}\n}\n"
STILL_WAITING = "Still waiting to schedule task"
STEP = {"runScriptConfig": {"image": "alpine", "shellScript": "true"}}


def generated_jenkinsfile() -> str:
    return render_jenkinsfile(
        JenkinsfileInput(
            config=PipelineConfig.model_validate({"stages": [{"name": "Build", "steps": [STEP]}]}),
            namespace="ns",
            pipeline="p",
            run=1,
            execution_id="ns/p-1/abc",
            git_url="https://example.invalid/repo.git",
            commit="0" * 40,
            agent_namespace="ns",
            cache_root="/var/lib/cubepaas-devops/cache",
        )
    )


def test_the_product_s_generated_jenkinsfile_runs_on_an_agent_and_needs_no_controller_executor() -> None:
    assert needs_executor(generated_jenkinsfile()) is False


def test_a_script_without_a_pod_template_needs_a_controller_executor() -> None:
    assert needs_executor(PLAIN) is True
    assert pod_template_label(PLAIN, "job", 1) is None


def test_the_waiting_label_is_the_template_s_own_label_or_the_plugin_s_generated_one() -> None:
    assert pod_template_label("podTemplate(label: 'mine') { node('mine') {} }", "job", 7) == "mine"
    generated = pod_template_label(POD, "job", 7)
    assert generated is not None and generated.startswith("job_7-")


# ---- the scheduler's decision -------------------------------------------------------------------------


class Lite:
    """A State and a Scheduler whose builds start and then hold still (no steps) until the test ends."""

    def __init__(self, home: Path, executors: int) -> None:
        self.state = State(home, "admin", "token", "2.492.3", executors, quiet_period=0)
        self.scheduler = Scheduler(self.state, "http://lite.invalid/")
        self.ids = itertools.count(1)

    def queue(self, name: str, script: str) -> QueueItem:
        xml = (
            "<flow-definition><definition class='org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition'>"
            f"<script>{escape(script)}</script></definition></flow-definition>"
        )
        self.state.jobs.setdefault(name, Job(name, xml, parse_config(xml)))
        item = QueueItem(next(self.ids), name, [], "admin", now_ms(), quiet_until=0)
        self.state.queue[item.id] = item
        return item

    def maintain(self) -> None:
        with self.state.lock:
            self.scheduler.maintain()


@pytest.fixture
def lite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lite]:
    done = threading.Event()

    def hold(self: runner.BuildRunner) -> None:
        done.wait()

    monkeypatch.setattr(runner.BuildRunner, "run", hold)
    yield Lite(tmp_path, executors=1)
    done.set()


def test_with_every_executor_busy_a_pod_template_build_starts_and_a_plain_build_waits(lite: Lite) -> None:
    plain = lite.queue("plain-1", PLAIN)
    lite.maintain()
    assert plain.state == "left"

    waiting = lite.queue("plain-2", PLAIN)
    pod = lite.queue("pod", POD)
    lite.maintain()
    assert pod.state == "left" and pod.build_number == 1
    assert waiting.state == "buildable"
    assert waiting.why == "Waiting for next available executor"


def test_pod_template_builds_do_not_use_up_the_executors(lite: Lite) -> None:
    pods = [lite.queue(f"pod-{i}", POD) for i in range(3)]
    lite.maintain()
    assert [p.state for p in pods] == ["left"] * 3
    plain = lite.queue("plain", PLAIN)
    lite.maintain()
    assert plain.state == "left"


# ---- the cloud's containerCap ---------------------------------------------------------------------------


class Waiter(threading.Thread):
    """A build asking the cap for a slot; ``announced`` is set once it said it waits."""

    def __init__(self, cap: ContainerCap, label: str, taken: list[str] | None = None) -> None:
        super().__init__(daemon=True)
        self.cap, self.label, self.taken = cap, label, taken if taken is not None else []
        self.lines: list[str] = []
        self.announced = threading.Event()
        self.stop = False
        self.outcome: bool | BaseException | None = None

    def log(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) == 2:
            self.announced.set()

    def run(self) -> None:
        try:
            self.outcome = self.cap.take(self.label, self.log, lambda: self.stop)
            self.taken.append(self.label)
        except ProvisionInterrupted as e:
            self.outcome = e

    def finish(self) -> None:
        self.join(30)
        assert not self.is_alive(), f"{self.label} still waits for a slot"


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents, "POLL_SECONDS", 0.01)


def test_below_the_cap_a_build_takes_its_slot_without_waiting_or_a_word() -> None:
    cap = ContainerCap(2)
    lines: list[str] = []
    assert cap.take("a", lines.append, lambda: False) is False
    assert cap.take("b", lines.append, lambda: False) is False
    assert lines == []
    assert cap.in_use == 2


def test_at_the_cap_a_build_waits_saying_what_jenkins_says_until_a_slot_is_given_back() -> None:
    cap = ContainerCap(1)
    cap.take("first", lambda line: None, lambda: False)
    second = Waiter(cap, "job_2-abcde")
    second.start()
    assert second.announced.wait(30)
    assert second.lines == [STILL_WAITING, "There are no nodes with the label \u2018job_2-abcde\u2019"]
    assert second.outcome is None and cap.in_use == 1

    cap.give_back()
    second.finish()
    assert second.outcome is True  # it wrote the waiting lines
    assert cap.in_use == 1
    assert len(second.lines) == 2  # said once, as the node step's 15 s notice


def test_waiting_builds_get_the_slots_oldest_first() -> None:
    cap = ContainerCap(1)
    cap.take("running", lambda line: None, lambda: False)
    taken: list[str] = []
    older = Waiter(cap, "older", taken)
    older.start()
    assert older.announced.wait(30)
    newer = Waiter(cap, "newer", taken)
    newer.start()
    assert newer.announced.wait(30)

    cap.give_back()
    older.finish()
    assert taken == ["older"]
    cap.give_back()
    newer.finish()
    assert taken == ["older", "newer"]


def test_a_build_aborted_while_it_waits_for_a_slot_is_interrupted_and_holds_none() -> None:
    cap = ContainerCap(1)
    cap.take("running", lambda line: None, lambda: False)
    aborted = Waiter(cap, "aborted")
    aborted.start()
    assert aborted.announced.wait(30)
    aborted.stop = True
    aborted.finish()
    assert isinstance(aborted.outcome, ProvisionInterrupted)
    assert cap.in_use == 1

    cap.give_back()
    lines: list[str] = []
    assert cap.take("next", lines.append, lambda: False) is False
    assert lines == []


@pytest.mark.parametrize("limit", [None, 0, -1])
def test_an_empty_or_zero_container_cap_is_unlimited_as_in_the_plugin(limit: int | None) -> None:
    cap = ContainerCap(limit)
    lines: list[str] = []
    for i in range(50):
        cap.take(f"pod-{i}", lines.append, lambda: False)
    assert cap.limit is None
    assert lines == [] and cap.in_use == 50


# ---- the cloud: no second "Still waiting" once the cap wait said it ---------------------------------------

PENDING = {"spec": {}, "status": {"phase": "Pending"}}
RUNNING = {"spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}}


class Apiserver:
    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers

    def request(self, method: str, path: str, body: Any = None) -> Any:
        return self.answers.pop(0)

    def ready(self) -> bool:
        return True


@pytest.mark.parametrize("announced", [False, True])
def test_the_pod_wait_says_still_waiting_only_if_the_capacity_wait_did_not(
    tmp_path: Path, announced: bool
) -> None:
    api = Apiserver([PENDING, RUNNING])
    cloud = KubernetesCloud(api, tmp_path)  # type: ignore[arg-type]  # the two methods the wait uses
    lines: list[str] = []
    pod = cloud._wait_running(api, "ns", "pod", lines.append, lambda: False, announced)  # type: ignore[arg-type]
    assert pod == RUNNING
    assert (STILL_WAITING in lines) is not announced
