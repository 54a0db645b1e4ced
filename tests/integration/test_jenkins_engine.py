"""The Jenkins engine and generated Jenkinsfiles against jenkins-lite (in-process), unmodified.

jenkins-lite answers like Jenkins' REST API and really runs the plan's steps with /bin/sh, so these flows
exercise the same code paths a real Jenkins would: jobs, credentials, idempotent triggers, stages, complete
logs, gates, stop escalation, and injected faults.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from activities.build import EndedRuns
from activities.errors import JenkinsPermanentError
from activities.jenkins.client import BuildRef, BuildStatus, JenkinsEngine, job_name
from activities.jenkins.jenkinsfile import JenkinsfileInput, build_plan, render_jenkinsfile, skipped_stages
from activities.jenkins.jobconfig import EXECUTION_ID_PARAM, parse_job_config
from activities.jenkins.jobs import JobChange
from activities.jenkins.status import StepState
from crds.pipeline_file import PipelineConfig
from devstack.jenkins_lite import LiteServer, serve

pytestmark = pytest.mark.integration

USER, TOKEN = "admin", "engine-test-token"
FINAL = {"SUCCESS", "FAILURE", "ABORTED", "UNSTABLE", "NOT_BUILT"}


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteServer]:
    server = serve(tmp_path_factory.mktemp("jenkins-lite"), user=USER, token=TOKEN)
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture
def make_lite(tmp_path: Path) -> Iterator[Callable[..., LiteServer]]:
    servers: list[LiteServer] = []

    def make(**kw: Any) -> LiteServer:
        server = serve(tmp_path / f"home{len(servers)}", user=USER, token=TOKEN, **kw)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.set_faults(fail_rate=0, latency_ms=0, drop_rate=0, drop_after_rate=0)
        server.shutdown()


@pytest.fixture
def engine(lite: LiteServer) -> JenkinsEngine:
    return JenkinsEngine(lite.url, USER, TOKEN, timeout=30, poll_interval=0.1)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A local git repository (file:// URL) and its head commit."""
    path = tmp_path_factory.mktemp("repo")
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
        "HOME": str(path),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    (path / "hello.txt").write_text("hello from the repo\n")
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "."],
        ["git", "commit", "-q", "-m", "init"],
    ):
        subprocess.run(cmd, cwd=path, env=env, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    return f"file://{path}", commit


def _unique(prefix: str = "t") -> tuple[str, str]:
    """A job name and an execution id nobody else uses."""
    uid = uuid.uuid4().hex[:8]
    return job_name("ns", f"{prefix}{uid}", 1), f"ns/{prefix}-{uid}/{uid}"


def _simple_script(*stages: tuple[str, str]) -> str:
    """A plan-only Jenkinsfile (jenkins-lite runs the plan) with one step per stage and no clone."""
    import json

    plan = {
        "version": 1,
        "timeoutSeconds": 600,
        "env": {"CICD_TEST": "1"},
        "stages": [
            {
                "index": i,
                "name": name,
                "gate": f"Gate{i}" if i else None,
                "skip": False,
                "timeoutSeconds": None,
                "steps": [
                    {
                        "index": 0,
                        "node": f"step-{i}-0",
                        "type": "runScript",
                        "image": "alpine",
                        "script": script,
                        "env": {},
                        "credentials": [],
                        "timeoutSeconds": None,
                    }
                ],
            }
            for i, (name, script) in enumerate(stages)
        ],
    }
    return (
        "// cubepaas-plan: "
        + json.dumps(plan, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
        + "\n"
    )


def _wait(
    engine: JenkinsEngine, job: str, number: int, until: Callable[[BuildStatus], bool], timeout: float = 60
) -> BuildStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = engine.describe(job, number)
        if until(status):
            return status
        assert time.monotonic() < deadline, f"timed out waiting; last status {status.status} {status.result}"
        time.sleep(0.1)


def _run(engine: JenkinsEngine, job: str, execution_id: str, script: str) -> int:
    engine.ensure_job(job, script)
    ref = engine.wait_for_start(job, engine.trigger(job, execution_id), execution_id, timeout=30)
    assert ref.number is not None
    return ref.number


def _finished(status: BuildStatus) -> bool:
    return not status.building and status.result in FINAL


def _builds(lite: LiteServer, job: str) -> list[int]:
    info = requests.get(f"{lite.url}job/{job}/api/json", auth=(USER, TOKEN), timeout=10).json()
    return sorted(int(b["number"]) for b in info["builds"])


# ---------------------------------------------------------------------------------------------- jobs


def test_ensure_job_create_noop_reconfigure(engine: JenkinsEngine) -> None:
    job, _ = _unique()
    first = _simple_script(("Clone", "echo one"))
    second = _simple_script(("Clone", "echo two"))
    assert engine.ensure_job(job, first) is JobChange.CREATED
    assert engine.ensure_job(job, first) is JobChange.UNCHANGED
    assert engine.ensure_job(job, first.replace("\n", "\r\n") + "  \n") is JobChange.UNCHANGED
    assert engine.ensure_job(job, second) is JobChange.RECONFIGURED
    config = engine.get_job_config(job)
    assert config is not None
    script, params = parse_job_config(config)
    assert script == second and EXECUTION_ID_PARAM in params
    assert engine.delete_job(job) is True
    assert engine.delete_job(job) is False
    assert engine.get_job_config(job) is None


def test_keeping_the_last_jobs_deletes_only_jobs_of_finished_runs_and_never_a_running_build(
    engine: JenkinsEngine,
) -> None:
    pipeline = f"keep{uuid.uuid4().hex[:8]}"
    names = {run: job_name("ns", pipeline, run) for run in range(1, 8)}
    slow, fast = _simple_script(("Slow", "sleep 60")), _simple_script(("Fast", "true"))
    try:
        for run in (1, 2):  # still building: their follow must keep finding them
            number = _run(engine, names[run], f"ns/{pipeline}-{run}/u{run}", slow)
            _wait(engine, names[run], number, lambda s: s.building)
        engine.ensure_job(names[3], fast)  # prepared, its trigger not sent yet
        for run in (4, 5, 6, 7):
            number = _run(engine, names[run], f"ns/{pipeline}-{run}/u{run}", fast)
            _wait(engine, names[run], number, _finished)
        # Run 4's build has ended but its run has not (it still stores its logs from Jenkins).
        deleted = engine.keep_last_jobs(f"ns-{pipeline}-", 2, EndedRuns(frozenset({4})))
        assert deleted == [names[5]]
        assert [run for run, name in names.items() if engine.job_exists(name)] == [1, 2, 3, 4, 6, 7]
        assert all(engine.describe(names[run], 1).building for run in (1, 2))
        # Once everything has ended, the next cleanup keeps exactly the newest two.
        for run in (1, 2):
            engine.cancel(names[run], None, 1, grace_seconds=10)
        engine.trigger(names[3], f"ns/{pipeline}-3/u3")
        _wait(engine, names[3], 1, _finished)
        deleted = engine.keep_last_jobs(f"ns-{pipeline}-", 2, EndedRuns(frozenset()))
        assert sorted(deleted) == sorted([names[1], names[2], names[3], names[4]])
        assert [run for run, name in names.items() if engine.job_exists(name)] == [6, 7]
    finally:
        for run in (1, 2):
            if engine.job_exists(names[run]):
                engine.cancel(names[run], None, 1, grace_seconds=10)


def test_missing_job_is_permanent(engine: JenkinsEngine) -> None:
    with pytest.raises(JenkinsPermanentError):
        engine.find_build("no-such-job-" + uuid.uuid4().hex[:6], "x")


def test_wrong_token_is_permanent(lite: LiteServer) -> None:
    with pytest.raises(JenkinsPermanentError) as err:
        JenkinsEngine(lite.url, USER, "wrong").get_job_config("anything")
    assert err.value.reason == "JenkinsForbidden"


# ---------------------------------------------------------------------------------------------- trigger


def test_trigger_twice_starts_one_build(engine: JenkinsEngine, lite: LiteServer) -> None:
    job, execution = _unique()
    engine.ensure_job(job, _simple_script(("Clone", "echo hi")))
    first = engine.trigger(job, execution)
    second = engine.trigger(job, execution)
    first = engine.wait_for_start(job, first, execution, 30)
    second = engine.wait_for_start(job, second, execution, 30)
    assert first.number is not None and first.number == second.number
    _wait(engine, job, first.number, _finished)
    assert engine.trigger(job, execution).number == first.number  # after the build ended, too
    assert _builds(lite, job) == [first.number]


def test_a_trigger_of_a_job_created_just_now_posts_the_build_without_reading_the_queue_or_the_job(
    engine: JenkinsEngine, lite: LiteServer
) -> None:
    job, execution = _unique()
    assert engine.ensure_job(job, _simple_script(("Clone", "true"))) is JobChange.CREATED
    seen: list[tuple[str, str]] = []
    hooks = engine._j._session.hooks["response"]
    hooks.append(lambda r, *_, **__: seen.append((r.request.method or "", urlsplit(r.url).path)))
    try:
        ref = engine.trigger(job, execution, fresh=True)
    finally:
        hooks.pop()
    assert seen == [
        ("POST", f"/job/{job}/buildWithParameters"),
        ("GET", f"/queue/item/{ref.queue_id}/api/json"),
    ]
    started = engine.wait_for_start(job, ref, execution, 30)
    assert started.number == 1 and _builds(lite, job) == [1]


def test_trigger_whose_answer_was_lost(engine: JenkinsEngine, lite: LiteServer) -> None:
    """The first trigger reached Jenkins but its answer never came back: the retry finds that build."""
    job, execution = _unique()
    engine.ensure_job(job, _simple_script(("Clone", "sleep 1")))
    lost = requests.post(
        f"{lite.url}job/{job}/buildWithParameters",
        params={EXECUTION_ID_PARAM: execution, "delay": "0sec"},
        auth=(USER, TOKEN),
        timeout=10,
    )
    assert lost.status_code == 201
    ref = engine.wait_for_start(job, engine.trigger(job, execution), execution, 30)
    assert ref.number is not None
    assert _builds(lite, job) == [ref.number]
    # A different execution of the same job is a different build.
    other = engine.wait_for_start(job, engine.trigger(job, execution + "-b"), execution + "-b", 30)
    assert other.number not in (None, ref.number)


def test_trigger_with_lost_answers_and_errors(make_lite: Callable[..., LiteServer]) -> None:
    """Answers dropped after the work was done, and 5xx: every execution still gets exactly one build."""
    server = make_lite()
    engine = JenkinsEngine(
        server.url, USER, TOKEN, timeout=10, read_attempts=8, backoff=0.02, poll_interval=0.05
    )
    jobs = []
    for _ in range(4):
        job, execution = _unique()
        engine.ensure_job(job, _simple_script(("Clone", "true")))
        jobs.append((job, execution))
    server.set_faults(fail_rate=0.15, drop_after_rate=0.15)
    refs = []
    for job, execution in jobs:
        # The prepare's trigger of the job it created (nothing to look for first), then an activity
        # retry calling the trigger again: each finds the build an answer lost on the way had started.
        for fresh in (True, False):
            refs.append((job, execution, engine.trigger(job, execution, fresh=fresh)))
    server.set_faults(fail_rate=0, drop_after_rate=0)
    for job, execution, ref in refs:
        started = engine.wait_for_start(job, ref, execution, 30)
        assert started.number is not None
    for job, _ in jobs:
        assert len(_builds(server, job)) == 1, job


def test_expired_queue_item_falls_back_to_the_builds(make_lite: Callable[..., LiteServer]) -> None:
    server = make_lite(queue_item_ttl=0.3)
    engine = JenkinsEngine(server.url, USER, TOKEN, poll_interval=0.05)
    job, execution = _unique()
    engine.ensure_job(job, _simple_script(("Clone", "true")))
    ref = engine.trigger(job, execution)
    assert ref.queue_id is not None
    number = engine.wait_for_start(job, ref, execution, 30).number
    assert number is not None
    time.sleep(1.0)
    with pytest.raises(JenkinsPermanentError):
        engine._get_json(f"queue/item/{ref.queue_id}/api/json", "expired item")
    assert engine.resolve(job, BuildRef(queue_id=ref.queue_id), execution).number == number


def test_cancel_a_queued_item(make_lite: Callable[..., LiteServer]) -> None:
    server = make_lite(executors=1)
    engine = JenkinsEngine(server.url, USER, TOKEN, poll_interval=0.05)
    blocker, blocker_exec = _unique("blocker")
    busy = _run(engine, blocker, blocker_exec, _simple_script(("Clone", "sleep 30")))
    job, execution = _unique()
    engine.ensure_job(job, _simple_script(("Clone", "echo never")))
    ref = engine.trigger(job, execution)
    assert ref.number is None and ref.queue_id is not None
    assert engine.cancel(job, ref.queue_id, None, grace_seconds=5, execution_id=execution) == "ABORTED"
    assert engine.resolve(job, ref, execution).cancelled
    assert _builds(server, job) == []
    assert engine.cancel(blocker, None, busy, grace_seconds=5) == "ABORTED"


# ------------------------------------------------------------------------------------- generated pipelines


def _inp(repo: tuple[str, str], stages: list[dict[str, Any]], **kw: Any) -> JenkinsfileInput:
    url, commit = repo
    uid = uuid.uuid4().hex[:8]
    fields: dict[str, Any] = {
        "config": PipelineConfig.model_validate({"stages": stages, "timeout": "10m"}),
        "namespace": "ns",
        "pipeline": f"p{uid}",
        "run": 1,
        "execution_id": f"ns/p{uid}-1/{uid}",
        "git_url": url,
        "commit": commit,
        "ref": "refs/heads/main",
        "branch": "main",
        "event": "push",
    }
    fields.update(kw)
    return JenkinsfileInput.model_validate(fields)


def _run_generated(
    engine: JenkinsEngine, inp: JenkinsfileInput, proceed_gates: bool = True, timeout: float = 120
) -> tuple[str, int, BuildStatus]:
    job = job_name(inp.namespace, inp.pipeline, inp.run)
    number = _run(engine, job, inp.execution_id, render_jenkinsfile(inp))
    skipped = skipped_stages(build_plan(inp))
    deadline = time.monotonic() + timeout
    while True:
        status = engine.describe(job, number, skipped_stages=skipped)
        if _finished(status):
            return job, number, status
        if proceed_gates:
            for gate in status.pending_inputs:
                engine.proceed(job, number, gate.id)
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_generated_pipeline_runs_with_stages_steps_and_logs(
    engine: JenkinsEngine, repo: tuple[str, str]
) -> None:
    inp = _inp(
        repo,
        [
            {
                "name": "Build",
                "steps": [
                    {
                        "runScriptConfig": {
                            "image": "alpine",
                            "shellScript": 'cat hello.txt\necho "commit=$CICD_GIT_COMMIT"',
                        }
                    },
                    {
                        "runScriptConfig": {"image": "alpine", "shellScript": 'echo "A=$A"'},
                        "env": {"A": "${CICD_EVENT}!"},
                    },
                ],
            },
            {
                "name": "Tags only",
                "when": {"event": "tag"},
                "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": "echo never"}}],
            },
            {
                "name": "Fail",
                "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": "echo bye; exit 3"}}],
            },
            {
                "name": "Never reached",
                "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": "echo no"}}],
            },
        ],
    )
    job, number, status = _run_generated(engine, inp)
    assert status.result == "FAILURE" and status.state == StepState.FAILED
    names = [s.name for s in status.stages]
    assert names == ["Clone", "Build", "Tags only", "Fail"]
    clone, build, tags, fail = status.stages
    assert clone.state == StepState.SUCCESS and [s.name for s in clone.steps] == ["step-0-0"]
    assert build.state == StepState.SUCCESS and [s.name for s in build.steps] == ["step-1-0", "step-1-1"]
    assert tags.state == StepState.SKIPPED and tags.steps == []
    assert fail.state == StepState.FAILED and fail.steps[0].state == StepState.FAILED
    assert all(s.start_millis and s.end_millis for s in build.steps)
    log0 = engine.read_step_log_complete(job, number, build.steps[0].node_id, timeout=10)
    assert "hello from the repo" in log0 and f"commit={inp.commit}" in log0
    assert "A=push!" in engine.read_step_log_complete(job, number, build.steps[1].node_id, timeout=10)
    assert "bye" in engine.read_step_log_complete(job, number, fail.steps[0].node_id, timeout=10)
    console = engine.read_console_complete(job, number, timeout=10)
    assert "hello from the repo" in console and "bye" in console


