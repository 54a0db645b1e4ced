"""``python -m devstack.demo`` (``make demo``): the whole product on this machine, one run to Success.

Steps, each reusing what is already there so that running it again only starts a new run:

1. the local stack (``python -m devstack up``: apiserver, Temporal + UI, MinIO, jenkins-lite);
2. the CRDs;
3. the worker (``python -m worker``) in the background: pid in ``.devstack/worker.pid``, log in
   ``.devstack/worker.log``;
4. a local bare git repository ``.devstack/demo-repo.git`` with a real ``.cubepaas.devops.yml``
   (clone, a test stage running a small shell test, a build stage with two parallel steps);
5. the namespace ``demo`` with the Jenkins and object store credentials as Secrets, its PipelineSetting
   (External Jenkins = jenkins-lite, object store = MinIO, executorQuota 2, pollInterval 1s) and the
   Pipeline ``demo``;
6. one execution, followed live exactly as ``devopsctl run demo -n demo --wait`` does;
7. the Temporal UI link and the commands to try next.

``--stop`` (``make demo-stop``) stops the worker and the stack (data is kept). The exit code is 0 only
when the run succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from activities.errors import DevopsError
from devstack.gitrepo import GitCommandError, git
from devstack.proc import free_port, is_running, spawn, tail, terminate
from devstack.project import apply_project as apply_project_setting
from devstack.stack import Stack, StackError

NAMESPACE = "demo"
PIPELINE = "demo"
WORKER_READY_TIMEOUT = 90.0

PIPELINE_FILE = """\
# The demo pipeline (devstack/demo.py). The clone stage is added automatically.
stages:
- name: Test
  steps:
  - runScriptConfig:
      image: alpine:3.20
      shellScript: |
        echo "running the unit tests"
        sh ./test.sh
- name: Build
  steps:
  - runScriptConfig:
      image: alpine:3.20
      shellScript: |
        echo "building the binary"
        for part in main util cli; do echo "compiling $part.c"; sleep 1; done
        mkdir -p dist && cp hello.sh dist/hello && echo "built dist/hello"
  - runScriptConfig:
      image: busybox:1.36
      shellScript: |
        echo "building the docs"
        for page in index usage faq; do echo "rendering $page.html"; sleep 1; done
