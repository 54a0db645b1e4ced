"""devopsctl end to end: the real console script as a subprocess against the local stack and a real worker.

Stage indexes: 0 is the automatic clone stage, the pipeline file's stages follow from 1.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.reasons import ExecutionPhase, StageState
from devstack import proc as devproc

pytestmark = pytest.mark.e2e
T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.3) -> T:
    try:
        return devproc.wait_for(predicate, timeout, what, interval)
    except TimeoutError as err:
        pytest.fail(str(err), pytrace=False)


def get_execution(kube: Kube, namespace: str, name: str) -> PipelineExecution:
    return kube.get(PipelineExecution, namespace, name)


Cli = Callable[..., subprocess.CompletedProcess[str]]
POLL = 1.0  # the project's pollInterval

PASS_FILE = """\
stages:
- name: Test
  steps:
  - runScriptConfig: {image: "alpine:3.20", shellScript: "echo testing; test -f README.md && echo passed"}
"""

FAIL_FILE = """\
stages:
- name: Test
  steps:
  - runScriptConfig: {image: "alpine:3.20", shellScript: "echo about to fail; exit 3"}
"""

COUNT_LINES = 30
SLOW_COUNT_FILE = f"""\
stages:
- name: Count
  steps:
  - runScriptConfig:
      image: "alpine:3.20"
      shellScript: |
        i=1
        while [ $i -le {COUNT_LINES} ]; do echo "line $i"; i=$((i+1)); sleep 0.25; done
"""

TWO_STAGES_FILE = """\
stages:
- name: First
  steps:
  - runScriptConfig: {image: "alpine:3.20", shellScript: "echo first; %(wait)s; echo first done"}
- name: Second
  steps:
  - runScriptConfig: {image: "alpine:3.20", shellScript: "echo second"}
"""

LONG_STEP_FILE = """\
stages:
- name: Long
  steps:
  - runScriptConfig:
      image: "alpine:3.20"
      shellScript: "for i in $(seq 1 300); do echo tick $i; sleep 1; done"
"""

APPROVAL_FILE = """\
stages:
- name: Build
  steps:
  - runScriptConfig: {image: "alpine:3.20", shellScript: "echo building; %(wait)s"}
- name: Deploy
  approval: true
  steps:
  - runScriptConfig: {image: "alpine:3.20", shellScript: "echo deploying"}
"""


def _held_until_released(pipeline_file: str, release: Path) -> str:
    """The file with its first stage held until ``release`` exists (jenkins-lite runs steps on this host),
    so a control sent while that stage builds is sent in time however slow the machine is."""
    wait = f"for i in $(seq 1 1200); do [ -e {release} ] && break; sleep 0.25; done"
    return pipeline_file % {"wait": wait}


def _out(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


@pytest.fixture(scope="module")
def ns(worker_process: Any, project_namespace: Callable[..., str]) -> str:
    return project_namespace("cli", executor_quota=4, poll_interval="1s")


COMMITS: dict[str, str] = {}


@pytest.fixture(scope="module")
def make_pipeline(
    ns: str, git_repo: Callable[..., tuple[str, str]], pipeline_factory: Callable[..., Any]
) -> Callable[[str, str], str]:
    def make(name: str, pipeline_file: str) -> str:
        url, sha = git_repo(pipeline_file, {"README.md": "# e2e\n"})
        pipeline_factory(ns, name, url)
        COMMITS[name] = sha
        return name

    return make


def _start(devopsctl: Cli, ns: str, pipeline: str) -> str:
    done = devopsctl("run", pipeline, "-n", ns, "--commit", COMMITS[pipeline], timeout=60)
    assert done.returncode == 0, _out(done)
    match = re.search(r"pipelineexecution/(\S+) created", done.stdout)
    assert match, _out(done)
    return match.group(1)


def _state(kube: Kube, ns: str, name: str, stage: int, step: int | None = None) -> str | None:
    pe = get_execution(kube, ns, name)
    stages = pe.status.stages if pe.status else []
    if stage >= len(stages):
        return None
    return str(stages[stage].state if step is None else stages[stage].steps[step].state)


def _phase(kube: Kube, ns: str, name: str) -> str | None:
    pe = get_execution(kube, ns, name)
    return str(pe.status.phase) if pe.status and pe.status.phase else None


@pytest.fixture(scope="module")
def succeeded(devopsctl: Cli, ns: str, make_pipeline: Callable[[str, str], str]) -> str:
    """One run that succeeded through `devopsctl run --wait` (its output checked in the first test).

    No --commit: the head of the pipeline's default branch is built."""
    make_pipeline("pass", PASS_FILE)
    done = devopsctl("run", "pass", "-n", ns, "--wait", timeout=300)
    assert done.returncode == 0, _out(done)
    return done.stdout


