"""Test helpers for the webhook receiver: start ``python -m worker.webhooks`` and post deliveries to it.

:class:`ReceiverProcess` starts the real process with the stack's environment and ``CUBEPAAS_WEBHOOK_PORT=0``
and reads the port from its first log line (the documented contract). :func:`post` sends one request and
returns ``(status, decoded JSON answer)``.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Annotations pinning a test Pipeline (and so its runs) to a task queue no worker serves: the runs these
#: tests create are checked as CRs and must not be picked up by a worker the same session runs.
NOT_RUN = {"devops.cubepaas.io/task-queue": "tests-runs-are-not-executed"}
_LISTENING = re.compile(rb"listening on http://[^:]+:(\d+)")


class ReceiverProcess:
    def __init__(self, env: dict[str, str], log_path: Path, port: int = 0) -> None:
        self.env = {
            **env,
            "CUBEPAAS_WEBHOOK_PORT": str(port),
            "CUBEPAAS_WEBHOOK_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 60.0) -> ReceiverProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        start_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.webhooks"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"python -m worker.webhooks exited {self.proc.returncode}: {self.log_tail()}"
                )
            with self.log_path.open("rb") as log:
                log.seek(start_offset)
                match = _LISTENING.search(log.read())
            if match:
                self.port = int(match.group(1))
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"the receiver printed no port in {timeout:.0f}s: {self.log_tail()}")
        while time.monotonic() < deadline:
            if get(self.port, "/readyz")[0] == 200:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"the receiver did not get ready: {self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "<no log>"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def post(
    port: int, path: str, body: bytes, headers: dict[str, str], timeout: float = 60.0
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(data)
    except json.JSONDecodeError:
        return response.status, data.decode(errors="replace")


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    except OSError as err:
        return 0, str(err)
    finally:
        conn.close()
