"""jenkins-lite as a subprocess (restart mid-build) and under injected faults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import jenkins
import pytest
import requests
from jenkins_lite_helpers import TOKEN, USER, Lite, config_xml, plan, stage, step, wait_for

from devstack.jenkins_lite import LiteServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class Proc:
    def __init__(self, home: Path, *extra: str) -> None:
        self.p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devstack.jenkins_lite",
                "--port",
                "0",
                "--home",
                str(home),
                "--user",
                USER,
                "--token",
                TOKEN,
                *extra,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.p.stdout is not None
        line = self.p.stdout.readline().strip()
        assert line.startswith("jenkins-lite listening on http://127.0.0.1:"), line
        self.url = line.rsplit(" ", 1)[1]
        assert (home / "url").read_text().strip() == self.url
        self.lite = Lite(url=self.url)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.p.send_signal(sig)
        return self.p.wait(15)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        if p.p.poll() is None:
            p.stop(signal.SIGKILL)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_restart_mid_build_keeps_finished_builds_and_never_leaves_one_in_progress(
    tmp_path: Path, procs: list[Proc], how: int
) -> None:
    home = tmp_path / "home"
    procs.append(Proc(home))
    lite = procs[0].lite
    done_job, done_n, _ = lite.run(plan(stage("Done", [step("echo finished-output")])))
    running = lite.create(plan(stage("Long", [step("echo started; sleep 60")])))
    n = lite.start(running)
    wait_for(lambda: b"started" in lite.step_log_so_far(running, n, "step-1-0"))
    rc = procs[0].stop(how)
    assert rc == (0 if how == signal.SIGTERM else -signal.SIGKILL)

    procs.append(Proc(home))
    again = procs[1].lite
    assert again.client.get_build_info(done_job, done_n)["result"] == "SUCCESS"
    assert again.step_log(done_job, done_n, "step-1-0") == b"finished-output\n"
    info = again.client.get_build_info(running, n)
    assert info["building"] is False and info["result"] in ("ABORTED", "FAILURE")
    stages = again.stages(running, n)
    assert stages["status"] != "IN_PROGRESS"
    assert all(s["status"] != "IN_PROGRESS" for s in stages["stages"])
    assert again.client.get_build_console_output(running, n).endswith("Finished: ABORTED\n")
    # the job keeps counting builds where it left off
    assert again.start(running) == n + 1


def test_sigterm_stops_cleanly_and_marks_running_builds_aborted(tmp_path: Path, procs: list[Proc]) -> None:
    procs.append(Proc(tmp_path / "home"))
    lite = procs[0].lite
    name = lite.create(plan(stage("Long", [step("sleep 60")])))
    n = lite.start(name)
    wait_for(
        lambda: (
            lite.stages(name, n)["stages"][-1:] and lite.stages(name, n)["stages"][-1]["name"] == "step-1-0"
        )
    )
    assert procs[0].stop() == 0
    build = tmp_path / "home" / "jobs" / name / "builds" / str(n) / "build.json"
    assert '"result": "ABORTED"' in build.read_text()


def test_with_fail_rate_0_2_about_a_fifth_of_calls_answer_5xx(make_lite: Callable[..., Lite]) -> None:
    lite = make_lite(fault_seed=7)
    r = lite.post("cubepaas-lite/faults", json={"failRate": 0.2})
    assert r.status_code == 200 and r.json()["failRate"] == 0.2
    codes = [lite.get("api/json").status_code for _ in range(400)]
    failed = [c for c in codes if c >= 500]
    assert set(failed) <= {500, 503} and set(codes) - set(failed) == {200}
    assert 40 <= len(failed) <= 120, len(failed)
    bad = next(r for r in (lite.get("api/json") for _ in range(100)) if r.status_code >= 500)
    assert bad.headers["X-Jenkins"] and "Oops!" in bad.text
    assert lite.get("cubepaas-lite/faults").json() == {
        "failRate": 0.2,
        "latencyMs": 0,
        "dropRate": 0.0,
        "dropAfterRate": 0.0,
    }
    lite.post("cubepaas-lite/faults", json={"failRate": 0})
    assert all(lite.get("api/json").status_code == 200 for _ in range(50))


def test_a_faulted_post_has_no_effect(make_lite: Callable[..., Lite]) -> None:
    lite = make_lite()
    lite.server.set_faults(fail_rate=1.0)
    r = lite.post("createItem?name=faulted", data=config_xml(plan()), headers={"Content-Type": "text/xml"})
    assert r.status_code in (500, 503)
    lite.server.set_faults(fail_rate=0.0)
    assert lite.get("job/faulted/api/json").status_code == 404


def test_python_jenkins_sees_5xx_as_errors(make_lite: Callable[..., Lite]) -> None:
    lite = make_lite()
    lite.server.set_faults(fail_rate=1.0)
    with pytest.raises((jenkins.JenkinsException, requests.HTTPError)):
        lite.client.get_job_info("anything")
    lite.server.set_faults(fail_rate=0.0)


def test_a_dropped_connection_gets_no_answer_and_drop_after_does_the_work(
    make_lite: Callable[..., Lite],
) -> None:
    lite = make_lite()
    lite.server.set_faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        requests.post(
            lite.url + "createItem?name=dropped",
            data=config_xml(plan()),
            auth=(USER, TOKEN),
            headers={"Content-Type": "text/xml"},
            timeout=10,
        )
    lite.post("cubepaas-lite/faults", json={"dropRate": 0, "dropAfterRate": 1.0})  # never faulted itself
    with pytest.raises(requests.ConnectionError):
        requests.post(
            lite.url + "createItem?name=answer-lost",
            data=config_xml(plan()),
            auth=(USER, TOKEN),
            headers={"Content-Type": "text/xml"},
            timeout=10,
        )
    lite.server.set_faults(drop_after_rate=0.0)
    assert lite.get("job/dropped/api/json").status_code == 404
    assert lite.get("job/answer-lost/api/json").status_code == 200


def test_latency_delays_answers_but_not_the_fault_endpoint(make_lite: Callable[..., Lite]) -> None:
    import time

    lite = make_lite()
    lite.post("cubepaas-lite/faults", json={"latencyMs": 300})
    t0 = time.monotonic()
    lite.get("cubepaas-lite/faults")
    fast = time.monotonic() - t0
    t0 = time.monotonic()
    lite.get("api/json")
    assert time.monotonic() - t0 >= 0.3 > fast
    assert lite.post("cubepaas-lite/faults", json={"bogus": 1}).status_code == 400
    assert requests.get(lite.url + "cubepaas-lite/faults", timeout=10).status_code == 403


def test_serve_is_a_context_manager_handle(tmp_path: Path) -> None:
    from devstack.jenkins_lite import serve

    with serve(tmp_path / "h", token="t") as s:
        assert isinstance(s, LiteServer)
        assert requests.get(s.url + "login", timeout=10).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(s.url + "login", timeout=2)
    assert os.path.exists(tmp_path / "h" / "url")