def test_run_wait_exits_0_on_success(succeeded: str) -> None:
    assert "pipelineexecution/pass-1 created" in succeeded
    assert "pipelineexecution/pass-1 succeeded" in succeeded
    # Not a terminal: plain appended progress lines, no ANSI cursor movement.
    assert "\x1b[" not in succeeded
    assert "phase Success" in succeeded
    assert "step 1.0" in succeeded and ": Success" in succeeded


def test_run_wait_exits_nonzero_on_failure(
    devopsctl: Cli, ns: str, make_pipeline: Callable[[str, str], str], kube: Kube
) -> None:
    make_pipeline("fail", FAIL_FILE)
    done = devopsctl("run", "fail", "-n", ns, "--commit", COMMITS["fail"], "--wait", timeout=300)
    assert done.returncode == 1, _out(done)
    assert "devopsctl: error: pipelineexecution/fail-1 ended Failed" in done.stderr
    assert _phase(kube, ns, "fail-1") == ExecutionPhase.FAILED
    # The failed step's log is stored and readable after the run.
    logs = devopsctl("logs", "fail-1", "-n", ns, "--stage", "Test", timeout=60)
    assert logs.returncode == 0, _out(logs)
    assert "about to fail" in logs.stdout


def test_get_and_describe(devopsctl: Cli, ns: str, succeeded: str) -> None:
    done = devopsctl("get", "executions", "-n", ns, check=True)
    row = next(line for line in done.stdout.splitlines() if line.startswith("pass-1 "))
    assert row.split()[:5] == ["pass-1", "pass", "1", "Success", "main"]

    wide = devopsctl("get", "executions", "-A", "-o", "wide", check=True)
    header = wide.stdout.splitlines()[0].split()
    assert header[:2] == ["NAMESPACE", "NAME"] and "DURATION" in header and "JENKINS" in header
    assert any(line.split()[:2] == [ns, "pass-1"] for line in wide.stdout.splitlines())

    as_json = json.loads(devopsctl("get", "executions", "-n", ns, "-o", "json", check=True).stdout)
    assert as_json["kind"] == "List"
    item = next(i for i in as_json["items"] if i["metadata"]["name"] == "pass-1")
    assert item["status"]["phase"] == "Success" and item["spec"]["pipelineName"] == "pass"

    as_yaml = yaml.safe_load(devopsctl("get", "pipelines", "-n", ns, "-o", "yaml", check=True).stdout)
    assert "pass" in [i["metadata"]["name"] for i in as_yaml["items"]]

    pipelines = devopsctl("get", "pipelines", "-n", ns, check=True).stdout
    row = next(line for line in pipelines.splitlines() if line.startswith("pass "))
    assert "pass-1" in row and "Success" in row

    text = devopsctl("describe", "execution", "pass-1", "-n", ns, check=True).stdout
    for expected in (
        "Name:          pass-1",
        f"Namespace:     {ns}",
        "Pipeline:      pass",
        "Phase:         Success",
        "Clone",
        "Test",
        "Workflow:",
        "Jenkins:",
        "Succeeded",
    ):
        assert expected in text, text
    assert re.search(rf"{ns}/pass/1/1-0\.log", text), text  # the stored log object of step 1.0

    ui = devopsctl("ui", "pass-1", "-n", ns, check=True).stdout.strip()
    assert ui.startswith("http") and "/namespaces/" in ui and "/workflows/" in ui


