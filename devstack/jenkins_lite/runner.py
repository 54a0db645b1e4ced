"""The queue scheduler and the build runner: run a cubepaas-plan's stages and steps as /bin/sh processes."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from devstack.jenkins_lite.agents import (
    Agent,
    ContainerCap,
    KubernetesCloud,
    ProvisionFailed,
    ProvisionInterrupted,
)
from devstack.jenkins_lite.groovy_args import GroovyError, find_call
from devstack.jenkins_lite.model import Build, FlowNode, Job, QueueItem, State, now_ms
from devstack.jenkins_lite.plan import ConfigError, extract_plan
from devstack.jenkins_lite.podtemplate import pod_label

USERNAME_PASSWORD = "com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl"
STRING_CREDENTIALS = "org.jenkinsci.plugins.plaincredentials.impl.StringCredentialsImpl"
INTERRUPTED = "org.jenkinsci.plugins.workflow.steps.FlowInterruptedException"


@functools.lru_cache(maxsize=256)  # the scheduler asks every 50 ms for each item waiting for an executor
@functools.lru_cache(maxsize=512)
def has_pod_template(script: str) -> bool:
    # Cached: the scheduler asks for every queued item on every pass, and a job's script rarely changes.
    try:
        return find_call(script, "podTemplate") is not None
    except GroovyError:
        # Unreadable arguments: still a podTemplate build (with a cloud it fails when its pod is built).
        return "podTemplate" in script


def needs_executor(script: str) -> bool:
    """Whether a build takes one of the controller's ``--executors``.

    A Pipeline build itself runs on a flyweight (one-off) executor, which numExecutors does not limit; its
    ``node`` block takes a real executor. jenkins-lite runs a script without a podTemplate as one ``node``
    block on the controller; with a podTemplate the block runs on the build's agent pod, which the cloud's
    containerCap limits instead (:class:`ContainerCap`).
    """
    return not has_pod_template(script)


def pod_template_label(script: str, job: str, number: int) -> str | None:
    """The POD_LABEL of the script's ``podTemplate`` (its ``label:`` or the plugin's generated one); None when
    the script has no podTemplate."""
    if not has_pod_template(script):
        return None
    with contextlib.suppress(GroovyError):
        template = find_call(script, "podTemplate")
        label = template.kwargs.get("label") if template is not None else None
        if isinstance(label, str) and label:
            return label
    return pod_label(job, number)


def capitalize(s: str) -> str:
    """InputStep normalises its id: first letter upper-case (pipeline-input-step InputStep.setId)."""
    return s[:1].upper() + s[1:]


class Console:
    """Appends to a build's console log; thread-safe."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by close()

    def write(self, data: bytes) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.write(data)

    def line(self, text: str) -> None:
        self.write(text.encode("utf-8") + b"\n")

    def close(self) -> None:
        with self._lock:
            self._f.close()