def _start_seq_step(engine: JenkinsEngine, repo: tuple[str, str], count: int) -> tuple[str, int, str, bytes]:
    """Start a one-step build printing ``seq 1 count`` (~10 MB for 1.4 M); return (job, build, step node,
    the bytes the step will print) as soon as the step runs, so the log is read while it is written."""
    expected = "".join(f"{i}\n" for i in range(1, count + 1)).encode()
    inp = _inp(
        repo,
        [
            {
                "name": "Big",
                "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": f"seq 1 {count}"}}],
            }
        ],
    )
    job = job_name(inp.namespace, inp.pipeline, inp.run)
    number = _run(engine, job, inp.execution_id, render_jenkinsfile(inp))
    step_node = None
    deadline = time.monotonic() + 120
    while step_node is None:
        for gate in engine.pending_inputs(job, number):
            engine.proceed(job, number, gate.id)
        stages = engine.describe(job, number).stages
        if len(stages) > 1 and stages[1].steps:
            step_node = stages[1].steps[0].node_id
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return job, number, step_node, expected


def test_ten_megabyte_step_log_round_trips(engine: JenkinsEngine, repo: tuple[str, str]) -> None:
    job, number, step_node, expected = _start_seq_step(engine, repo, 1_400_000)
    assert len(expected) > 10_000_000
    deadline = time.monotonic() + 120
    # Read while the step writes, resuming from a serialized cursor each time, as an activity would.
    parts: list[str] = []
    cursor_json: str | None = None
    from activities.jenkins.logs import LogCursor

    while True:
        cursor = LogCursor.model_validate_json(cursor_json) if cursor_json else None
        chunk = engine.read_step_log(job, number, step_node, cursor)
        parts.append(chunk.text)
        cursor_json = chunk.cursor.model_dump_json()
        if not chunk.more:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    data = "".join(parts).encode()
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(expected).hexdigest(), (
        len(data),
        len(expected),
    )
    assert _wait(engine, job, number, _finished).result == "SUCCESS"


