"""Agent pods, the way the kubernetes plugin runs a ``podTemplate`` build.

For a build whose script has a ``podTemplate``, :meth:`KubernetesCloud.provision` creates the pod that
template describes (:mod:`devstack.jenkins_lite.podtemplate`) in the template's namespace, waits until the
scheduler has placed it and the node reports it Running, and returns an :class:`Agent`; the build's steps
start only then. :meth:`Agent.release` deletes the pod when the build ends (the plugin's default pod
retention, ``never``). :class:`ContainerCap` is the cloud's ``containerCap``: a build waits for a slot before
its pod is created.

Credentials, like a Jenkins installed in the pod template's namespace: the cloud acts as that namespace's
``jenkins`` service account (the account a managed Jenkins runs as, bound to the agents role there), so RBAC
decides whether it may create the pod. jenkins-lite's own kubeconfig is used only to request service-account
tokens (TokenRequest), which is what a kubelet does for the token it mounts into a pod: the steps get a
kubeconfig made from a token of the pod's service account, bound to the pod.

The steps still run on this host; each one in its own mount namespace (:mod:`devstack.jenkins_lite.mountns`)
where the pod's ``hostPath`` volumes are bind-mounted from ``<nodes dir>/<node>/<hostPath>``: a cache is
shared by the builds that ran on the same node, and absent on another.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devstack.jenkins_lite import mountns
from devstack.jenkins_lite.kubeclient import KubeClient, KubeError
from devstack.jenkins_lite.podtemplate import AgentPodSpec, PodTemplateError, agent_pod

CLOUD_NAME = "kubernetes"
POLL_SECONDS = 0.25
#: How long one watch of a pending agent pod lasts: an abort is seen within it. Each watch is a request
#: to the apiserver, and in a burst pods wait for the scheduler for seconds: not one per second.
WATCH_SECONDS = 5
TOKEN_SECONDS = 3600


class ProvisionFailed(Exception):
    """The agent cannot be provisioned: the build fails with this console message."""


class ProvisionInterrupted(Exception):
    """The build was aborted or timed out while it waited for its agent."""


@dataclass
class PodWait:
    """What a pending pod shows: its phase and, when unscheduled, the PodScheduled condition."""

    phase: str
    reason: str = ""
    message: str = ""

    def line(self) -> str:
        """The plugin's status line: ``Pod [Pending][Unschedulable] 0/3 nodes are available: ...``."""
        return f"Pod [{self.phase}][{self.reason}] {self.message}".rstrip()


def pod_wait(pod: dict[str, Any]) -> PodWait:
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") != "True":
            return PodWait(phase, str(cond.get("reason") or ""), str(cond.get("message") or ""))
    return PodWait(phase)


