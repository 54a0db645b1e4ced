"""The Temporal UI as a user sees it: headless Chromium (Debian's ``chromium``, driven by Playwright; no
browser download) filters the workflow list by ``DevopsPipeline``, opens the run, and finds its summary and
the stage table of its current details. Screenshots go to ``test-output/``.

The UI renders the user metadata (summary, details, current details) as Markdown in iframes named
``user-metadata-summary``, ``user-metadata-details`` and ``user-metadata-current-details``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from activities.kube import Kube
from crds.execution import PipelineExecution

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output"
UI_TIMEOUT_MS = 30_000

PIPELINE_FILE = """\
stages:
- name: Test
  steps:
  - runScriptConfig: {image: "alpine:3.20", shellScript: "echo testing; echo ok"}
- name: Build
  steps:
  - runScriptConfig: {image: "alpine:3.20", shellScript: "echo binary"}
  - runScriptConfig: {image: "busybox:1.36", shellScript: "echo docs"}
"""


def _frame_text(page: Any, name: str, expected: str, timeout: float = 30.0) -> str:
    """The text of the user-metadata iframe ``name`` once it contains ``expected``."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        frame = page.frame(name=name)
        if frame is not None:
            try:
                text = str(frame.inner_text("body"))
            except Exception:  # the frame is being replaced (the UI refreshes it)
                text = ""
            if expected in text:
                return text
        page.wait_for_timeout(500)
    pytest.fail(f"the UI's {name} never showed {expected!r}; it showed {text!r}", pytrace=False)


@pytest.fixture(scope="module")
def browser() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)", pytrace=False
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def test_find_a_run_in_the_temporal_ui(
    browser: Any,
    worker_process: Any,
    project_namespace: Callable[..., str],
    git_repo: Callable[..., Any],
    pipeline_factory: Callable[..., Any],
    devopsctl: Callable[..., subprocess.CompletedProcess[str]],
    kube: Kube,
    stack_env: dict[str, str],
) -> None:
    ns = project_namespace("ui")
    pipeline = f"ui-{uuid.uuid4().hex[:6]}"
    url, sha = git_repo(PIPELINE_FILE)
    pipeline_factory(ns, pipeline, url)
    done = devopsctl("run", pipeline, "-n", ns, "--commit", sha, "--wait", timeout=300)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    pe = kube.get(PipelineExecution, ns, f"{pipeline}-1")
    assert pe.status is not None and pe.status.workflow is not None
    workflow_id = pe.status.workflow.id

    ui = stack_env["TEMPORAL_UI_URL"].rstrip("/")
    temporal_ns = stack_env.get("TEMPORAL_NAMESPACE", "default")
    OUTPUT_DIR.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        # 1. The workflow list, filtered by the search attribute (the UI keeps its filter in ?query=).
        query = f'DevopsPipeline="{pipeline}"'
        page.goto(
            f"{ui}/namespaces/{temporal_ns}/workflows?query={urllib.parse.quote(query)}",
            wait_until="networkidle",
        )
        page.get_by_text(re.compile(rf'DevopsPipeline\s*=\s*"{re.escape(pipeline)}"')).first.wait_for()
        row_link = page.get_by_role("link", name=workflow_id, exact=True)
        row_link.first.wait_for()
        links = page.locator("a[href*='/workflows/']").filter(has_text=re.compile(r"\S"))
        shown = [t for t in links.all_inner_texts() if t.strip().startswith(("pe/", "pe-"))]
        assert shown == [workflow_id], f"the filtered list shows {shown}"
        page.screenshot(path=str(OUTPUT_DIR / f"temporal-ui-list-{pipeline}.png"), full_page=True)

        # 2. Open the run; its user metadata: static summary and details, current details.
        row_link.first.click()
        page.wait_for_url(re.compile(r"/workflows/[^/]+/[^/]+/"))
        page.get_by_role("tab", name="User Metadata").click()
        summary = _frame_text(page, "user-metadata-summary", f"{pipeline} #1 on main")
        assert f"{pipeline} #1 on main (user)" in summary
        details = _frame_text(page, "user-metadata-details", f"{ns}/{pipeline}-1")
        assert "PipelineExecution" in details
        current = _frame_text(page, "user-metadata-current-details", "Success")
        frame = page.frame(name="user-metadata-current-details")
        assert frame is not None
        table = frame.locator("table").first
        table.wait_for()
        headers = [h.strip() for h in table.locator("th").all_inner_texts()]
        assert headers[:4] == ["#", "Stage", "Step", "State"], headers
        rows = [
            [c.strip() for c in row.locator("td").all_inner_texts()]
            for row in table.locator("tbody tr").all()
        ]
        stages = {r[1]: r[3] for r in rows if len(r) >= 4 and r[1]}
        assert stages == {"Clone": "Success", "Test": "Success", "Build": "Success"}, rows
        assert sum(1 for r in rows if len(r) >= 4 and r[2]) == 4, rows  # clone + 1 test step + 2 build steps
        assert "Phase:" in current
        page.screenshot(path=str(OUTPUT_DIR / f"temporal-ui-run-{pipeline}.png"), full_page=True)
    finally:
        page.close()


def test_chromium_is_debians() -> None:
    """The browser comes from the distribution (apt), not from `playwright install`."""
    path = shutil.which("chromium") or CHROMIUM
    assert Path(path).exists(), "apt-get install -y chromium"
    done = subprocess.run(
        ["dpkg", "-S", str(Path(path).resolve())], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "chromium" in done.stdout, done.stdout + done.stderr