timeout: 10m
"""

REPO_FILES = {
    "hello.sh": '#!/bin/sh\necho "hello, ${1:-world}"\n',
    "test.sh": (
        "#!/bin/sh\n"
        "set -e\n"
        'check() { got=$(sh ./hello.sh "$1"); [ "$got" = "$2" ] || { echo "FAIL: $got != $2"; exit 1; }; '
        'echo "ok - $2"; }\n'
        'check "" "hello, world"\n'
        'check demo "hello, demo"\n'
        'echo "2 tests passed"\n'
    ),
    "README.md": "# demo\n\nThe example repository of `make demo`.\n",
}


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


# --- the worker process ---------------------------------------------------------------------------


def worker_paths(stack: Stack) -> tuple[Path, Path]:
    return stack.dir / "worker.pid", stack.dir / "worker.log"


def _read_pidfile(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return None


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def ensure_worker(stack: Stack, env: dict[str, str]) -> str:
    """Start ``python -m worker`` in the background unless the one we started is still running."""
    pid_path, log_path = worker_paths(stack)
    info = _read_pidfile(pid_path)
    if info and is_running(int(info["pid"]), int(info["start_time"])):
        port = int(info.get("health_port", 0))
        if not port or _ready(port):
            return f"reused (pid {info['pid']})"
    port = free_port()
    child_env = dict(os.environ)
    child_env.update(env)
    child_env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "CUBEPAAS_HEALTH_HOST": "127.0.0.1",
            "CUBEPAAS_HEALTH_PORT": str(port),
            "CUBEPAAS_METRICS_PORT": "0",
        }
    )
    repo_root = Path(__file__).resolve().parent.parent
    proc = spawn([sys.executable, "-m", "worker"], log_path, env=child_env, cwd=repo_root)
    pid_path.write_text(json.dumps({"pid": proc.pid, "start_time": proc.start_time, "health_port": port}))
    offset = 0
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    while not _ready(port):
        if not is_running(proc.pid, proc.start_time):
            raise StackError(
                f"the worker exited during start-up; last lines of {log_path}:\n" + tail(log_path, 30, offset)
            )
        if time.monotonic() > deadline:
            terminate(proc.pid, proc.start_time)
            raise StackError(
                f"the worker was not ready after {WORKER_READY_TIMEOUT:.0f}s; last lines of "
                f"{log_path}:\n" + tail(log_path, 30, offset)
            )
        time.sleep(0.3)
    return f"started (pid {proc.pid}, log {log_path})"


def stop_worker(stack: Stack) -> str:
    pid_path, _ = worker_paths(stack)
    info = _read_pidfile(pid_path)
    if not info:
        return "not running"
    outcome = terminate(int(info["pid"]), int(info["start_time"]), grace=35.0)
    pid_path.unlink(missing_ok=True)
    return outcome


# --- the repository -------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    try:
        return git(cwd, *args, author="CubePaaS demo")
    except GitCommandError as err:
        raise StackError(str(err)) from err


def ensure_repo(stack: Stack) -> tuple[str, str]:
    """``.devstack/demo-repo.git`` with the demo files on ``main`` (a new commit only when they changed)."""
    bare = stack.dir / "demo-repo.git"
    if not (bare / "HEAD").exists():
        _git(stack.dir, "init", "-q", "--bare", "-b", "main", str(bare))
    with tempfile.TemporaryDirectory(prefix="demo-repo-") as tmp:
        work = Path(tmp)
        _git(work, "init", "-q", "-b", "main")
        has_main = bool(_git(bare, "branch", "--list", "main"))
        if has_main:
            _git(work, "fetch", "-q", str(bare), "main")
            _git(work, "checkout", "-q", "-B", "main", "FETCH_HEAD")
        (work / ".cubepaas.devops.yml").write_text(PIPELINE_FILE)
        for rel, text in REPO_FILES.items():
            (work / rel).write_text(text)
            if rel.endswith(".sh"):
                (work / rel).chmod(0o755)
        _git(work, "add", "-A")
        if not has_main or _git(work, "status", "--porcelain"):
            _git(work, "commit", "-q", "-m", "demo pipeline")
            _git(work, "push", "-q", str(bare), "HEAD:refs/heads/main")
        sha = _git(work, "rev-parse", "HEAD")
    return bare.as_uri(), sha


# --- the custom resources -------------------------------------------------------------------------


def apply_project(env: dict[str, str], repo_url: str) -> None:
    from activities.kube import Kube
    from crds.meta import ObjectMeta
    from crds.pipeline import Pipeline, PipelineSpec

    kube = Kube.from_kubeconfig(env["KUBECONFIG"])
    try:
        apply_project_setting(kube, NAMESPACE, env, executor_quota=2, poll_interval="1s")

        pipe_spec = PipelineSpec(
            display_name="The make demo pipeline", repository_url=repo_url, default_branch="main"
        )
        pipeline = Pipeline(metadata=ObjectMeta(name=PIPELINE, namespace=NAMESPACE), spec=pipe_spec)
        live_pipe = kube.find(Pipeline, NAMESPACE, PIPELINE)
        if live_pipe is None:
            kube.create(pipeline)
        elif live_pipe.spec.repository_url != repo_url:
            pipeline.metadata.resource_version = live_pipe.metadata.resource_version
            pipeline.status = live_pipe.status
            kube.replace(pipeline)
    finally:
        kube.close()


def install_crds(env: dict[str, str]) -> None:
    from kubernetes import config as k8s_config

    from crds.install import install_crds as install

    api_client = k8s_config.new_client_from_config(config_file=env["KUBECONFIG"])  # type: ignore[no-untyped-call]
    try:
        install(api_client)
    finally:
        api_client.close()


# --- main -----------------------------------------------------------------------------------------


def run_demo(stack: Stack) -> int:
    from worker import cli
    from worker.settings import WorkerSettings

    began = time.monotonic()
    say("local stack (python -m devstack up)")
    env = stack.up(started_by="cli")
    say("custom resource definitions")
    install_crds(env)
    say(f"worker (python -m worker): {ensure_worker(stack, env)}")
    repo_url, sha = ensure_repo(stack)
    say(f"git repository {repo_url} at {sha[:12]}")
    apply_project(env, repo_url)
    say(
        f"namespace {NAMESPACE}: Secrets, PipelineSetting (External Jenkins {env['JENKINS_URL']}, "
        f"object store {env['S3_ENDPOINT']}) and Pipeline {PIPELINE}"
    )
    say(
        f"ready in {time.monotonic() - began:.0f}s; starting a run "
        f"(devopsctl run {PIPELINE} -n {NAMESPACE} --commit {sha[:12]} --wait)"
    )
    print(flush=True)

    settings = WorkerSettings.load(stack.env_path)
    code = cli.main(["run", PIPELINE, "-n", NAMESPACE, "--commit", sha, "--wait"], settings=settings)
    print(flush=True)
    if code != cli.EXIT_OK:
        say(f"the run did not succeed (exit {code}); worker log: {worker_paths(stack)[1]}")
        return code

    kube = settings.kube()
    try:
        from crds.pipeline import Pipeline

        last = kube.get(Pipeline, NAMESPACE, PIPELINE).status
        execution = last.last_execution_name if last else None
    finally:
        kube.close()
    execution = execution or f"{PIPELINE}-1"
    print("The run succeeded. See it in the Temporal UI:", flush=True)
    cli.main(["ui", execution, "-n", NAMESPACE], settings=settings)
    print(
        f"""
