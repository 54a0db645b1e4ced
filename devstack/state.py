"""The stack's state folder: ``state.json`` (what runs where), ``env`` (shell exports), credentials."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devstack.proc import is_running

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class ComponentState:
    """One started process: identity (pid + start time), where it listens and where it logs."""

    name: str
    pid: int
    start_time: int
    port: int
    url: str
    log: str
    ports: dict[str, int] = field(default_factory=dict)

    def running(self) -> bool:
        return is_running(self.pid, self.start_time)


@dataclass
class StackState:
    components: dict[str, ComponentState] = field(default_factory=dict)
    started_by: str = "cli"  # "cli" or "harness": the pytest harness stops only a stack it started
    # The data-plane clusters `up --data-plane` added to the stack; `down` removes them again.
    data_planes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "started_by": self.started_by,
                "data_planes": self.data_planes,
                "components": {k: asdict(v) for k, v in self.components.items()},
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> StackState:
        raw: dict[str, Any] = json.loads(text)
        components = {name: ComponentState(**value) for name, value in raw.get("components", {}).items()}
        return cls(
            components=components,
            started_by=str(raw.get("started_by", "cli")),
            data_planes=[str(name) for name in raw.get("data_planes", [])],
        )


def load_state(path: Path) -> StackState:
    try:
        return StackState.from_json(path.read_text())
    except FileNotFoundError:
        return StackState()


def atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def save_state(path: Path, state: StackState) -> None:
    atomic_write(path, state.to_json() + "\n")


def render_env(values: dict[str, str]) -> str:
    """Shell ``export`` lines (safe to ``source``), in a stable order."""
    lines = ["# Written by `python -m devstack up`: source it to talk to the local stack."]
    for name in sorted(values):
        if not _ENV_NAME.match(name):
            raise ValueError(f"not a shell variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(values[name])}")
    return "\n".join(lines) + "\n"


def parse_env(text: str) -> dict[str, str]:
    """Inverse of :func:`render_env` (for the Python API; not a general shell parser)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        name, _, rest = line.removeprefix("export ").partition("=")
        parts = shlex.split(rest)
        values[name] = parts[0] if parts else ""
    return values


@dataclass(frozen=True)
class Credentials:
    s3_access_key: str
    s3_secret_key: str
    jenkins_user: str
    jenkins_token: str


def read_credentials(path: Path) -> Credentials:
    """The stored credentials, or empty ones when ``up`` has not made them yet."""
    try:
        return Credentials(**json.loads(path.read_text()))
    except (FileNotFoundError, TypeError, ValueError):
        return Credentials("", "", "", "")


def ensure_credentials(path: Path) -> Credentials:
    """Random credentials made once per state folder and reused afterwards."""
    try:
        return Credentials(**json.loads(path.read_text()))
    except (FileNotFoundError, TypeError, ValueError):
        pass
    creds = Credentials(
        s3_access_key="devstack" + secrets.token_hex(6),
        s3_secret_key=secrets.token_urlsafe(30),
        jenkins_user="admin",
        jenkins_token=secrets.token_hex(17),
    )
    atomic_write(path, json.dumps(asdict(creds), indent=2) + "\n")
    return creds