class Scheduler(threading.Thread):
    """Moves queue items from the quiet period to an executor, like hudson.model.Queue.maintain()."""

    def __init__(self, state: State, root_url: str) -> None:
        super().__init__(name="jenkins-lite-scheduler", daemon=True)
        self.state = state
        self.root_url = root_url
        self.stopping = False
        self.runners: list[BuildRunner] = []
        self.cloud: KubernetesCloud | None = None
        self.cap = ContainerCap()

    def run(self) -> None:
        s = self.state
        with s.lock:
            while not self.stopping:
                self.maintain()
                s.changed.wait(0.05)

    def maintain(self) -> None:
        s = self.state
        s.expire_left_items()
        t = now_ms()
        running = sum(1 for r in self.runners if r.holds_executor and r.build.building and not r.build.paused)
        changed = False
        for item in sorted(s.queue.values(), key=lambda i: i.id):
            if item.state == "left":
                continue
            job = s.jobs.get(item.job)
            if job is None:
                continue
            if item.state == "waiting":
                if t < item.quiet_until:
                    item.why = quiet_period_why(item.quiet_until - t)
                    continue
                item.state, item.buildable_since, changed = "buildable", t, True
            cfg = job.config
            busy = [b for b in job.builds.values() if b.building]
            if cfg is not None and not cfg.concurrent and busy:
                item.state, item.why = (
                    "blocked",
                    f"Build #{max(b.number for b in busy)} is already in progress",
                )
                continue
            if item.state == "blocked":
                item.state = "buildable"
            holds_executor = needs_executor(cfg.script if cfg is not None else "")
            if holds_executor and running >= s.executors:
                item.why = "Waiting for next available executor"
                continue
            self.start_build(job, item, holds_executor)
            running += holds_executor
            changed = True
        if changed:
            s.save_queue()

    def start_build(self, job: Job, item: QueueItem, holds_executor: bool = True) -> Build:
        s = self.state
        number = job.next_build_number
        job.next_build_number += 1
        s.save_job(job)
        b = Build(job.name, number, item.id, item.params, item.user, item.in_queue_since, now_ms())
        b.dir = s.job_dir(job.name) / "builds" / str(number)
        (b.dir / "nodes").mkdir(parents=True, exist_ok=True)
        job.builds[number] = b
        s.save_build(b)
        item.state, item.why, item.build_number, item.left_ms = "left", None, number, now_ms()
        runner = BuildRunner(s, job, b, self.root_url, self.cloud, self.cap, holds_executor)
        self.runners = [r for r in self.runners if r.is_alive()]
        self.runners.append(runner)
        runner.start()
        return b


def quiet_period_why(left_ms: int) -> str:
    """hudson.model.Queue.WaitingItem's getWhy()."""
    return f"In the quiet period. Expires in {_time_span(max(left_ms, 0))}"


def _time_span(ms: int) -> str:
    """hudson.Util.getTimeSpanString (rough)."""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 10_000:
        return f"{ms / 1000:.1f} sec"
    if ms < 60_000:
        return f"{ms // 1000} sec"
    return f"{ms // 60_000} min {(ms % 60_000) // 1000} sec"


class StepOutcome:
    def __init__(self, status: str, error: dict[str, str | None] | None = None) -> None:
        self.status = status
        self.error = error


