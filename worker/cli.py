"""``devopsctl``: run, watch, steer and inspect pipeline executions from a terminal.

It reads the same settings as the worker (:class:`worker.settings.WorkerSettings`: the environment,
and for variables left unset ``$DEVSTACK_DIR/env`` or ``./.devstack/env`` when one exists), talks to
the Kubernetes apiserver for the custom resources, to Temporal for signals and updates, to Jenkins for
live logs and to the object store for the logs of finished steps.

Exit codes (also in ``devopsctl --help``):

====  =====================================================================================
0     success (``run --wait``: the run ended Success)
1     the run did not succeed (Failed, Aborted, Denied), or the workflow refused the request
      (e.g. ``approve`` when no stage is waiting; the reason is printed)
2     usage error (bad arguments)
3     a missing object (Pipeline, PipelineExecution, workflow, step)
4     bad configuration (settings, kubeconfig, credentials, missing CRDs)
5     the Kubernetes apiserver is unreachable (or failing)
6     Temporal is unreachable
7     Jenkins or the object store is unreachable (logs)
130   interrupted (Ctrl-C); a run being watched keeps running
====  =====================================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

import yaml
from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import (
    DevopsError,
    JenkinsPermanentError,
    KubeForbiddenError,
    KubeInvalidError,
    KubeNotFoundError,
    KubeTransientError,
    StorePermanentError,
    StoreTransientError,
)
from activities.jenkins import JenkinsEngine, LogCursor
from activities.kube import Kube
from activities.logstore import LogStore, StoreConfig
from crds.execution import PipelineExecution, StepStatus
from crds.messages import ControlInput, GateDecisionInput, Signal, Update, execution_workflow_id
from crds.pipeline import Pipeline
from crds.reasons import ExecutionPhase, JenkinsMode, StageState
from crds.setting import DEFAULT_SETTING_NAME, PipelineSetting
from worker import cli_render as render
from worker.runs import RunNumberError, create_run
from worker.settings import WorkerSettings
from worker.temporal import connect, workflow_ui_url

PROG = "devopsctl"
T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFIG = 4
EXIT_APISERVER = 5
EXIT_TEMPORAL = 6
EXIT_BACKEND = 7
EXIT_INTERRUPTED = 130

#: How long a watch keeps retrying an apiserver that stopped answering before giving up.
WATCH_OUTAGE_SECONDS = 60.0
TEMPORAL_CONNECT_TIMEOUT = 15.0

KIND_ALIASES: dict[str, str] = {
    "pipeline": "pipelines",
    "pipelines": "pipelines",
    "pl": "pipelines",
    "execution": "executions",
    "executions": "executions",
    "pipelineexecution": "executions",
    "pipelineexecutions": "executions",
    "pe": "executions",
}


class CliError(Exception):
    """A failure to report as one line (``devopsctl: error: <message>``) with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# --- settings and clients ------------------------------------------------------------------------------


def env_file_candidates(cwd: Path | None = None) -> list[Path]:
    """``$DEVSTACK_DIR/env`` first, then ``./.devstack/env``."""
    found: list[Path] = []
    explicit = os.environ.get("DEVSTACK_DIR")
    if explicit:
        found.append(Path(explicit).expanduser() / "env")
    found.append((cwd or Path.cwd()) / ".devstack" / "env")
    return found


def load_settings(cwd: Path | None = None) -> WorkerSettings:
    env_file = next((p for p in env_file_candidates(cwd) if p.is_file()), None)
    try:
        return WorkerSettings.load(env_file)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "settings"
        raise CliError(f"bad configuration: {where}: {first.get('msg')}", EXIT_CONFIG) from err
    except OSError as err:
        raise CliError(f"bad configuration: cannot read {env_file}: {err}", EXIT_CONFIG) from err


def default_namespace(settings: WorkerSettings) -> str:
    """``$DEVOPS_NAMESPACE``, else the kubeconfig's current-context namespace, else ``default``."""
    explicit = os.environ.get("DEVOPS_NAMESPACE")
    if explicit:
        return explicit
    try:
        from kubernetes import config as k8s_config

        _, current = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=settings.kubeconfig
        )
        namespace = (current or {}).get("context", {}).get("namespace")
        if namespace:
            return str(namespace)
    except Exception:
        pass
    return "default"


