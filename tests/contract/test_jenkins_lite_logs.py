"""Logs: complete node logs through progressiveText, the Stage View's cut log, the console."""

from __future__ import annotations

import hashlib

import pytest
from jenkins_lite_helpers import Lite, plan, stage, step

pytestmark = pytest.mark.integration

TEN_MB = 10 * 1024 * 1024
# 64 bytes per line (63 + newline), made by the shell and by Python alike.
LINE = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+\n"


def test_a_ten_megabyte_step_log_round_trips_through_progressive_text(lite: Lite) -> None:
    script = f"yes '{LINE[:-1].decode()}' | head -c {TEN_MB}"
    name, n, info = lite.run(plan(stage("Big", [step(script)])), timeout=60)
    assert info["result"] == "SUCCESS"
    expected = (LINE * (TEN_MB // len(LINE) + 1))[:TEN_MB]
    got = lite.step_log(name, n, "step-1-0")
    assert len(got) == TEN_MB
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(expected).hexdigest()
    # Stage View's wfapi/log answers only the last 10 KiB and says there is more (FlowNodeLogExt).
    (sh,) = lite.stage_nodes(name, n, "step-1-0")
    cut = lite.json(sh["_links"]["log"]["href"])
    assert cut["hasMore"] is True and cut["length"] == 10 * 1024
    assert cut["text"].encode() == expected[-10 * 1024 :]


def test_progressive_text_pages_by_byte_offset_and_restarts_when_start_is_past_the_end(lite: Lite) -> None:
    name, n, _ = lite.run(plan(stage("Small", [step("printf 'abcdef'")])))
    (sh,) = lite.stage_nodes(name, n, "step-1-0")
    url = f"job/{name}/{n}/execution/node/{sh['id']}/log/logText/progressiveText"
    r = lite.get(url, params={"start": 2})
    assert r.content == b"cdef" and r.headers["X-Text-Size"] == "6" and "X-More-Data" not in r.headers
    assert r.headers["Content-Type"].startswith("text/plain")
    r = lite.get(url, params={"start": 6})
    assert r.content == b"" and r.headers["X-Text-Size"] == "6"
    r = lite.get(url, params={"start": 99})  # LargeText: a start past the end means "rolled over": from 0
    assert r.content == b"abcdef"


def test_wfapi_log_text_is_html_escaped_like_the_stage_view(lite: Lite) -> None:
    name, n, _ = lite.run(plan(stage("Html", [step("echo '<b>&</b>'")])))
    (sh,) = lite.stage_nodes(name, n, "step-1-0")
    assert lite.json(sh["_links"]["log"]["href"])["text"] == "&lt;b&gt;&amp;&lt;/b&gt;\n"
    assert lite.step_log(name, n, "step-1-0") == b"<b>&</b>\n"


def test_the_console_keeps_jenkins_markers_and_step_output(lite: Lite) -> None:
    name, n, _ = lite.run(plan(stage("Console", [step("echo from-the-step")])))
    text = lite.get(f"job/{name}/{n}/consoleText").text
    lines = text.splitlines()
    assert lines[0] == "Started by user admin"
    assert "[Pipeline] { (Console)" in lines and "[Pipeline] sh" in lines and "from-the-step" in lines
    assert lines[-1] == "Finished: SUCCESS"
