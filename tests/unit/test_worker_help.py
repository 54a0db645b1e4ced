"""``python -m worker --help``: what the image check runs; it lists every setting and starts nothing."""

from __future__ import annotations

import pytest

from worker.main import parse_arguments
from worker.settings import WorkerSettings

pytestmark = pytest.mark.unit


def test_help_lists_every_environment_variable_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_arguments(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    names = [str(field.validation_alias) for field in WorkerSettings.model_fields.values()]
    assert [name for name in names if name not in out] == []


def test_an_unknown_option_is_refused_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_arguments(["--temporal", "x"])
    assert exit_info.value.code == 2
    assert "usage: python -m worker" in capsys.readouterr().err


def test_no_arguments_means_run() -> None:
    assert vars(parse_arguments([])) == {}
