"""``python -m devstack.demo`` (``make demo``): the loop the design describes, on this machine.

A commit is pushed to a local git repository -> SCM polling starts the build run, which tests, builds and
pushes an image (publishImage) to the stack's registry -> the registry's notification reaches the webhook
receiver -> the deploy pipeline whose ``triggers.imagePush`` matches starts with ``CICD_IMAGE_DIGEST`` ->
its applyYaml deploys a Deployment pinned to that digest into ``demo-apps`` -> the Deployment becomes
Available (real controllers, kwok nodes). Each step is printed as it happens, with the seconds since the
push. Set-up, each step reusing what is already there so that running it again only pushes a new commit:

1. the local stack (``python -m devstack up``: apiserver + controllers + kwok, Temporal + UI, MinIO, the
   registry, jenkins-lite) and the CRDs;
2. the worker (``python -m worker``) and the webhook receiver (``python -m worker.webhooks`` on
   ``CUBEPAAS_WEBHOOK_PORT`` of ``.devstack/env``, where the registry sends its notifications) in the
   background: pids and logs in ``.devstack/{worker,webhooks}.{pid,log}``;
3. the base image in the registry, and a bare git repository ``.devstack/demo-repo.git`` with a real
   ``.cubepaas.devops.yml`` (clone, test, build, publishImage);
4. the namespace ``demo``: Secrets, PipelineSetting (jenkins-lite, MinIO, the stack's registry), the
   Pipeline ``demo`` (pollScm) and the Pipeline ``demo-deploy`` (imagePush of ``demo/hello``);
5. a ``git push`` of the next ``version.txt``, followed through the loop (devstack/demo_loop.py).

``--stop`` (``make demo-stop``) stops the receiver, the worker and the stack (data is kept). The exit code
is 0 only when the whole loop worked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from activities.errors import DevopsError
from activities.kube import Kube
from crds.execution import PipelineExecution
from devstack.baseimage import seed_base_image
from devstack.demo_loop import (
    APP,
    APPS_NAMESPACE,
    BUILD,
    BUILD_FILE,
    DEPLOY,
    IMAGE_REPOSITORY,
    POLL_INTERVAL,
    Loop,
    apply_pipelines,
    wait_polled,
)
from devstack.gitrepo import GitCommandError, git
from devstack.proc import free_port, is_running, spawn, tail, terminate
from devstack.project import apply_project as apply_project_setting
from devstack.stack import Stack, StackError

NAMESPACE = "demo"
WORKER_READY_TIMEOUT = 90.0

VERSION_FILE = "version.txt"

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


@dataclass(frozen=True)
class Background:
    """A process the demo leaves running: ``python -m <module>``, pid file and log in ``.devstack/``."""

    name: str
    module: str

    def paths(self, stack: Stack) -> tuple[Path, Path]:
        return stack.dir / f"{self.name}.pid", stack.dir / f"{self.name}.log"


WORKER = Background("worker", "worker")
RECEIVER = Background("webhooks", "worker.webhooks")


def worker_paths(stack: Stack) -> tuple[Path, Path]:
    return WORKER.paths(stack)


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


def ensure_background(stack: Stack, proc_info: Background, port: int, extra: dict[str, str]) -> str:
    """Start ``python -m <module>`` in the background unless the one we started is still running and ready
    on ``port``."""
    pid_path, log_path = proc_info.paths(stack)
    info = _read_pidfile(pid_path)
    if info and is_running(int(info["pid"]), int(info["start_time"])):
        if _ready(int(info.get("health_port", 0))):
            return f"reused (pid {info['pid']})"
        terminate(int(info["pid"]), int(info["start_time"]), grace=35.0)
    child_env = dict(os.environ)
    child_env.update(extra)
    child_env["PYTHONUNBUFFERED"] = "1"
    repo_root = Path(__file__).resolve().parent.parent
    proc = spawn([sys.executable, "-m", proc_info.module], log_path, env=child_env, cwd=repo_root)
    pid_path.write_text(json.dumps({"pid": proc.pid, "start_time": proc.start_time, "health_port": port}))
    offset = 0
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    while not _ready(port):
        if not is_running(proc.pid, proc.start_time):
            raise StackError(
                f"the {proc_info.name} process exited during start-up; last lines of {log_path}:\n"
                + tail(log_path, 30, offset)
            )
        if time.monotonic() > deadline:
            terminate(proc.pid, proc.start_time)
            raise StackError(
                f"the {proc_info.name} process was not ready after {WORKER_READY_TIMEOUT:.0f}s; last lines"
                f" of {log_path}:\n" + tail(log_path, 30, offset)
            )
        time.sleep(0.3)
    return f"started (pid {proc.pid}, log {log_path})"


def ensure_worker(stack: Stack, env: dict[str, str]) -> str:
    """``python -m worker`` (health on a free port)."""
    port = free_port()
    health = {
        "CUBEPAAS_HEALTH_HOST": "127.0.0.1",
        "CUBEPAAS_HEALTH_PORT": str(port),
        "CUBEPAAS_METRICS_PORT": "0",
    }
    return ensure_background(stack, WORKER, port, {**env, **health})


def ensure_receiver(stack: Stack, env: dict[str, str]) -> str:
    """``python -m worker.webhooks`` on ``CUBEPAAS_WEBHOOK_PORT``: the port the stack's registry notifies."""
    port = int(env["CUBEPAAS_WEBHOOK_PORT"])
    return ensure_background(stack, RECEIVER, port, {**env, "CUBEPAAS_WEBHOOK_HOST": "127.0.0.1"})