def test_a_step_log_streams_completely_into_a_file_while_the_step_still_writes(
    engine: JenkinsEngine, repo: tuple[str, str], tmp_path: Path
) -> None:
    job, number, step_node, expected = _start_seq_step(engine, repo, 1_400_000)
    out = tmp_path / "step.log"
    with out.open("w+b") as f:
        written = engine.copy_step_log(job, number, step_node, f, chunk=64 * 1024, timeout=120)
    assert written == len(expected) == out.stat().st_size
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(expected).hexdigest()


def test_gates_proceed_and_abort(engine: JenkinsEngine, repo: tuple[str, str]) -> None:
    inp = _inp(
        repo,
        [
            {"name": "One", "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": "echo one"}}]},
            {
                "name": "Two",
                "approval": True,
                "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": "echo two"}}],
            },
        ],
    )
    job = job_name(inp.namespace, inp.pipeline, inp.run)
    number = _run(engine, job, inp.execution_id, render_jenkinsfile(inp))
    status = _wait(engine, job, number, lambda s: bool(s.pending_inputs))
    assert [g.id for g in status.pending_inputs] == ["Gate1"]
    assert status.state == StepState.WAITING
    assert engine.proceed(job, number, "gate1") is True  # ids compare case-insensitively
    status = _wait(engine, job, number, lambda s: [g.id for g in s.pending_inputs] == ["Gate2"])
    assert [s.name for s in status.stages][:2] == ["Clone", "One"]
    assert engine.proceed(job, number, "Gate1") is False  # already answered
    assert engine.abort_input(job, number, "Gate2") is True
    final = _wait(engine, job, number, _finished)
    assert final.result == "ABORTED" and final.state == StepState.ABORTED
    assert "Two" not in [s.name for s in final.stages if s.steps]


