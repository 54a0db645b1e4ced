"""Our HMAC is GitHub's: checked against npm ``@octokit/webhooks-methods`` (an implementation not ours).

The package is installed with npm into ``~/.cache/cubepaas-devstack/npm`` on first use (npm and node
are needed; without them the test fails and says so).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from worker.webhooks.events import Provider
from worker.webhooks.signatures import sign, verify

pytestmark = pytest.mark.unit

PACKAGE = "@octokit/webhooks-methods@6.0.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cubepaas-devstack" / "npm"
PUSH = Path(__file__).resolve().parent / "payloads" / "github" / "push-branch.json"


@pytest.fixture(scope="module")
def octokit() -> Path:
    if not shutil.which("npm") or not shutil.which("node"):
        pytest.fail("npm and node are needed to cross-check the GitHub signature (apt-get install npm)")
    module = CACHE / "node_modules" / "@octokit" / "webhooks-methods"
    if not module.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", PACKAGE],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return module


def node(octokit: Path, script: str, *args: str) -> str:
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script, *args],
        cwd=CACHE,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def test_the_github_signature_we_compute_is_the_one_octokit_computes(octokit: Path) -> None:
    body = PUSH.read_text()
    secret = "It's a Secret to Everybody"
    theirs = node(
        octokit,
        "import {sign} from '@octokit/webhooks-methods';"
        "console.log(await sign(process.argv[1], process.argv[2]));",
        secret,
        body,
    )
    assert sign(Provider.GITHUB, secret.encode(), body.encode()) == {"X-Hub-Signature-256": theirs}


def test_a_signature_octokit_makes_verifies_here_and_one_for_another_body_does_not(octokit: Path) -> None:
    body = PUSH.read_text()
    theirs = node(
        octokit,
        "import {sign} from '@octokit/webhooks-methods';console.log(await sign('s3cret', process.argv[1]));",
        body,
    )
    assert verify(Provider.GITHUB, {"x-hub-signature-256": theirs}, b"s3cret", body.encode())
    other = json.dumps({**json.loads(body), "ref": "refs/heads/evil"}).encode()
    assert not verify(Provider.GITHUB, {"x-hub-signature-256": theirs}, b"s3cret", other)


def test_octokit_accepts_the_signature_we_compute(octokit: Path) -> None:
    body = PUSH.read_text()
    ours = sign(Provider.GITHUB, b"s3cret", body.encode())["X-Hub-Signature-256"]
    verdict = node(
        octokit,
        "import {verify} from '@octokit/webhooks-methods';"
        "console.log(await verify('s3cret', process.argv[1], process.argv[2]));",
        body,
        ours,
    )
    assert verdict == "true"