@dataclass
class Ctx:
    """What a command needs, created lazily so that ``--help`` and pure commands touch nothing."""

    settings: WorkerSettings
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _kube: Kube | None = None

    def kube(self) -> Kube:
        if self._kube is None:
            try:
                self._kube = self.settings.kube()
            except Exception as err:  # kubernetes' ConfigException, a missing file, a bad YAML...
                where = self.settings.kubeconfig or "the default kubeconfig"
                message = f"bad configuration: cannot load {where}: {_first_line(err)}"
                raise CliError(message, EXIT_CONFIG) from err
        return self._kube

    async def temporal(self) -> Client:
        address = self.settings.temporal_address
        try:
            return await asyncio.wait_for(
                connect(self.settings, identity=f"devopsctl@{_user()}"), TEMPORAL_CONNECT_TIMEOUT
            )
        except TimeoutError as err:
            raise CliError(
                f"Temporal is unreachable at {address}: no answer in {TEMPORAL_CONNECT_TIMEOUT:.0f}s",
                EXIT_TEMPORAL,
            ) from err
        except Exception as err:
            message = f"Temporal is unreachable at {address}: {_first_line(err)}"
            raise CliError(message, EXIT_TEMPORAL) from err

    @property
    def tty(self) -> bool:
        return _isatty(self.out) and os.environ.get("TERM", "") != "dumb"

    @property
    def color(self) -> bool:
        return self.tty and not os.environ.get("NO_COLOR")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def kube_call(ctx: Ctx, what: str, call: Callable[[], T]) -> T:
    """Run one apiserver call; classified failures become :class:`CliError` with the right exit code."""
    try:
        return call()
    except KubeNotFoundError as err:
        raise CliError(f"{what}: not found", EXIT_NOT_FOUND) from err
    except KubeForbiddenError as err:
        raise CliError(
            f"{what}: the apiserver refused the credentials or permission: {err.message}", EXIT_CONFIG
        ) from err
    except KubeInvalidError as err:
        raise CliError(f"{what}: rejected by the apiserver: {err.message}", EXIT_FAILED) from err
    except KubeTransientError as err:
        host = ctx.kube().api_client.configuration.host
        raise CliError(
            f"the Kubernetes apiserver at {host} is unreachable or failing: {err.message}", EXIT_APISERVER
        ) from err


def get_execution(ctx: Ctx, namespace: str, name: str) -> PipelineExecution:
    kube = ctx.kube()
    try:
        return kube.get(PipelineExecution, namespace, name)
    except KubeNotFoundError as err:
        raise CliError(
            f'pipelineexecution "{name}" not found in namespace "{namespace}"', EXIT_NOT_FOUND
        ) from err
    except DevopsError:
        return kube_call(
            ctx, f"pipelineexecution {namespace}/{name}", lambda: kube.get(PipelineExecution, namespace, name)
        )


def find_setting(ctx: Ctx, namespace: str) -> PipelineSetting | None:
    kube = ctx.kube()
    return kube_call(
        ctx,
        f"pipelinesetting {namespace}/{DEFAULT_SETTING_NAME}",
        lambda: kube.find(PipelineSetting, namespace, DEFAULT_SETTING_NAME),
    )


