"""devopsctl argument parsing, settings discovery and exit codes (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker import cli


def parse(*argv: str) -> object:
    return cli.build_parser().parse_args(list(argv))


def test_run_arguments() -> None:
    args = parse("run", "demo", "-n", "team-a", "--branch", "dev", "--wait")
    assert (args.command, args.pipeline, args.namespace, args.branch, args.wait) == (
        "run",
        "demo",
        "team-a",
        "dev",
        True,
    )
    args = parse("run", "demo")
    assert args.namespace is None and args.branch is None and args.wait is False


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("pipelines", "pipelines"),
        ("pl", "pipelines"),
        ("executions", "executions"),
        ("pe", "executions"),
        ("PipelineExecutions", "executions"),
    ],
)
def test_get_kinds(kind: str, expected: str) -> None:
    args = parse("get", kind, "-A", "-o", "wide")
    assert args.kind == expected and args.all_namespaces and args.output == "wide"


def test_get_rejects_unknown_kind_and_output(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse("get", "pods")
    assert exc.value.code == cli.EXIT_USAGE
    with pytest.raises(SystemExit) as exc:
        parse("get", "pipelines", "-o", "xml")
    assert exc.value.code == cli.EXIT_USAGE


def test_logs_and_controls() -> None:
    args = parse("logs", "demo-3", "--stage", "Build", "--step", "1", "-f")
    assert (args.execution, args.stage, args.step, args.follow) == ("demo-3", "Build", "1", True)
    for verb in ("pause", "resume", "cancel"):
        args = parse(verb, "demo-3", "--reason", "why")
        assert args.command == verb and args.reason == "why"
    args = parse("approve", "demo-3", "--stage", "2")
    assert args.stage == 2 and args.reason == ""
    args = parse("reject", "demo-3", "-r", "no")
    assert args.stage is None and args.reason == "no"
    assert parse("ui", "demo-3").execution == "demo-3"
    assert parse("describe", "execution", "demo-3").name == "demo-3"


def test_exit_codes_are_distinct() -> None:
    codes = [
        cli.EXIT_OK,
        cli.EXIT_FAILED,
        cli.EXIT_USAGE,
        cli.EXIT_NOT_FOUND,
        cli.EXIT_CONFIG,
        cli.EXIT_APISERVER,
        cli.EXIT_TEMPORAL,
        cli.EXIT_BACKEND,
        cli.EXIT_INTERRUPTED,
    ]
    assert len(set(codes)) == len(codes)


def test_env_file_fills_unset_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "env").write_text(
        "# written by devstack\nexport TEMPORAL_ADDRESS=127.0.0.1:7999\nexport TEMPORAL_UI_URL='http://127.0.0.1:8999/'\n"
        "export S3_ENDPOINT=127.0.0.1:9000\n"
    )
    monkeypatch.setenv("DEVSTACK_DIR", str(state))
    monkeypatch.setenv("S3_ENDPOINT", "explicit:1")
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.delenv("TEMPORAL_UI_URL", raising=False)
    settings = cli.load_settings(cwd=tmp_path)
    assert settings.temporal_address == "127.0.0.1:7999"
    assert settings.temporal_ui_url == "http://127.0.0.1:8999"
    assert settings.s3_endpoint == "explicit:1"  # the environment wins


def test_cwd_devstack_env_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".devstack").mkdir()
    (tmp_path / ".devstack" / "env").write_text("export TEMPORAL_NAMESPACE=from-cwd\n")
    monkeypatch.delenv("DEVSTACK_DIR", raising=False)
    monkeypatch.delenv("TEMPORAL_NAMESPACE", raising=False)
    assert cli.load_settings(cwd=tmp_path).temporal_namespace == "from-cwd"


def test_bad_config_is_one_line_and_exit_4(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DEVSTACK_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUBEPAAS_SHUTDOWN_GRACE", "soon")
    assert cli.main(["get", "executions"]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert err.startswith("devopsctl: error: bad configuration:") and "\n" not in err


def test_missing_kubeconfig_is_bad_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DEVSTACK_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    assert cli.main(["get", "pipelines", "-n", "x"]) == cli.EXIT_CONFIG
    assert "devopsctl: error: bad configuration: cannot load" in capsys.readouterr().err


def test_unreachable_apiserver_is_exit_5(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:1\n"
        "contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
        "users:\n- name: u\n  user:\n    token: t\n"
    )
    monkeypatch.delenv("DEVSTACK_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert cli.main(["get", "executions", "-n", "x"]) == cli.EXIT_APISERVER
    err = capsys.readouterr().err
    assert "devopsctl: error: the Kubernetes apiserver at http://127.0.0.1:1 is unreachable" in err


def test_unreachable_temporal_is_exit_6(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import asyncio

    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.delenv("DEVSTACK_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    ctx = cli.Ctx(cli.load_settings(cwd=tmp_path))
    with pytest.raises(cli.CliError) as exc:
        asyncio.run(ctx.temporal())
    assert exc.value.code == cli.EXIT_TEMPORAL and "127.0.0.1:1" in exc.value.message