def test_logs_after_the_run_come_from_the_object_store(devopsctl: Cli, ns: str, succeeded: str) -> None:
    done = devopsctl("logs", "pass-1", "-n", ns, "--stage", "1", "--step", "0", check=True)
    assert done.stdout.splitlines()[-2:] == ["testing", "passed"] or "passed" in done.stdout, _out(done)
    everything = devopsctl("logs", "pass-1", "-n", ns, check=True).stdout
    assert "==> stage 0 'Clone'" in everything and "==> stage 1 'Test'" in everything
    assert "Checked out" in everything and "passed" in everything


def test_logs_follow_a_running_step_without_gaps_or_duplicates(
    devopsctl: Cli,
    devopsctl_command: list[str],
    cli_env: dict[str, str],
    ns: str,
    make_pipeline: Callable[[str, str], str],
    kube: Kube,
) -> None:
    make_pipeline("count", SLOW_COUNT_FILE)
    name = _start(devopsctl, ns, "count")
    wait_for(lambda: _state(kube, ns, name, 1, 0) == StageState.BUILDING, 120, "step 1.0 to start")
    argv = [*devopsctl_command, "logs", name, "-n", ns, "--stage", "Count", "--step", "0", "-f"]
    follow = subprocess.run(argv, env=cli_env, capture_output=True, text=True, timeout=180, check=False)
    assert follow.returncode == 0, _out(follow)
    numbers = [int(m.group(1)) for m in re.finditer(r"^line (\d+)$", follow.stdout, re.M)]
    assert numbers == list(range(1, COUNT_LINES + 1)), _out(follow)
    # It followed live: the step had not ended when following began, and it has ended now.
    assert _state(kube, ns, name, 1, 0) in (StageState.SUCCESS, StageState.BUILDING)
    wait_for(lambda: _phase(kube, ns, name) == ExecutionPhase.SUCCESS, 120, f"{name} to succeed")
    # The same log, read afterwards (from the object store), is identical.
    after = devopsctl("logs", name, "-n", ns, "--stage", "Count", "--step", "0", check=True)
    assert after.stdout == follow.stdout