# --- argument parsing ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    epilog = (
        "exit codes: 0 success; 1 the run did not succeed or the request was refused; 2 usage; "
        "3 not found; 4 bad configuration; 5 apiserver unreachable; 6 Temporal unreachable; "
        "7 Jenkins or object store unreachable; 130 interrupted"
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run, watch, steer and inspect CubePaaS DevOps pipeline executions.",
        epilog=epilog,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def ns_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-n",
            "--namespace",
            help="project namespace (default: $DEVOPS_NAMESPACE, else the kubeconfig "
            "context's, else 'default')",
        )

    p = sub.add_parser("run", help="start a run of a pipeline")
    p.add_argument("pipeline", metavar="PIPELINE")
    ns_arg(p)
    p.add_argument("--branch", "-b", help="branch to build (default: the pipeline's defaultBranch)")
    p.add_argument("--commit", "-c", default="", help="commit to build (default: the head of the branch)")
    p.add_argument(
        "--wait",
        "-w",
        action="store_true",
        help="follow the run's progress until it ends; exit 0 only on Success",
    )
    p.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)

    p = sub.add_parser("get", help="list pipelines or executions")
    p.add_argument("kind", metavar="pipelines|executions", type=_kind)
    p.add_argument("name", nargs="?", metavar="NAME", help="only this object")
    ns_arg(p)
    p.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    p.add_argument("-o", "--output", choices=["wide", "json", "yaml"], help="output format")
    p.add_argument("-l", "--selector", help="label selector, e.g. devops.cubepaas.io/pipeline=demo")

    p = sub.add_parser("describe", help="show an execution in detail")
    p.add_argument("kind", metavar="execution", type=_kind)
    p.add_argument("name", metavar="NAME")
    ns_arg(p)

    p = sub.add_parser("logs", help="print (or follow) the logs of an execution's steps")
    p.add_argument("execution", metavar="EXECUTION")
    ns_arg(p)
    p.add_argument("--stage", "-s", help="stage index or name (default: every stage)")
    p.add_argument("--step", help="step index or name within --stage (default: every step)")
    p.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="follow live from Jenkins until the selected steps (or the run) end",
    )
    p.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)

    for name, text in (
        ("pause", "hold the run before its next stage"),
        ("resume", "continue a paused run"),
        ("cancel", "stop the run (the build is stopped, logs are kept; phase Aborted)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("execution", metavar="EXECUTION")
        ns_arg(p)
        p.add_argument("--reason", "-r", default="", help="recorded with the request")

    for name, text in (
        ("approve", "approve the stage waiting for approval"),
        ("reject", "reject the stage waiting for approval (the run ends Denied)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("execution", metavar="EXECUTION")
        ns_arg(p)
        p.add_argument("--stage", type=int, help="index of the stage (default: the one waiting)")
        p.add_argument("--reason", "-r", default="", help="recorded with the decision")

    p = sub.add_parser("ui", help="print the link to the run in the Temporal UI")
    p.add_argument("execution", metavar="EXECUTION")
    ns_arg(p)

    from worker.cli_triggers import add_webhook_parser

    add_webhook_parser(sub, ns_arg)
    return parser


def _kind(value: str) -> str:
    kind = KIND_ALIASES.get(value.lower())
    if kind is None:
        raise argparse.ArgumentTypeError(f"unknown kind {value!r} (use pipelines or executions)")
    return kind


# --- commands ----------------------------------------------------------------------------------------


def _namespace(ctx: Ctx, args: argparse.Namespace) -> str:
    explicit: str | None = args.namespace
    return explicit or default_namespace(ctx.settings)


def cmd_run(ctx: Ctx, args: argparse.Namespace) -> int:
    namespace = _namespace(ctx, args)
    kube = ctx.kube()
    try:
        pe = create_run(
            kube, namespace, args.pipeline, branch=args.branch, commit=args.commit, trigger_user=_user()
        )
    except KubeNotFoundError as err:
        message = f'pipeline "{args.pipeline}" not found in namespace "{namespace}"'
        raise CliError(message, EXIT_NOT_FOUND) from err
    except RunNumberError as err:
        raise CliError(str(err), EXIT_FAILED) from err
    except DevopsError as err:
        failure = err
        kube_call(ctx, f"run {namespace}/{args.pipeline}", lambda: _raise(failure))
        raise  # pragma: no cover - kube_call always raises
    name = pe.metadata.name or ""
    print(
        f"pipelineexecution/{name} created (run {pe.spec.run} of {args.pipeline}, "
        f"branch {pe.spec.branch or '-'})",
        file=ctx.out,
        flush=True,
    )
    if not args.wait:
        return EXIT_OK
    final = watch_execution(ctx, namespace, name, interval=args.interval)
    return finish_message(ctx, final)


def _raise(err: BaseException) -> NoReturn:
    raise err


@dataclass
class WorkflowLiveness:
    """Notices a run whose workflow ended without ending the CR (terminated by hand, for example), so
    ``--wait`` and ``-f`` do not wait forever. Checks Temporal every ``every`` seconds; ignores an
    unreachable Temporal (the CR is what is watched)."""

    ctx: Ctx
    every: float = 10.0
    grace_checks: int = 2
    _next: float = 0.0
    _closed_seen: int = 0

    def check(self, pe: PipelineExecution) -> None:
        now = time.monotonic()
        if pe.is_finished or now < self._next:
            return
        self._next = now + self.every
        if pe.status is None or pe.status.workflow is None:
            return
        closed = asyncio.run(self._closed(workflow_id_of(pe)))
        if closed is None:
            self._closed_seen = 0
            return
        self._closed_seen += 1
        if self._closed_seen > self.grace_checks:  # the last status write had time to land
            phase = pe.status.phase or "Pending"
            raise CliError(
                f"the workflow of {pe.metadata.name} ended {closed} but the execution is still "
                f"{phase}; see `devopsctl ui {pe.metadata.name}`",
                EXIT_FAILED,
            )

    async def _closed(self, wf_id: str) -> str | None:
        try:
            client = await asyncio.wait_for(connect(self.ctx.settings), TEMPORAL_CONNECT_TIMEOUT)
            desc = await client.get_workflow_handle(wf_id).describe()
        except Exception:
            return None
        status = desc.status
        if status is None or status == WorkflowExecutionStatus.RUNNING:
            return None
        return status.name


def watch_execution(
    ctx: Ctx, namespace: str, name: str, *, interval: float = 1.0, view: render.ProgressView | None = None
) -> PipelineExecution:
    """Poll the execution and show its progress until it ends; returns its last state."""
    view = view or render.ProgressView(ctx.out, tty=ctx.tty, color=ctx.color)
    liveness = WorkflowLiveness(ctx)
    outage_since: float | None = None
    while True:
        try:
            pe = get_execution(ctx, namespace, name)
            outage_since = None
        except CliError as err:
            if err.code != EXIT_APISERVER:
                raise
            now = time.monotonic()
            outage_since = outage_since or now
            if now - outage_since > WATCH_OUTAGE_SECONDS:
                raise
            time.sleep(interval)
            continue
        view.update(pe)
        if pe.is_finished:
            return pe
        liveness.check(pe)
        time.sleep(interval)


def finish_message(ctx: Ctx, pe: PipelineExecution) -> int:
    status = pe.status
    phase = status.phase if status else None
    name = pe.metadata.name
    took = f" in {status.duration}" if status and status.duration else ""
    if phase == ExecutionPhase.SUCCESS:
        print(f"pipelineexecution/{name} succeeded{took}", file=ctx.out, flush=True)
        return EXIT_OK
    message = f": {status.message}" if status and status.message else ""
    print(f"{PROG}: error: pipelineexecution/{name} ended {phase}{took}{message}", file=ctx.err, flush=True)
    return EXIT_FAILED


def cmd_get(ctx: Ctx, args: argparse.Namespace) -> int:
    kube = ctx.kube()
    all_ns: bool = args.all_namespaces
    namespace = None if all_ns else _namespace(ctx, args)
    model: type[Pipeline] | type[PipelineExecution]
    model = Pipeline if args.kind == "pipelines" else PipelineExecution
    plural = model.crd.plural
    items: Sequence[Pipeline | PipelineExecution]
    if args.name:
        if namespace is None:
            raise CliError("a NAME needs a namespace (-n), not -A", EXIT_USAGE)
        ns = namespace
        found = kube_call(ctx, f"{plural} in {ns}", lambda: kube.find(model, ns, args.name))
        if found is None:
            raise CliError(
                f'{model.kind_name().lower()} "{args.name}" not found in namespace "{ns}"', EXIT_NOT_FOUND
            )
        items = [found]
    else:
        items = kube_call(
            ctx, f"list {plural}", lambda: kube.list_resources(model, namespace, label_selector=args.selector)
        )
    out: str | None = args.output
    if out in ("json", "yaml"):
        dicts = [item.to_dict() for item in items]
        doc: dict[str, Any] = dicts[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": dicts}
        text = json.dumps(doc, indent=2) if out == "json" else yaml.safe_dump(doc, sort_keys=False)
        ctx.out.write(text.rstrip("\n") + "\n")
        return EXIT_OK
    if not items:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No {plural} found in {where}.", file=ctx.err)
        return EXIT_OK
    now = datetime.now(UTC)
    wide = out == "wide"
    if model is Pipeline:
        from worker.cli_triggers import next_cron_times

        pipelines = [i for i in items if isinstance(i, Pipeline)]
        text = render.pipelines_table(
            pipelines,
            wide=wide,
            all_namespaces=all_ns,
            now=now,
            next_cron=next_cron_times(ctx, pipelines) if wide else None,
        )
    else:
        text = render.executions_table(
            [i for i in items if isinstance(i, PipelineExecution)], wide=wide, all_namespaces=all_ns, now=now
        )
    print(text, file=ctx.out)
    return EXIT_OK


def cmd_describe(ctx: Ctx, args: argparse.Namespace) -> int:
    if args.kind != "executions":
        raise CliError("describe supports: execution", EXIT_USAGE)
    namespace = _namespace(ctx, args)
    pe = get_execution(ctx, namespace, args.name)
    print(render.describe_execution(pe, now=datetime.now(UTC), ui_url=ui_link(ctx, pe)), file=ctx.out)
    return EXIT_OK


# --- Temporal: signals, updates, the UI link ---------------------------------------------------------


def workflow_id_of(pe: PipelineExecution) -> str:
    if pe.status is not None and pe.status.workflow is not None and pe.status.workflow.id:
        return pe.status.workflow.id
    return execution_workflow_id(pe.metadata.namespace or "", pe.metadata.name or "", pe.metadata.uid or "")


def ui_link(ctx: Ctx, pe: PipelineExecution) -> str:
    ref = pe.status.workflow if pe.status is not None else None
    if ref is not None and ref.ui_url:
        return ref.ui_url
    namespace = (ref.namespace if ref else None) or ctx.settings.temporal_namespace
    return workflow_ui_url(
        ctx.settings.temporal_ui_url, namespace, workflow_id_of(pe), ref.run_id if ref else None
    )


def cmd_ui(ctx: Ctx, args: argparse.Namespace) -> int:
    pe = get_execution(ctx, _namespace(ctx, args), args.execution)
    link = ui_link(ctx, pe)
    if not link:
        raise CliError("TEMPORAL_UI_URL is not set: no Temporal UI to link to", EXIT_CONFIG)
    print(link, file=ctx.out)
    return EXIT_OK


def _rpc_error(err: RPCError, pe: PipelineExecution, wf_id: str, action: str) -> CliError:
    name = pe.metadata.name
    if err.status == RPCStatusCode.NOT_FOUND:
        if pe.is_finished:
            phase = pe.status.phase if pe.status else None
            return CliError(f"cannot {action} {name}: the run already ended ({phase})", EXIT_FAILED)
        if "completed" in err.message.lower():
            return CliError(f"cannot {action} {name}: its workflow {wf_id} already ended", EXIT_FAILED)
        return CliError(
            f"cannot {action} {name}: workflow {wf_id} not found (has the worker started it?)", EXIT_NOT_FOUND
        )
    if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return CliError(f"Temporal is unreachable: {err.message}", EXIT_TEMPORAL)
    return CliError(f"cannot {action} {name}: {err.message}", EXIT_FAILED)


async def _handle(ctx: Ctx, pe: PipelineExecution) -> tuple[WorkflowHandle[Any, Any], str]:
    client = await ctx.temporal()
    wf_id = workflow_id_of(pe)
    return client.get_workflow_handle(wf_id), wf_id


async def send_control(ctx: Ctx, pe: PipelineExecution, signal: Signal, reason: str) -> None:
    handle, wf_id = await _handle(ctx, pe)
    try:
        await handle.signal(signal, ControlInput(reason=reason, user=_user()))
    except RPCError as err:
        raise _rpc_error(err, pe, wf_id, str(signal)) from err


def cmd_control(ctx: Ctx, args: argparse.Namespace) -> int:
    namespace = _namespace(ctx, args)
    pe = get_execution(ctx, namespace, args.execution)
    signal = Signal(args.command)
    if pe.is_finished:
        phase = pe.status.phase if pe.status else None
        raise CliError(f"cannot {signal} {args.execution}: the run already ended ({phase})", EXIT_FAILED)
    asyncio.run(send_control(ctx, pe, signal, args.reason))
    effect = {
        Signal.PAUSE: "it holds before its next stage (the running stage finishes)",
        Signal.RESUME: "it continues with its next stage",
        Signal.CANCEL: "its build is being stopped; it ends Aborted",
    }[signal]
    print(f"pipelineexecution/{args.execution}: {signal} sent; {effect}", file=ctx.out)
    return EXIT_OK


async def send_decision(
    ctx: Ctx, pe: PipelineExecution, approve: bool, stage: int | None, reason: str
) -> int:
    handle, wf_id = await _handle(ctx, pe)
    verb = "approve" if approve else "reject"
    try:
        result: int = await handle.execute_update(
            Update.APPROVE if approve else Update.REJECT,
            GateDecisionInput(stage=stage, reason=reason, user=_user()),
            result_type=int,
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        detail = cause.message if isinstance(cause, ApplicationError) else _first_line(cause or err)
        raise CliError(f"cannot {verb} {pe.metadata.name}: {detail}", EXIT_FAILED) from err
    except RPCError as err:
        raise _rpc_error(err, pe, wf_id, verb) from err
    return result


def cmd_decision(ctx: Ctx, args: argparse.Namespace) -> int:
    namespace = _namespace(ctx, args)
    pe = get_execution(ctx, namespace, args.execution)
    approve = args.command == "approve"
    if pe.is_finished:
        phase = pe.status.phase if pe.status else None
        message = f"cannot {args.command} {args.execution}: the run already ended ({phase})"
        raise CliError(message, EXIT_FAILED)
    stage = asyncio.run(send_decision(ctx, pe, approve, args.stage, args.reason))
    stages = pe.status.stages if pe.status else []
    label = f"stage {stage}" + (f" ('{stages[stage].name}')" if 0 <= stage < len(stages) else "")
    done = "approved" if approve else "rejected"
    print(f"pipelineexecution/{args.execution}: {label} {done}", file=ctx.out)
    return EXIT_OK


# --- logs ----------------------------------------------------------------------------------------------


def _pick(value: str, names: list[str], what: str) -> int:
    if value.isdigit():
        index = int(value)
        if index < len(names):
            return index
        raise CliError(f"{what} {index} does not exist (there are {len(names)})", EXIT_NOT_FOUND)
    for candidates in (names, [n.lower() for n in names]):
        key = value if candidates is names else value.lower()
        if key in candidates:
            return candidates.index(key)
    known = ", ".join(names) or "none yet"
    raise CliError(f"{what} {value!r} does not exist (known: {known})", EXIT_NOT_FOUND)


def select_steps(pe: PipelineExecution, stage: str | None, step: str | None) -> list[tuple[int, int]]:
    """The (stage, step) indexes to print, in order; ``stage``/``step`` are indexes or names."""
    stages = pe.status.stages if pe.status else []
    if step is not None and stage is None:
        raise CliError("--step needs --stage", EXIT_USAGE)
    if stage is None:
        return [(i, j) for i, s in enumerate(stages) for j in range(len(s.steps))]
    i = _pick(stage, [s.name for s in stages], "stage")
    if step is None:
        return [(i, j) for j in range(len(stages[i].steps))]
    return [(i, _pick(step, [t.name for t in stages[i].steps], f"step of stage {i}"))]


def _step(pe: PipelineExecution, i: int, j: int) -> StepStatus | None:
    stages = pe.status.stages if pe.status else []
    if i < len(stages) and j < len(stages[i].steps):
        return stages[i].steps[j]
    return None


def expired_message(pe: PipelineExecution, setting: PipelineSetting | None, now: datetime) -> str | None:
    """Why the stored logs of ``pe`` are gone, when the log retention deleted them (else None).

    ``status.logsExpired`` is written by the retention sweep; a run that ended longer ago than the
    retention counts as expired too (its logs may have gone before the CR was marked).
    """
    st = pe.status
    days = setting.spec.object_store.log_retention_days if setting is not None else 0
    kept = f" (step logs are kept {days} days: spec.objectStore.logRetentionDays)" if days else ""
    if st is not None and st.logs_expired is not None:
        return f"the logs of {pe.name} have expired: deleted on {st.logs_expired:%Y-%m-%d %H:%M} UTC{kept}"
    if st is not None and st.ended is not None and days and now - st.ended > timedelta(days=days):
        return f"the logs of {pe.name} have expired: the run ended on {st.ended:%Y-%m-%d}{kept}"
    return None


@dataclass
class LogSources:
    """Jenkins (live) and the object store (finished steps) of one project, resolved lazily.

    Where: the project's PipelineSetting (External Jenkins URL and its credentials Secret; object store
    endpoint, bucket and credentials Secret), falling back to the settings' JENKINS_* and S3_*.
    """

    ctx: Ctx
    namespace: str
    _setting: PipelineSetting | None = None
    _setting_read: bool = False
    _engine: JenkinsEngine | None = None
    _store: LogStore | None = None

    def setting(self) -> PipelineSetting | None:
        if not self._setting_read:
            self._setting = find_setting(self.ctx, self.namespace)
            self._setting_read = True
        return self._setting

    def _secret(self, name: str, namespace: str | None) -> dict[str, str]:
        kube = self.ctx.kube()
        ns = namespace or self.namespace
        return kube_call(self.ctx, f"secret {ns}/{name}", lambda: kube.read_secret(ns, name))

    def engine(self) -> JenkinsEngine:
        if self._engine is None:
            s = self.ctx.settings
            url, user, token = s.jenkins_url, s.jenkins_user, s.jenkins_token.get_secret_value()
            setting = self.setting()
            if setting is not None:
                jenkins = setting.spec.jenkins
                configured = jenkins.url if jenkins.mode == JenkinsMode.EXTERNAL else None
                configured = configured or (setting.status.jenkins_url if setting.status else None)
                if configured:
                    url = configured
                    if jenkins.credentials_secret_ref is not None:
                        ref = jenkins.credentials_secret_ref
                        data = self._secret(ref.name, ref.namespace)
                        user, token = data.get("username", ""), data.get("token", "")
            if not url:
                raise CliError(
                    "no Jenkins to read live logs from: neither the PipelineSetting "
                    "nor JENKINS_URL names one",
                    EXIT_CONFIG,
                )
            self._engine = JenkinsEngine(url, user or None, token or None, timeout=15.0, read_attempts=2)
        return self._engine

    def store(self) -> LogStore:
        if self._store is None:
            s = self.ctx.settings
            cfg = StoreConfig(
                s.s3_endpoint,
                s.s3_access_key.get_secret_value(),
                s.s3_secret_key.get_secret_value(),
                s.s3_bucket,
                s.s3_secure,
                s.s3_region or None,
            )
            setting = self.setting()
            if setting is not None and setting.spec.object_store.endpoint:
                obj = setting.spec.object_store
                access, secret = cfg.access_key, cfg.secret_key
                if obj.credentials_secret_ref is not None:
                    data = self._secret(obj.credentials_secret_ref.name, obj.credentials_secret_ref.namespace)
                    access, secret = data.get("accessKey", ""), data.get("secretKey", "")
                cfg = StoreConfig(obj.endpoint or "", access, secret, obj.bucket, obj.secure)
            if not cfg.endpoint:
                raise CliError(
                    "no object store to read logs from: neither the PipelineSetting "
                    "nor S3_ENDPOINT names one",
                    EXIT_CONFIG,
                )
            self._store = LogStore(cfg)
        return self._store


@dataclass
class StepFollower:
    """Prints one step's log exactly once, in order: live from Jenkins while the step runs (through the
    engine's progressive reader and its cursor), from the object store when the step's log is stored.

    ``printed`` counts the bytes written, so switching from Jenkins to the stored object (Jenkins went
    away) continues at the same byte: no gap, no duplicate.
    """

    sources: LogSources
    stage: int
    step: int
    write: Callable[[str], None]
    printed: int = 0
    cursor: LogCursor | None = None
    node_id: str | None = None
    jenkins_gone: bool = False
    done: bool = False
    #: Ended without the whole log because Jenkins or the object store could not be read.
    incomplete: bool = False
    warned: set[str] = field(default_factory=set)

    def _emit(self, text: str) -> None:
        if text:
            self.write(text)
            self.printed += len(text.encode("utf-8"))

    def _warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            print(f"{PROG}: warning: {message}", file=self.sources.ctx.err, flush=True)

    def poll(self, pe: PipelineExecution, *, follow: bool) -> bool:
        """Advance once; True when this step's log is complete (or there is none to wait for)."""
        if self.done:
            return True
        step = _step(pe, self.stage, self.step)
        if step is None:
            self.done = pe.is_finished or not follow
            return self.done
        state = StageState(step.state)
        if state == StageState.SKIPPED or (state == StageState.WAITING and (pe.is_finished or not follow)):
            self.done = True
            return True
        if state == StageState.WAITING:
            return False
        if step.log_object and (self.cursor is None or self.jenkins_gone):
            # Stored (complete) and not being read from Jenkins: the object is the whole log.
            data = self._stored(step.log_object)
            if data is not None:
                self._emit(data[self.printed :].decode("utf-8", errors="replace"))
                self.done = True
                return True
        if not self.jenkins_gone and self._read_jenkins(pe, state, follow):
            self.done = True
            return True
        if self.jenkins_gone and pe.is_finished and step.log_object:
            expired = expired_message(pe, self.sources.setting(), datetime.now(UTC))
            if expired is not None:
                raise CliError(expired, EXIT_NOT_FOUND)
        if self.jenkins_gone and pe.is_finished and not step.log_object:
            self._warn("nolog", f"the log of step {self.stage}.{self.step} is neither in Jenkins nor stored")
            self.incomplete = True
            self.done = True
            return True
        if not follow:
            self.incomplete = bool(self.warned)
            self.done = True
        return self.done

    def _stored(self, name: str) -> bytes | None:
        try:
            return self.sources.store().get(name)
        except (StoreTransientError, StorePermanentError) as err:
            self._warn("store", err.message)
            return None

    def _read_jenkins(self, pe: PipelineExecution, state: StageState, follow: bool) -> bool:
        jenkins = pe.status.jenkins if pe.status else None
        if jenkins is None or jenkins.build is None:
            return False
        try:
            engine = self.sources.engine()
            if self.node_id is None:
                build = engine.describe(jenkins.job, jenkins.build)
                for stage in build.stages:
                    for s in stage.steps:
                        if s.stage_index == self.stage and s.step_index == self.step:
                            self.node_id = s.node_id
                if self.node_id is None:
                    if state.is_terminal and not build.building:
                        self.jenkins_gone = True
                    return False
            chunk = engine.read_step_log(jenkins.job, jenkins.build, self.node_id, self.cursor)
        except JenkinsPermanentError:
            # The job or build is gone (deleted when the run ended): the stored object has the log.
            self.jenkins_gone = True
            return False
        except DevopsError as err:  # transient: try again on the next poll
            self._warn("jenkins", f"Jenkins: {err.message} (retrying)")
            if not follow:
                self.jenkins_gone = True
            return False
        self._emit(chunk.text)
        self.cursor = chunk.cursor
        return not chunk.more


def cmd_logs(ctx: Ctx, args: argparse.Namespace) -> int:
    namespace = _namespace(ctx, args)
    follow: bool = args.follow
    pe = get_execution(ctx, namespace, args.execution)
    sources = LogSources(ctx, namespace)
    if pe.status is not None and pe.status.logs_expired is not None:
        raise CliError(expired_message(pe, sources.setting(), datetime.now(UTC)) or "", EXIT_NOT_FOUND)
    interval: float = args.interval
    view = render.ProgressView(ctx.err if not ctx.tty else ctx.out, tty=ctx.tty, color=ctx.color)
    liveness = WorkflowLiveness(ctx)

    # While following, the run may not have its stages yet (still loading the config): wait for them.
    while follow and not (pe.status and pe.status.stages) and not pe.is_finished:
        view.update(pe)
        time.sleep(interval)
        pe = get_execution(ctx, namespace, args.execution)
    selected = select_steps(pe, args.stage, args.step)
    headers = len(selected) > 1
    pending_text: list[str] = []

    def write(text: str) -> None:
        if not ctx.tty:
            ctx.out.write(text)
            ctx.out.flush()
            return
        # On a terminal the progress table sits below the log: print whole lines above it.
        pending_text.append(text)
        joined = "".join(pending_text)
        cut = joined.rfind("\n") + 1
        if cut:
            view.clear()
            ctx.out.write(joined[:cut])
            pending_text[:] = [joined[cut:]] if joined[cut:] else []
            view.redraw()
            ctx.out.flush()

    incomplete = False
    for i, j in selected:
        follower = StepFollower(sources, i, j, write)
        header_done = False
        while True:
            step = _step(pe, i, j)
            if headers and not header_done and step is not None and step.state != StageState.WAITING:
                stage_name = pe.status.stages[i].name if pe.status else ""
                write(f"==> stage {i} '{stage_name}' / step {j} '{step.name}' <==\n")
                header_done = True
            if follow:
                view.update(pe)
            if follower.poll(pe, follow=follow):
                break
            liveness.check(pe)
            time.sleep(interval)
            pe = get_execution(ctx, namespace, args.execution)
        if pending_text:
            rest = "".join(pending_text)
            pending_text.clear()
            view.clear()
            ctx.out.write(rest if rest.endswith("\n") else rest + "\n")
            view.redraw()
        if headers and header_done:
            write("\n")
        incomplete = incomplete or follower.incomplete
    if follow:
        view.update(pe)
    if incomplete:
        raise CliError(
            "some logs could not be read (Jenkins or the object store is unreachable)", EXIT_BACKEND
        )
    return EXIT_OK


# --- entry point -----------------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[Ctx, argparse.Namespace], int]] = {
    "run": cmd_run,
    "get": cmd_get,
    "describe": cmd_describe,
    "logs": cmd_logs,
    "pause": cmd_control,
    "resume": cmd_control,
    "cancel": cmd_control,
    "approve": cmd_decision,
    "reject": cmd_decision,
    "ui": cmd_ui,
    "webhook": lambda ctx, args: _cmd_webhook(ctx, args),
}


def _cmd_webhook(ctx: Ctx, args: argparse.Namespace) -> int:
    from worker.cli_triggers import cmd_webhook

    return cmd_webhook(ctx, args)


def main(argv: Sequence[str] | None = None, *, settings: WorkerSettings | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        ctx = Ctx(settings or load_settings())
        return COMMANDS[args.command](ctx, args)
    except CliError as err:
        print(f"{PROG}: error: {err.message}", file=sys.stderr, flush=True)
        return err.code
    except KeyboardInterrupt:
        print(
            f"\n{PROG}: interrupted" + ("; the run keeps running" if args.command == "run" else ""),
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `devopsctl logs ... | head`: the reader went away; not an error.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