class BuildRunner(threading.Thread):
    def __init__(
        self,
        state: State,
        job: Job,
        build: Build,
        root_url: str,
        cloud: KubernetesCloud | None = None,
        cap: ContainerCap | None = None,
        holds_executor: bool = True,
    ) -> None:
        super().__init__(name=f"build {job.name}#{build.number}", daemon=True)
        self.cloud = cloud
        self.cap = cap if cap is not None else ContainerCap()
        self.holds_executor = holds_executor
        self.holds_slot = False
        self.agent: Agent | None = None
        self.state = state
        self.job = job
        self.build = build
        self.root_url = root_url
        self.console = Console(build.console_path)
        self.timeout_hit: str | None = None
        self.build_deadline: float | None = None

    # ---- helpers -----------------------------------------------------------------------------------
    def save(self) -> None:
        with self.state.lock:
            self.state.save_build(self.build)
            self.state.changed.notify_all()

    def end_node(self, node: FlowNode, status: str, error: dict[str, str | None] | None = None) -> None:
        with self.state.lock:
            node.status, node.end_ms = status, now_ms()
            if error is not None:
                node.error = error
            self.state.save_build(self.build)

    def check_timeouts(self, *deadlines: tuple[float | None, str]) -> str | None:
        t = time.monotonic()
        for deadline, what in ((self.build_deadline, "build"), *deadlines):
            if deadline is not None and t >= deadline:
                return what
        return None

    # ---- the build ---------------------------------------------------------------------------------
    def run(self) -> None:
        b = self.build
        c = self.console
        try:
            c.line(f"Started by user {b.user}")
            job_cfg = self.job.config
            try:
                plan = extract_plan(job_cfg.script if job_cfg is not None else "")
            except ConfigError as e:
                c.line(str(e))
                self.finish("FAILURE")
                return
            if isinstance(plan.get("timeoutSeconds"), int | float):
                self.build_deadline = time.monotonic() + float(plan["timeoutSeconds"])
            c.line("[Pipeline] Start of Pipeline")
            workspace = self.state.home / "workspace" / f"{b.job}@{b.number}"
            workspace.mkdir(parents=True, exist_ok=True)
            not_provisioned = self.provision_agent(job_cfg.script if job_cfg is not None else "", workspace)
            if not_provisioned is not None:
                self.finish(not_provisioned)
                return
            result = "SUCCESS"
            for stage in plan["stages"]:
                outcome = self.run_stage(plan, stage, workspace)
                if outcome == "ABORTED":
                    result = "ABORTED"
                    break
                if outcome == "FAILED":
                    result = "FAILURE"
                    break
            c.line("[Pipeline] End of Pipeline")
            if self.timeout_hit:
                c.line("Timeout has been exceeded")
            if b.control.aborted_by and result == "ABORTED":
                c.line(f"Aborted by {b.control.aborted_by}")
            self.finish(result)
        except Exception as e:  # keep the build from staying IN_PROGRESS
            c.line(f"ERROR: jenkins-lite internal error: {e!r}")
            self.finish("FAILURE")

    def provision_agent(self, script: str, workspace: Path) -> str | None:
        """Wait for the cloud's capacity, start the podTemplate's agent pod and wait for it (kubernetes
        plugin); the build's result when the build cannot go on, None when it can (also when there is no
        podTemplate). Without a cloud the steps run without a pod, but the build still takes a slot of the
        cap, so that capacity waits look the same with and without a cluster."""
        b, c = self.build, self.console

        def created(namespace: str, name: str) -> None:
            with self.state.lock:
                b.agent_pod = {"namespace": namespace, "name": name}
                self.state.save_build(b)

        def should_stop() -> bool:
            hit = self.check_timeouts()
            if hit:
                self.timeout_hit = hit
            return b.control.interrupted or hit is not None

        def take_slot(label: str) -> bool:
            announced = self.cap.take(label, c.line, should_stop)
            self.holds_slot = True
            return announced

        try:
            if self.cloud is None:
                label = pod_template_label(script, b.job, b.number)
                if label is not None:
                    take_slot(label)
                return None
            self.agent = self.cloud.provision(
                script, b.job, b.number, self.root_url, workspace.with_name(workspace.name + "@tmp"),
                c.line, created, should_stop, take_slot,
            )  # fmt: skip
        except ProvisionFailed as e:
            c.line(str(e))
            return "FAILURE"
        except ProvisionInterrupted:
            if self.timeout_hit:
                c.line("Timeout has been exceeded")
            if b.control.aborted_by:
                c.line(f"Aborted by {b.control.aborted_by}")
            return "ABORTED"
        if self.agent is not None:
            c.line(f"Running on {self.agent.name} in {workspace}")
        return None

    def finish(self, result: str) -> None:
        b = self.build
        if self.agent is not None:
            self.agent.release()  # the plugin deletes the pod when the build leaves its node block
            self.agent = None
        if self.holds_slot:
            self.cap.give_back()
            self.holds_slot = False
        if b.control.kill:
            self.console.line("Hard kill!")
            result = "ABORTED"
        self.console.line(f"Finished: {result}")
        self.console.close()
        with self.state.lock:
            for n in b.nodes:
                if n.end_ms is None:
                    n.status, n.end_ms = ("ABORTED" if result == "ABORTED" else "FAILED"), now_ms()
                n.log_done = True
            b.pending_input = None
            b.result, b.end_ms, b.building, b.pgids = result, now_ms(), False, []
            self.state.save_build(b)
            self.state.changed.notify_all()

    def run_stage(self, plan: dict[str, Any], stage: dict[str, Any], workspace: Path) -> str:
        b, c = self.build, self.console
        name = str(stage.get("name", ""))
        if b.control.interrupted or self.check_timeouts():
            return "ABORTED"
        c.line("[Pipeline] stage")
        c.line(f"[Pipeline] {{ ({name})")
        with self.state.lock:
            node = b.new_node(name, "stage")
            self.state.save_build(b)
        if stage.get("skip"):
            c.line(f'Stage "{name}" skipped due to when conditional')
            self.end_node(node, "NOT_EXECUTED")
            c.line("[Pipeline] }")
            c.line("[Pipeline] // stage")
            return "SUCCESS"
        gate = stage.get("gate")
        if gate and not self.wait_gate(node, capitalize(str(gate)), name):
            self.end_node(node, "ABORTED", {"message": None, "type": INTERRUPTED})
            return "ABORTED"
        stage_deadline = None
        if isinstance(stage.get("timeoutSeconds"), int | float):
            stage_deadline = time.monotonic() + float(stage["timeoutSeconds"])
        steps = stage.get("steps", [])
        outcomes: list[StepOutcome] = []
        threads: list[threading.Thread] = []
        if steps:
            c.line("[Pipeline] parallel")
        for step in steps:
            sname = str(step.get("node") or f"step-{stage.get('index', 0)}-{step.get('index', 0)}")
            with self.state.lock:
                snode = b.new_node(sname, "stage")
                atom = b.new_node("Shell Script", "atom", snode.id, param_desc=str(step.get("script", "")))
                atom.has_log = True
                self.state.save_build(b)
            out = StepOutcome("IN_PROGRESS")
            outcomes.append(out)
            t = threading.Thread(
                target=self.run_step,
                args=(plan, step, snode, atom, workspace, stage_deadline, out),
                name=f"{self.name} {sname}",
                daemon=True,
            )
            threads.append(t)
            t.start()
        for t in threads:
            t.join()
        if steps:
            c.line("[Pipeline] // parallel")
        # A step still IN_PROGRESS after its thread ended died without a word: a failure, never a success.
        statuses = {"FAILED" if o.status == "IN_PROGRESS" else o.status for o in outcomes}
        err: dict[str, str | None] | None
        if "ABORTED" in statuses or b.control.interrupted:
            status, err = "ABORTED", {"message": None, "type": INTERRUPTED}
        elif "FAILED" in statuses:
            failed = next(o for o in outcomes if o.status in ("FAILED", "IN_PROGRESS"))
            status, err = "FAILED", failed.error
        else:
            status, err = "SUCCESS", None
        self.end_node(node, status, err)
        c.line("[Pipeline] }")
        c.line("[Pipeline] // stage")
        return status

    def wait_gate(self, stage_node: FlowNode, input_id: str, stage_name: str) -> bool:
        b, c = self.build, self.console
        message = f"Proceed with stage \u2018{stage_name}\u2019?"
        with self.state.lock:
            atom = b.new_node("Wait for interactive input", "atom", stage_node.id, param_desc=message)
            atom.status = stage_node.status = "PAUSED_PENDING_INPUT"
            b.pending_input = {"id": input_id, "message": message, "proceedText": "Proceed", "node": atom.id}
            b.control.input_decision = None
            self.state.save_build(b)
            self.state.changed.notify_all()
        c.line("[Pipeline] input")
        c.line(message)
        c.line("Proceed or Abort")
        paused_at = now_ms()
        decision: tuple[str, str, str] | None = None
        while True:
            ctl = b.control
            if ctl.input_decision is not None and ctl.input_decision[0] == input_id:
                decision = ctl.input_decision
                break
            if ctl.interrupted:
                break
            hit = self.check_timeouts()
            if hit:
                self.timeout_hit = hit
                break
            ctl.wake.wait(0.05)
            ctl.wake.clear()
        pause = now_ms() - paused_at
        with self.state.lock:
            b.pending_input = None
            stage_node.pause_ms += pause
            atom.pause_ms += pause
            stage_node.status = "IN_PROGRESS"
            self.state.changed.notify_all()
        if decision is not None and decision[1] == "proceed":
            c.line(f"Approved by {decision[2]}")
            self.end_node(atom, "SUCCESS")
            return True
        if decision is not None:
            c.line(f"Rejected by {decision[2]}")
        self.end_node(atom, "ABORTED", {"message": None, "type": INTERRUPTED})
        return False

    def step_env(self, plan: dict[str, Any], step: dict[str, Any], workspace: Path) -> dict[str, str]:
        b = self.build
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(self.state.home)),
            "BUILD_NUMBER": str(b.number),
            "BUILD_ID": str(b.number),
            "BUILD_TAG": f"jenkins-{b.job}-{b.number}",
            "JOB_NAME": b.job,
            "JOB_BASE_NAME": b.job,
            "WORKSPACE": str(workspace),
            "JENKINS_URL": self.root_url,
            "BUILD_URL": f"{self.root_url}job/{b.job}/{b.number}/",
            "JOB_URL": f"{self.root_url}job/{b.job}/",
            **(self.agent.step_env() if self.agent is not None else {}),
        }
        for p in b.params:
            env[str(p["name"])] = str(p["value"]).lower() if isinstance(p["value"], bool) else str(p["value"])
        for source in (plan.get("env"), step.get("env")):
            if isinstance(source, dict):
                env.update({str(k): str(v) for k, v in source.items()})
        return env

    def bind_credentials(self, step: dict[str, Any], env: dict[str, str]) -> list[str]:
        """withCredentials: returns the secrets to mask; raises LookupError with Jenkins' message."""
        secrets: list[str] = []
        with self.state.lock:
            store = dict(self.state.credentials)
        for binding in step.get("credentials") or []:
            cid = str(binding.get("id"))
            cred = store.get(cid)
            if cred is None:
                raise LookupError(f"Could not find credentials entry with ID \u2018{cid}\u2019")
            kind = binding.get("kind")
            if kind == "usernamePassword":
                if cred["$class"] != USERNAME_PASSWORD:
                    raise LookupError(
                        f"Credentials \u2018{cid}\u2019 is of type \u2018{_type_name(cred)}\u2019 where "
                        "\u2018com.cloudbees.plugins.credentials.common."
                        "StandardUsernamePasswordCredentials\u2019 was expected"
                    )
                env[str(binding.get("usernameVariable", "USERNAME"))] = str(cred.get("username", ""))
                env[str(binding.get("passwordVariable", "PASSWORD"))] = str(cred.get("password", ""))
                secrets.append(str(cred.get("password", "")))
            else:
                if cred["$class"] != STRING_CREDENTIALS:
                    raise LookupError(
                        f"Credentials \u2018{cid}\u2019 is of type \u2018{_type_name(cred)}\u2019 where "
                        "\u2018org.jenkinsci.plugins.plaincredentials.StringCredentials\u2019 was expected"
                    )
                env[str(binding.get("variable", "SECRET"))] = str(cred.get("secret", ""))
                secrets.append(str(cred.get("secret", "")))
        return [s for s in secrets if s]

    def run_step(
        self,
        plan: dict[str, Any],
        step: dict[str, Any],
        snode: FlowNode,
        atom: FlowNode,
        workspace: Path,
        stage_deadline: float | None,
        out: StepOutcome,
    ) -> None:
        """One step in its thread. A step that throws fails, as in Jenkins: the exception goes to the
        step's log and the console, its nodes end FAILED with the exception as error, and so does the
        build (a thread that died silently would leave the step IN_PROGRESS and the build SUCCESS)."""
        try:
            self._run_step(plan, step, snode, atom, workspace, stage_deadline, out)
        except Exception as e:
            err: dict[str, str | None] = {"message": str(e), "type": f"jenkins_lite.{type(e).__name__}"}
            line = f"ERROR: {type(e).__name__}: {e}\n".encode(errors="replace")
            with contextlib.suppress(OSError):
                path = self.build.node_log_path(atom.id)
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "ab") as log:
                    log.write(line)
            self.console.write(line)
            with self.state.lock:
                atom.log_done = True
            self.end_node(atom, "FAILED", err)
            self.end_node(snode, "FAILED", err)
            out.status, out.error = "FAILED", err

    def _run_step(
        self,
        plan: dict[str, Any],
        step: dict[str, Any],
        snode: FlowNode,
        atom: FlowNode,
        workspace: Path,
        stage_deadline: float | None,
        out: StepOutcome,
    ) -> None:
        b, c = self.build, self.console
        c.line("[Pipeline] stage")
        c.line(f"[Pipeline] {{ ({snode.name})")
        c.line("[Pipeline] sh")
        env = self.step_env(plan, step, workspace)
        log_path = b.node_log_path(atom.id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed below
        try:
            try:
                secrets = self.bind_credentials(step, env)
            except LookupError as e:
                msg = f"ERROR: {e}\n".encode()
                log.write(msg)
                c.write(msg)
                err: dict[str, str | None] = {
                    "message": str(e),
                    "type": "org.jenkinsci.plugins.credentialsbinding.impl.CredentialNotFoundException",
                }
                self.end_node(atom, "FAILED", err)
                self.end_node(snode, "FAILED", err)
                out.status, out.error = "FAILED", err
                return
            step_deadline = None
            if isinstance(step.get("timeoutSeconds"), int | float):
                step_deadline = time.monotonic() + float(step["timeoutSeconds"])
            status, error = self.exec_script(
                str(step.get("script", "")), env, workspace, log, secrets, step_deadline, stage_deadline,
                container=str(step.get("node") or ""),
            )  # fmt: skip
        finally:
            log.close()
        with self.state.lock:
            atom.log_done = True
        self.end_node(atom, status, error)
        self.end_node(snode, status, error)
        out.status, out.error = status, error
        c.line("[Pipeline] }")
        c.line("[Pipeline] // stage")

    def exec_script(
        self,
        script: str,
        env: dict[str, str],
        workspace: Path,
        log: Any,
        secrets: list[str],
        step_deadline: float | None,
        stage_deadline: float | None,
        container: str = "",
    ) -> tuple[str, dict[str, str | None] | None]:
        b, c = self.build, self.console
        argv = ["/bin/sh", "-c", script]
        proc = subprocess.Popen(
            self.agent.command(container, argv) if self.agent is not None else argv,
            cwd=workspace,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pgid = proc.pid
        with self.state.lock:
            b.pgids.append(pgid)
            self.state.save_build(b)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        reader = threading.Thread(target=_pump, args=(fd, log, c, secrets), daemon=True)
        reader.start()
        signals_seen = 0
        timed_out: str | None = None
        grace_until: float | None = None
        killed = False
        while proc.poll() is None:
            ctl = b.control
            if ctl.kill and not killed:
                _killpg(pgid, signal.SIGKILL)
                killed = True
            if ctl.signals > signals_seen:
                signals_seen = ctl.signals
                _killpg(pgid, signal.SIGTERM)
            if timed_out is None:
                hit = self.check_timeouts((step_deadline, "step"), (stage_deadline, "stage"))
                if hit:
                    timed_out = hit
                    self.timeout_hit = self.timeout_hit or hit
                    c.line(f"Cancelling nested steps due to timeout ({hit})")
                    _killpg(pgid, signal.SIGTERM)
                    grace_until = time.monotonic() + self.state.kill_grace
            elif grace_until is not None and time.monotonic() >= grace_until and not killed:
                _killpg(pgid, signal.SIGKILL)
                killed = True
            ctl.wake.wait(0.05)
            ctl.wake.clear()
        rc = proc.returncode
        # Like Jenkins' ProcessTreeKiller: nothing the step started outlives it.
        _killpg(pgid, signal.SIGKILL)
        reader.join(10)
        proc.stdout.close()
        with self.state.lock:
            if pgid in b.pgids:
                b.pgids.remove(pgid)
        if timed_out or b.control.interrupted:
            return "ABORTED", {"message": None, "type": INTERRUPTED}
        if rc != 0:
            msg = f"script returned exit code {rc if rc >= 0 else 128 - rc}"
            c.line(f"ERROR: {msg}")
            return "FAILED", {"message": msg, "type": "hudson.AbortException"}
        return "SUCCESS", None


def _type_name(cred: dict[str, Any]) -> str:
    return "Username with password" if cred.get("$class") == USERNAME_PASSWORD else "Secret text"


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _pump(fd: int, log: Any, console: Console, secrets: list[str]) -> None:
    """Copy a step's output to its node log and the console; mask bound secrets line by line."""
    pending = b""
    masks = sorted({s.encode() for s in secrets}, key=len, reverse=True)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        if masks:
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if cut == 0:
                continue
            chunk, pending = _mask(pending[:cut], masks), pending[cut:]
        log.write(chunk)
        console.write(chunk)
    if pending:
        tail = _mask(pending, masks)
        log.write(tail)
        console.write(tail)


def _mask(data: bytes, masks: list[bytes]) -> bytes:
    for m in masks:
        data = data.replace(m, b"****")
    return data