def stop_background(stack: Stack, proc_info: Background) -> str:
    pid_path, _ = proc_info.paths(stack)
    info = _read_pidfile(pid_path)
    if not info:
        return "not running"
    outcome = terminate(int(info["pid"]), int(info["start_time"]), grace=35.0)
    pid_path.unlink(missing_ok=True)
    return outcome


def stop_worker(stack: Stack) -> str:
    return stop_background(stack, WORKER)


def stop_receiver(stack: Stack) -> str:
    return stop_background(stack, RECEIVER)


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
        (work / ".cubepaas.devops.yml").write_text(BUILD_FILE)
        for rel, text in REPO_FILES.items():
            (work / rel).write_text(text)
            if rel.endswith(".sh"):
                (work / rel).chmod(0o755)
        if not (work / VERSION_FILE).exists():
            (work / VERSION_FILE).write_text("1\n")
        _git(work, "add", "-A")
        if not has_main or _git(work, "status", "--porcelain"):
            _git(work, "commit", "-q", "-m", "demo pipeline")
            _git(work, "push", "-q", str(bare), "HEAD:refs/heads/main")
        sha = _git(work, "rev-parse", "HEAD")
    return bare.as_uri(), sha


def push_commit(stack: Stack) -> tuple[str, str]:
    """A new commit on the repository's ``main`` (the next version of ``version.txt``), pushed as a
    developer would: ``git push``. Returns the commit and the version."""
    bare = stack.dir / "demo-repo.git"
    with tempfile.TemporaryDirectory(prefix="demo-push-") as tmp:
        work = Path(tmp) / "repo"
        _git(Path(tmp), "clone", "-q", "-b", "main", str(bare), str(work))
        version = str(int((work / VERSION_FILE).read_text().strip() or "0") + 1)
        (work / VERSION_FILE).write_text(version + "\n")
        _git(work, "commit", "-q", "-am", f"hello {version}")
        _git(work, "push", "-q", "origin", "HEAD:refs/heads/main")
        return _git(work, "rev-parse", "HEAD"), version


# --- the custom resources -------------------------------------------------------------------------