class ContainerCap:
    """The Kubernetes cloud's ``containerCap``: how many of its agents may exist at once; ``None`` (or 0) is
    unlimited, as the plugin's ``KubernetesCloud.getContainerCap()`` (``Integer.MAX_VALUE`` when unset).

    A slot is taken before the agent's pod is created and given back once the agent is gone, the way
    ``KubernetesProvisioningLimits`` registers a planned node and unregisters it when the node is deleted.
    Waiting builds get slots in the order they asked (Jenkins' queue hands buildable items out oldest first).
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit if limit is not None and limit > 0 else None
        self.in_use = 0
        self._changed = threading.Condition(threading.Lock())
        self._waiting: list[object] = []

    def take(self, label: str, log: Callable[[str], None], should_stop: Callable[[], bool]) -> bool:
        """Wait for a slot, polling ``should_stop()`` (abort, timeouts: raises :class:`ProvisionInterrupted`).

        While the cap is reached the build waits as the plugin's ``node(POD_LABEL)`` step does: its
        placeholder task stays in the queue and the label has no agent yet, so the console shows the step's
        "Still waiting to schedule task" and core's ``Queue.LabelHasNoNodes`` cause. Returns whether those
        lines were written.
        """
        ticket = object()
        announced = False
        with self._changed:
            self._waiting.append(ticket)
            try:
                while self._waiting[0] is not ticket or self._full():
                    if should_stop():
                        raise ProvisionInterrupted
                    if not announced:
                        log("Still waiting to schedule task")
                        log(f"There are no nodes with the label \u2018{label}\u2019")
                        announced = True
                    self._changed.wait(POLL_SECONDS)
                self.in_use += 1
            finally:
                self._waiting.remove(ticket)
                self._changed.notify_all()
        return announced

    def _full(self) -> bool:
        return self.limit is not None and self.in_use >= self.limit

    def give_back(self) -> None:
        with self._changed:
            self.in_use = max(0, self.in_use - 1)
            self._changed.notify_all()


def node_path(nodes_dir: Path, node: str, host_path: str) -> Path:
    """Where ``host_path`` of ``node`` lives on this host."""
    return nodes_dir / node / host_path.lstrip("/")


class Agent:
    """A provisioned agent pod: how its steps run, and its deletion."""

    def __init__(
        self,
        cloud: KubernetesCloud,
        spec: AgentPodSpec,
        node: str,
        kubeconfig: Path,
    ) -> None:
        self.cloud = cloud
        self.spec = spec
        self.node = node
        self.kubeconfig = kubeconfig

    @property
    def name(self) -> str:
        return self.spec.name

    def step_env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig), "NODE_NAME": self.name}

    def command(self, container: str, argv: list[str]) -> list[str]:
        """``argv`` inside a mount namespace with the container's hostPath volumes of this node; as it is
        for a container without any (a namespace would change nothing, and its launcher, a Python
        interpreter, cost a step more CPU than most steps' own work)."""
        mounts = self.spec.host_mounts.get(container, [])
        if not mounts:
            return argv
        launcher = [sys.executable, "-E", "-S", mountns.__file__]
        for m in mounts:
            source = node_path(self.cloud.nodes_dir, self.node, m.host_path)
            launcher += ["--ro-bind" if m.read_only else "--bind", str(source), m.mount_path]
        return [*launcher, "--", *argv]

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.kubeconfig.unlink()
        self.cloud.delete_pod(self.spec.namespace, self.name)


class KubernetesCloud:
    """The Kubernetes cloud of jenkins-lite (one cluster; each namespace's ``jenkins`` account)."""

    def __init__(self, client: KubeClient, nodes_dir: Path, controller_account: str = "jenkins") -> None:
        self.client = client
        self.nodes_dir = nodes_dir
        self.controller_account = controller_account
        self._controllers: dict[str, tuple[float, KubeClient]] = {}
        self._tokens_lock = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path, nodes_dir: Path) -> KubernetesCloud:
        return cls(KubeClient.from_kubeconfig(kubeconfig), nodes_dir)

    def _as_controller(self, namespace: str) -> KubeClient:
        """The namespace's Jenkins, with its service account's token: a Jenkins pod has one mounted, which
        the kubelet renews, so one token serves every pod it creates and deletes until it nears its end."""
        now = time.monotonic()
        with self._tokens_lock:
            cached = self._controllers.get(namespace)
            if cached is not None and cached[0] > now:
                return cached[1]
        token = self.client.service_account_token(namespace, self.controller_account, TOKEN_SECONDS)
        controller = self.client.as_token(token)
        with self._tokens_lock:
            self._controllers[namespace] = (now + TOKEN_SECONDS * 0.8, controller)
        return controller

    def provision(
        self,
        script: str,
        job: str,
        number: int,
        root_url: str,
        tmp_dir: Path,
        log: Callable[[str], None],
        on_created: Callable[[str, str], None],
        should_stop: Callable[[], bool],
        take_slot: Callable[[str], bool] = lambda label: False,
    ) -> Agent | None:
        """The build's agent, Running; None when the script has no podTemplate.

        ``take_slot(label)`` is called before the pod is created (the build waits there for the cloud's
        capacity; it returns whether it wrote the "Still waiting" lines); ``on_created(namespace, name)`` once
        the pod exists (the build records it, so that a restart can delete it); ``should_stop()`` is polled
        while waiting (abort, timeouts).
        """
        try:
            spec = agent_pod(script, job, number, root_url)
        except PodTemplateError as e:
            raise ProvisionFailed(f"ERROR: {e}") from e
        if spec is None:
            return None
        ns, name = spec.namespace, spec.name
        announced = take_slot(spec.label)
        try:
            kube = self._as_controller(ns)
            created = kube.request("POST", f"/api/v1/namespaces/{ns}/pods", spec.pod)
        except KubeError as e:
            msg = f"ERROR: Unable to create pod {CLOUD_NAME} {ns}/{name}.\n{e.message}"
            raise ProvisionFailed(msg) from e
        on_created(ns, name)
        log(f"Created Pod: {CLOUD_NAME} {ns}/{name}")
        try:
            version = str((created.get("metadata") or {}).get("resourceVersion") or "")
            pod = self._wait_running(kube, ns, name, log, should_stop, announced, version)
            node = str(pod["spec"]["nodeName"])
            uid = str(pod["metadata"].get("uid") or created["metadata"]["uid"])
            token = self.client.service_account_token(ns, spec.service_account, TOKEN_SECONDS, (name, uid))
        except KubeError as e:
            self.delete_pod(ns, name)
            raise ProvisionFailed(f"ERROR: agent pod {ns}/{name}: {e.message}") from e
        except BaseException:
            self.delete_pod(ns, name)
            raise
        tmp_dir.mkdir(parents=True, exist_ok=True)
        kubeconfig = tmp_dir / "kubeconfig"
        fd = os.open(kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.client.kubeconfig_for_token(token, ns), f)
        log(f"Agent {name} is provisioned from template {spec.label}")
        log("---")
        log(yaml.safe_dump(spec.pod, sort_keys=False).rstrip("\n"))
        log("")
        return Agent(self, spec, node, kubeconfig)

    def _wait_running(
        self,
        kube: KubeClient,
        ns: str,
        name: str,
        log: Callable[[str], None],
        should_stop: Callable[[], bool],
        announced: bool = False,
        version: str = "",
    ) -> dict[str, Any]:
        """The pod once Running on a node. ``announced``: the node step already printed its "Still waiting"
        lines (it does so once, 15 s after it queued its task), while the build waited for capacity.
        ``version``: the pod's resourceVersion as created, watched from."""
        last_line = ""
        away = False  # the apiserver was unreachable: wait until it is ready again before asking
        while True:
            if should_stop():
                raise ProvisionInterrupted
            if away and not self.client.ready():
                time.sleep(POLL_SECONDS)
                continue
            away = False
            try:
                # As the plugin does, a watch of the pod rather than a GET per poll: one request for most
                # waits, served from the apiserver's watch cache. It ends every WATCH_SECONDS so that an
                # abort (``should_stop``) is seen; without a version (first, or after 410 Gone) a GET
                # gives the pod and the version to watch from.
                if version:
                    events = [
                        (str(e.get("type")), e.get("object") or {})
                        for e in self._watch_pod(kube, ns, name, version)
                    ]
                else:
                    events = [("GET", kube.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}"))]
            except KubeError as e:
                # Away, or just restarted and refusing what RBAC allows until its caches sync (/readyz).
                if e.status == 0 or e.status >= 500 or (e.status in (401, 403) and not self.client.ready()):
                    away = True
                    time.sleep(POLL_SECONDS)
                    continue
                raise
            for kind, pod in events:
                if kind == "ERROR":  # e.g. 410 Gone: the version is too old to watch from
                    version = ""
                    continue
                if kind == "DELETED":
                    raise ProvisionFailed(f"ERROR: agent pod {ns}/{name} was deleted before the build ran")
                version = str((pod.get("metadata") or {}).get("resourceVersion") or "")
                wait = pod_wait(pod)
                if wait.phase == "Running" and (pod.get("spec") or {}).get("nodeName"):
                    return dict(pod)
                if wait.phase in ("Succeeded", "Failed"):
                    raise ProvisionFailed(
                        f"ERROR: agent pod {ns}/{name} ended {wait.phase} before the build ran"
                    )
                if not announced:
                    log("Still waiting to schedule task")
                    log(f"\u2018{name}\u2019 is offline")
                    announced = True
                if wait.reason and wait.line() != last_line:
                    last_line = wait.line()
                    log(last_line)

    @staticmethod
    def _watch_pod(kube: KubeClient, ns: str, name: str, version: str) -> Iterator[dict[str, Any]]:
        """The pod's events after ``version``, up to the first that leaves it Running (or gone)."""
        path = f"/api/v1/namespaces/{ns}/pods?fieldSelector=metadata.name%3D{name}&resourceVersion={version}"
        for event in kube.watch(path, WATCH_SECONDS):
            yield event
            pod = event.get("object") or {}
            phase = str((pod.get("status") or {}).get("phase") or "")
            running = phase == "Running" and (pod.get("spec") or {}).get("nodeName")
            if event.get("type") in ("ERROR", "DELETED") or running or phase in ("Succeeded", "Failed"):
                return

    def delete_pod(self, namespace: str, name: str) -> None:
        """Delete the agent pod (best effort: a pod already gone is fine)."""
        try:
            self._as_controller(namespace).request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")
        except KubeError as e:
            if e.status != 404:
                print(f"jenkins-lite: could not delete agent pod {namespace}/{name}: {e}", file=sys.stderr)


__all__ = [
    "Agent",
    "ContainerCap",
    "KubernetesCloud",
    "PodWait",
    "ProvisionFailed",
    "ProvisionInterrupted",
    "node_path",
    "pod_wait",
]