Filter the UI's workflow list with:  DevopsPipeline="{PIPELINE}"   (see docs/temporal-ui.md)

Try the CLI (`source .venv/bin/activate` puts devopsctl on your PATH; from this directory it reads
{stack.env_path} by itself):
  devopsctl get executions -n {NAMESPACE}
  devopsctl describe execution {execution} -n {NAMESPACE}
  devopsctl logs {execution} -n {NAMESPACE} --stage Build
  devopsctl run {PIPELINE} -n {NAMESPACE}                 # start another run, then, while it runs:
  devopsctl logs {PIPELINE}-<run> -n {NAMESPACE} -f        #   follow its logs live
  devopsctl pause {PIPELINE}-<run> -n {NAMESPACE}          #   hold it before its next stage
  devopsctl resume {PIPELINE}-<run> -n {NAMESPACE}
  devopsctl cancel {PIPELINE}-<run> -n {NAMESPACE}         #   stop it (phase Aborted)
  devopsctl approve {PIPELINE}-<run> -n {NAMESPACE}        #   for a stage with approval: true

The stack and the worker keep running. Stop everything with:  make demo-stop
(`make demo` again reuses them and starts a new run.)""",
        flush=True,
    )
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stop", action="store_true", help="stop the demo's worker and the local stack")
    parser.add_argument(
        "--non-interactive",
        action="store_true",
        help="plain progress lines even on a terminal (for CI and tests)",
    )
    parser.add_argument("--dir", help="state folder (default: $DEVSTACK_DIR or <repo>/.devstack)")
    args = parser.parse_args(argv)
    stack = Stack(args.dir, log=lambda line: print(f"    {line}", flush=True))
    if args.dir:
        os.environ["DEVSTACK_DIR"] = str(stack.dir)
    try:
        if args.stop:
            say(f"worker: {stop_worker(stack)}")
            say("local stack")
            stack.down()
            say("stopped (data kept in " + str(stack.dir) + "; `make demo` starts everything again)")
            return 0
        if args.non_interactive:
            os.environ["TERM"] = "dumb"
        return run_demo(stack)
    except (StackError, DevopsError) as err:
        print(f"demo: error: {err}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(
            "\ndemo: interrupted (the stack and the worker keep running; `make demo-stop` stops them)",
            file=sys.stderr,
            flush=True,
        )
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