def apply_project(kube: Kube, env: dict[str, str], repo_url: str) -> None:
    """The project ``demo``: its Secrets and PipelineSetting (jenkins-lite, MinIO, and the stack's registry as
    CICD_LOCAL_REGISTRY, plain HTTP on loopback), and the demo's two Pipelines."""
    from crds.setting import DEFAULT_SETTING_NAME, PipelineSetting

    apply_project_setting(kube, NAMESPACE, env, executor_quota=2, poll_interval="1s")
    live = kube.get(PipelineSetting, NAMESPACE, DEFAULT_SETTING_NAME)
    host = urlsplit(env["REGISTRY_URL"]).netloc
    if live.spec.registry.host != host or not live.spec.registry.insecure:
        live.spec.registry.host = host
        live.spec.registry.insecure = True
        kube.replace(live)
    apply_pipelines(kube, NAMESPACE, repo_url)


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
    say(
        f"webhook receiver (python -m worker.webhooks) on port {env['CUBEPAAS_WEBHOOK_PORT']}, where the "
        f"registry sends its notifications: {ensure_receiver(stack, env)}"
    )
    host = urlsplit(env["REGISTRY_URL"]).netloc
    seed_base_image(host)
    say(f"registry {host} holds the base image cubepaas/base:busybox")
    repo_url, sha = ensure_repo(stack)
    say(f"git repository {repo_url} at {sha[:12]}")
    settings = WorkerSettings.load(stack.env_path)
    kube = settings.kube()
    try:
        apply_project(kube, env, repo_url)
        say(
            f"namespace {NAMESPACE}: PipelineSetting (External Jenkins {env['JENKINS_URL']}, object store "
            f"{env['S3_ENDPOINT']}, registry {host}), Pipeline {BUILD} (pollScm every {POLL_INTERVAL}) and "
            f"Pipeline {DEPLOY} (imagePush of {IMAGE_REPOSITORY}, deploying to namespace {APPS_NAMESPACE})"
        )
        seen = wait_polled(kube, NAMESPACE)
        say(f"SCM polling watches main (last seen {seen[:12]}); ready in {time.monotonic() - began:.0f}s")
        print(flush=True)
        pushed, version = push_commit(stack)
        loop = Loop(kube, NAMESPACE, say)
        loop.say(f"git push: commit {pushed[:12]} (hello {version}) on main")
        ctx = cli.Ctx(settings)

        def watch(name: str) -> PipelineExecution:
            print(flush=True)
            pe = cli.watch_execution(ctx, NAMESPACE, name)
            cli.finish_message(ctx, pe)
            print(flush=True)
            return pe

        result = loop.follow(pushed, watch)
    finally:
        kube.close()
    print(flush=True)
    say(
        f"the loop worked in {time.monotonic() - loop.began:.0f}s: commit {pushed[:12]} -> "
        f"{result.build.name} -> {result.digest} -> {result.deploy.name} -> deployment/{APP} Available"
    )
    print("See the runs in the Temporal UI:", flush=True)
    cli.main(["ui", result.build.name, "-n", NAMESPACE], settings=settings)
    cli.main(["ui", result.deploy.name, "-n", NAMESPACE], settings=settings)
    print(
        f"""
Filter the UI's workflow list with:  DevopsPipeline="{BUILD}"   (see docs/temporal-ui.md)

Try the CLI (`source .venv/bin/activate` puts devopsctl on your PATH; from this directory it reads
{stack.env_path} by itself):
  devopsctl get executions -n {NAMESPACE}
  devopsctl describe execution {result.build.name} -n {NAMESPACE}
  devopsctl logs {result.build.name} -n {NAMESPACE} --stage Image
  devopsctl get pipelines -n {NAMESPACE} -o wide          # the triggers
  kubectl get deployment {APP} -n {APPS_NAMESPACE} -o wide  # KUBECONFIG from {stack.env_path}
  devopsctl run {BUILD} -n {NAMESPACE}                 # start another run, then, while it runs:
  devopsctl logs {BUILD}-<run> -n {NAMESPACE} -f        #   follow its logs live
  devopsctl pause {BUILD}-<run> -n {NAMESPACE}          #   hold it before its next stage
  devopsctl resume {BUILD}-<run> -n {NAMESPACE}
  devopsctl cancel {BUILD}-<run> -n {NAMESPACE}         #   stop it (phase Aborted)

The stack, the worker and the webhook receiver keep running. Stop everything with:  make demo-stop
(`make demo` again reuses them and pushes the next commit.)""",
        flush=True,
    )
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stop", action="store_true", help="stop the demo's worker, webhook receiver and the local stack"
    )
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
            say(f"webhook receiver: {stop_receiver(stack)}")
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