def test_stop_escalates_to_kill(engine: JenkinsEngine, repo: tuple[str, str]) -> None:
    inp = _inp(
        repo,
        [
            {
                "name": "Stubborn",
                "steps": [
                    {
                        "runScriptConfig": {
                            "image": "alpine",
                            "shellScript": "trap '' TERM\necho started\nsleep 60\necho survived",
                        }
                    }
                ],
            }
        ],
    )
    job = job_name(inp.namespace, inp.pipeline, inp.run)
    number = _run(engine, job, inp.execution_id, render_jenkinsfile(inp))
    _wait(engine, job, number, lambda s: bool(s.pending_inputs))
    engine.proceed(job, number, "Gate1")
    _wait(engine, job, number, lambda s: len(s.stages) > 1 and bool(s.stages[1].steps))
    time.sleep(0.5)
    started = time.monotonic()
    assert engine.cancel(job, None, number, grace_seconds=1.5) == "ABORTED"
    assert time.monotonic() - started < 30
    final = engine.describe(job, number)
    assert not final.building and final.result == "ABORTED"
    assert "survived" not in engine.read_console_complete(job, number, timeout=10)
    assert engine.cancel(job, None, number, grace_seconds=1) == "ABORTED"  # repeatable


def test_credentials_reach_steps(engine: JenkinsEngine, repo: tuple[str, str]) -> None:
    uid = uuid.uuid4().hex[:6]
    cred = f"ns-{uid}-token"
    assert engine.ensure_credential(cred, "string", secret="first") is True
    assert engine.ensure_credential(cred, "string", secret="s3cr3t-value") is False
    inp = _inp(
        repo,
        [
            {
                "name": "Use",
                "steps": [
                    {
                        "runScriptConfig": {
                            "image": "alpine",
                            "shellScript": 'test "$TOK" = s3cr3t-value && echo TOKEN-OK',
                        },
                        "envFrom": [{"sourceName": "sec", "sourceKey": "token", "targetKey": "TOK"}],
                    }
                ],
            }
        ],
        env_from_credentials={"sec/token": cred},
    )
    job, number, status = _run_generated(engine, inp)
    assert status.result == "SUCCESS", engine.read_console_complete(job, number, timeout=10)
    assert "TOKEN-OK" in engine.read_console_complete(job, number, timeout=10)
    assert engine.delete_credential(cred) is True
    assert engine.delete_credential(cred) is False