def test_pause_and_resume(
    devopsctl: Cli, ns: str, make_pipeline: Callable[[str, str], str], kube: Kube, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    make_pipeline("twostages", _held_until_released(TWO_STAGES_FILE, release))
    name = _start(devopsctl, ns, "twostages")
    wait_for(lambda: _state(kube, ns, name, 1) == StageState.BUILDING, 120, "stage 1 to start")
    paused = devopsctl("pause", name, "-n", ns, "--reason", "e2e")
    assert paused.returncode == 0, _out(paused)
    assert "pause sent" in paused.stdout
    release.touch()
    wait_for(lambda: _phase(kube, ns, name) == ExecutionPhase.PAUSED, 60, f"{name} to be Paused")
    # Held: stage 2 does not start for several poll intervals.
    for _ in range(4):
        assert _state(kube, ns, name, 2) == StageState.WAITING
        time.sleep(POLL)
    described = devopsctl("describe", "execution", name, "-n", ns, check=True).stdout
    assert "Phase:         Paused" in described and "Paused:        yes" in described
    resumed = devopsctl("resume", name, "-n", ns)
    assert resumed.returncode == 0, _out(resumed)
    wait_for(lambda: _phase(kube, ns, name) == ExecutionPhase.SUCCESS, 120, f"{name} to succeed after resume")
    # Controls on an ended run: refused with a reason, exit 1.
    late = devopsctl("pause", name, "-n", ns)
    assert late.returncode == 1 and "already ended (Success)" in late.stderr, _out(late)


def test_cancel(devopsctl: Cli, ns: str, make_pipeline: Callable[[str, str], str], kube: Kube) -> None:
    make_pipeline("long", LONG_STEP_FILE)
    name = _start(devopsctl, ns, "long")
    wait_for(lambda: _state(kube, ns, name, 1, 0) == StageState.BUILDING, 120, "the long step to start")
    time.sleep(2 * POLL)
    done = devopsctl("cancel", name, "-n", ns, "--reason", "e2e cancel")
    assert done.returncode == 0, _out(done)
    wait_for(lambda: _phase(kube, ns, name) == ExecutionPhase.ABORTED, 60, f"{name} to be Aborted")
    assert _state(kube, ns, name, 1, 0) == StageState.ABORTED
    # The partial log was kept.
    logs = wait_for(
        lambda: (lambda d: d if "tick 1" in d.stdout else None)(
            devopsctl("logs", name, "-n", ns, "--stage", "Long", "--step", "0")
        ),
        60,
        "the partial log",
    )
    assert "tick 1\n" in logs.stdout


def test_approve_when_no_stage_waits_is_refused_with_the_reason(
    devopsctl: Cli,
    ns: str,
    make_pipeline: Callable[[str, str], str],
    kube: Kube,
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    make_pipeline("approval", _held_until_released(APPROVAL_FILE, release))
    name = _start(devopsctl, ns, "approval")
    wait_for(lambda: _state(kube, ns, name, 1) == StageState.BUILDING, 120, "stage 1 to start")
    refused = devopsctl("approve", name, "-n", ns)
    assert refused.returncode == 1, _out(refused)
    assert refused.stderr.startswith(f"devopsctl: error: cannot approve {name}: ")
    assert "no stage is waiting for approval" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    release.touch()

    def waiting() -> bool:
        pe = get_execution(kube, ns, name)
        return pe.status is not None and pe.status.pending_gate == 2

    wait_for(waiting, 120, "stage 2 to wait for approval")
    wrong = devopsctl("approve", name, "-n", ns, "--stage", "1")
    assert wrong.returncode == 1 and "stage 1 is not waiting for approval" in wrong.stderr, _out(wrong)
    approved = devopsctl("approve", name, "-n", ns, "--reason", "looks good")
    assert approved.returncode == 0, _out(approved)
    assert "stage 2 ('Deploy') approved" in approved.stdout
    wait_for(lambda: _phase(kube, ns, name) == ExecutionPhase.SUCCESS, 120, f"{name} to succeed (approved)")


def test_reject_ends_denied(
    devopsctl: Cli, ns: str, make_pipeline: Callable[[str, str], str], kube: Kube, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    release.touch()  # nothing to send while the first stage builds
    make_pipeline("rejected", _held_until_released(APPROVAL_FILE, release))
    name = _start(devopsctl, ns, "rejected")

    def waiting() -> bool:
        pe = get_execution(kube, ns, name)
        return pe.status is not None and pe.status.pending_gate == 2

    wait_for(waiting, 120, "stage 2 to wait for approval")
    done = devopsctl("reject", name, "-n", ns, "--reason", "not today")
    assert done.returncode == 0, _out(done)
    wait_for(lambda: _phase(kube, ns, name) == ExecutionPhase.DENIED, 120, f"{name} to be Denied")


def test_errors_are_one_line_with_distinct_codes(
    devopsctl: Cli, ns: str, cli_env: dict[str, str], devopsctl_command: list[str]
) -> None:
    missing = devopsctl("describe", "execution", "nope-1", "-n", ns)
    assert missing.returncode == 3
    expected = f'devopsctl: error: pipelineexecution "nope-1" not found in namespace "{ns}"'
    assert missing.stderr.strip() == expected
    assert devopsctl("run", "nope", "-n", ns).returncode == 3
    assert devopsctl("logs", "nope-1", "-n", ns).returncode == 3
    usage = devopsctl("get", "pods")
    assert usage.returncode == 2
    env = dict(cli_env, KUBECONFIG="/nonexistent/kubeconfig")
    bad = subprocess.run(
        [*devopsctl_command, "get", "executions", "-n", ns],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 4 and bad.stderr.startswith("devopsctl: error: bad configuration"), _out(bad)
