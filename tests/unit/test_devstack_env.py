"""Writing and reading the stack's env file and state file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devstack.state import (
    ComponentState,
    StackState,
    ensure_credentials,
    load_state,
    parse_env,
    read_credentials,
    render_env,
    save_state,
)

AWKWARD = {
    "KUBECONFIG": "/tmp/with space/kubeconfig",
    "S3_SECRET_KEY": "a'b\"c$d`e\\f;g&&h",
    "EMPTY": "",
    "TEMPORAL_ADDRESS": "127.0.0.1:7233",
}


def test_the_env_file_is_export_lines_in_a_stable_order() -> None:
    text = render_env({"B": "2", "A": "1"})
    assert [line for line in text.splitlines() if not line.startswith("#")] == ["export A=1", "export B=2"]


def test_sourcing_the_env_file_in_bash_gives_back_every_value_verbatim(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text(render_env(AWKWARD))
    names = " ".join(sorted(AWKWARD))
    script = f'source "{env_file}"; for n in {names}; do printf "%s=%s\\0" "$n" "${{!n}}"; done'
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True, env={}).stdout.decode()
    sourced = dict(item.split("=", 1) for item in out.split("\0") if item)
    assert sourced == AWKWARD


def test_parse_env_is_the_inverse_of_render_env() -> None:
    assert parse_env(render_env(AWKWARD)) == AWKWARD


def test_names_that_are_not_shell_variables_are_refused() -> None:
    with pytest.raises(ValueError):
        render_env({"NOT-A-NAME": "x"})


def test_the_state_file_round_trips_and_a_missing_one_is_empty(tmp_path: Path) -> None:
    assert load_state(tmp_path / "missing.json").components == {}
    state = StackState(
        components={
            "temporal": ComponentState(
                name="temporal", pid=123, start_time=456, port=7233, url="127.0.0.1:7233",
                log="/x/temporal.log", ports={"main": 7233, "ui": 8233},
            )
        },
        started_by="harness",
    )  # fmt: skip
    save_state(tmp_path / "state.json", state)
    assert load_state(tmp_path / "state.json") == state
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600


def test_credentials_are_made_once_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    assert read_credentials(path).jenkins_token == ""
    first = ensure_credentials(path)
    assert first.s3_access_key and first.s3_secret_key and first.jenkins_token
    assert ensure_credentials(path) == first == read_credentials(path)