def test_injection_runs_literally(engine: JenkinsEngine, repo: tuple[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    name = f"x'); sh('touch {marker}"
    script = (
        "printf '%s\\n' 'lit: $HOME ${HOME} \"\"\" '\"'''\"' \\\\ done'\n"
        'echo "dollar-brace: ${CICD_EXECUTION_SEQUENCE}"\n'
    )
    inp = _inp(
        repo, [{"name": name, "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": script}}]}]
    )
    job, number, status = _run_generated(engine, inp)
    assert status.result == "SUCCESS"
    assert [s.name for s in status.stages] == ["Clone", name]
    log = engine.read_step_log_complete(job, number, status.stages[1].steps[0].node_id, timeout=10)
    assert "lit: $HOME ${HOME} \"\"\" ''' \\\\ done" in log
    assert "dollar-brace: 1" in log
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- faults


def test_engine_completes_with_twenty_percent_5xx(
    make_lite: Callable[..., LiteServer], repo: tuple[str, str]
) -> None:
    server = make_lite(fail_rate=0.2)
    engine = JenkinsEngine(
        server.url, USER, TOKEN, timeout=10, read_attempts=10, backoff=0.02, poll_interval=0.05
    )
    inp = _inp(
        repo,
        [
            {
                "name": "Work",
                "steps": [{"runScriptConfig": {"image": "alpine", "shellScript": "seq 1 20000"}}],
            },
        ],
    )
    job = job_name(inp.namespace, inp.pipeline, inp.run)
    assert engine.ensure_credential(f"{job}-c", "usernamePassword", username="u", password="p") in (
        True,
        False,
    )
    number = _run(engine, job, inp.execution_id, render_jenkinsfile(inp))
    deadline = time.monotonic() + 120
    while True:
        status = engine.describe(job, number)
        if _finished(status):
            break
        for gate in status.pending_inputs:
            engine.proceed(job, number, gate.id)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status.result == "SUCCESS"
    assert engine.trigger(job, inp.execution_id).number == number
    text = engine.read_step_log_complete(job, number, status.stages[1].steps[0].node_id, timeout=30)
    assert text.endswith("".join(f"{i}\n" for i in range(19990, 20001)))
    assert text.count("\n") >= 20000
    server.set_faults(fail_rate=0)
    assert _builds(server, job) == [number]
