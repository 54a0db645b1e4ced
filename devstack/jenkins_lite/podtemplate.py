"""The agent pod of a build, built from the Jenkinsfile's ``podTemplate(...)`` the way the kubernetes plugin
builds it (PodTemplateBuilder): the template's ``yaml`` is the base, the template's own settings
(containers, volumes, service account, namespace) are merged over it, and the plugin's additions come on top
(the ``jnlp`` agent container, the ``workspace-volume``, the ``jenkins/label`` labels, ``restartPolicy:
Never``, the Linux node selector). Nothing is read from anywhere but the script.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from devstack.jenkins_lite.groovy_args import Call, GroovyError, find_call

WORKSPACE_VOLUME = "workspace-volume"
AGENT_WORKDIR = "/home/jenkins/agent"
JNLP_IMAGE = "jenkins/inbound-agent:3309.v27b_9314fd1a_4-1"
LABEL_KEY = "jenkins/label"
LABEL_DIGEST_KEY = "jenkins/label-digest"
#: The plugin's default node selector: agents run on Linux nodes.
NODE_SELECTOR = {"kubernetes.io/os": "linux"}
_RANDOM_ALPHABET = "bcdfghjklmnpqrstvwxz0123456789"


class PodTemplateError(ValueError):
    """The podTemplate cannot be turned into a pod (the build fails with this message)."""


@dataclass
class HostMount:
    """A hostPath volume as one container mounts it."""

    host_path: str
    mount_path: str
    read_only: bool = False


@dataclass
class AgentPodSpec:
    """What jenkins-lite needs of a pod template: the pod to create and each container's hostPath mounts."""

    namespace: str
    pod: dict[str, Any]
    host_mounts: dict[str, list[HostMount]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def label(self) -> str:
        return str(self.pod["metadata"]["labels"].get(LABEL_KEY, ""))

    @property
    def service_account(self) -> str:
        return str(self.pod["spec"].get("serviceAccountName") or "default")


def _random(n: int) -> str:
    return "".join(secrets.choice(_RANDOM_ALPHABET) for _ in range(n))


def pod_label(job: str, number: int) -> str:
    """POD_LABEL: ``<job>_<build>-<random>``, sanitised like PodTemplateUtils.sanitizeLabel (63 chars)."""
    raw = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{job}_{number}")
    suffix = "-" + _random(5)
    return raw[: 63 - len(suffix)].rstrip("_.-") + suffix


def pod_name(label: str) -> str:
    """The pod's name: the label made a DNS label, plus the template's and the pod's random suffixes."""
    base = re.sub(r"[^a-z0-9-]", "-", label.lower()).strip("-")
    suffix = f"-{_random(5)}-{_random(5)}"
    return base[: 63 - len(suffix)].rstrip("-") + suffix


def merge(base: Any, overlay: Any) -> Any:
    """Deep merge (the plugin's ``merge()``): maps key by key, lists of named maps by ``name``."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge(out[key], value) if key in out else value
        return out
    if isinstance(base, list) and isinstance(overlay, list) and _named(base) and _named(overlay):
        by_name = {item["name"]: item for item in base}
        merged = [merge(by_name[i["name"]], i) if i["name"] in by_name else i for i in overlay]
        names = {i["name"] for i in overlay}
        return [item for item in base if item["name"] not in names] + merged
    return overlay


def _named(items: list[Any]) -> bool:
    return all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items)


def _str(call: Call, key: str) -> str | None:
    value = call.kwargs.get(key)
    if value is None:
        return None
    if not isinstance(value, str | int):
        raise PodTemplateError(f"{call.name}: {key} must be a string")
    return str(value)


def _container(call: Call, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    if call.name != "containerTemplate":
        raise PodTemplateError(f"podTemplate containers: expected containerTemplate(...), not {call.name}")
    name, image = _str(call, "name"), _str(call, "image")
    if not name or not image:
        raise PodTemplateError("containerTemplate needs a name and an image")
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "Always" if call.kwargs.get("alwaysPullImage") else "IfNotPresent",
        "workingDir": _str(call, "workingDir") or AGENT_WORKDIR,
        "tty": bool(call.kwargs.get("ttyEnabled")),
        "volumeMounts": mounts,
    }
    command, args = _str(call, "command"), _str(call, "args")
    if command:
        container["command"] = shlex.split(command)
    if args:
        container["args"] = shlex.split(args)
    if call.kwargs.get("privileged"):
        container["securityContext"] = {"privileged": True}
    resources: dict[str, dict[str, str]] = {}
    for kwarg, kind, what in (
        ("resourceRequestCpu", "requests", "cpu"),
        ("resourceRequestMemory", "requests", "memory"),
        ("resourceLimitCpu", "limits", "cpu"),
        ("resourceLimitMemory", "limits", "memory"),
    ):
        value = _str(call, kwarg)
        if value:
            resources.setdefault(kind, {})[what] = value
    if resources:
        container["resources"] = resources
    env = call.kwargs.get("envVars") or []
    if env:
        container["env"] = [_env_var(e) for e in env]
    return container


def _env_var(item: Any) -> dict[str, str]:
    if not isinstance(item, Call) or item.name != "envVar":
        raise PodTemplateError("containerTemplate envVars: expected envVar(key: .., value: ..)")
    return {"name": _str(item, "key") or "", "value": _str(item, "value") or ""}


def _volumes(template: Call) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, the volumeMounts every container gets) of ``volumes: [...]``."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    items = template.kwargs.get("volumes") or []
    if not isinstance(items, list):
        raise PodTemplateError("podTemplate volumes must be a list")
    for i, item in enumerate(items):
        if not isinstance(item, Call):
            raise PodTemplateError("podTemplate volumes: expected hostPathVolume(...) or emptyDirVolume(...)")
        name = f"volume-{i}"
        mount_path = _str(item, "mountPath")
        if not mount_path:
            raise PodTemplateError(f"{item.name} needs a mountPath")
        if item.name == "hostPathVolume":
            host_path = _str(item, "hostPath")
            if not host_path:
                raise PodTemplateError("hostPathVolume needs a hostPath")
            volumes.append({"name": name, "hostPath": {"path": host_path}})
        elif item.name == "emptyDirVolume":
            medium = "Memory" if item.kwargs.get("memory") else ""
            volumes.append({"name": name, "emptyDir": {"medium": medium}})
        else:
            raise PodTemplateError(f"podTemplate volumes: {item.name}(...) is not supported by jenkins-lite")
        mounts.append({"name": name, "mountPath": mount_path, "readOnly": False})
    return volumes, mounts


def _yaml_pod(template: Call) -> dict[str, Any]:
    text = template.kwargs.get("yaml")
    if text is None:
        return {}
    if not isinstance(text, str):
        raise PodTemplateError("podTemplate yaml must be a string")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PodTemplateError(f"podTemplate yaml is not valid YAML: {e}") from e
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise PodTemplateError("podTemplate yaml must describe a Pod (a mapping)")
    return doc


def _host_mounts(pod: dict[str, Any]) -> dict[str, list[HostMount]]:
    host_paths = {
        v["name"]: str(v["hostPath"]["path"])
        for v in pod["spec"].get("volumes") or []
        if isinstance(v, dict) and isinstance(v.get("hostPath"), dict) and v["hostPath"].get("path")
    }
    out: dict[str, list[HostMount]] = {}
    for c in pod["spec"].get("containers") or []:
        out[c["name"]] = [
            HostMount(host_paths[m["name"]], str(m["mountPath"]), bool(m.get("readOnly")))
            for m in c.get("volumeMounts") or []
            if m.get("name") in host_paths and m.get("mountPath")
        ]
    return out


def agent_pod(script: str, job: str, number: int, root_url: str) -> AgentPodSpec | None:
    """The agent pod of the script's ``podTemplate``; None when the script has none.

    Raises :class:`PodTemplateError` when the template cannot be read.
    """
    try:
        template = find_call(script, "podTemplate")
    except GroovyError as e:
        raise PodTemplateError(f"podTemplate: {e}") from e
    if template is None:
        return None
    namespace = _str(template, "namespace") or "default"
    label = _str(template, "label") or pod_label(job, number)
    name = pod_name(label)
    volumes, mounts = _volumes(template)
    workspace_mount = {"name": WORKSPACE_VOLUME, "mountPath": AGENT_WORKDIR, "readOnly": False}
    containers_arg = template.kwargs.get("containers") or []
    if not isinstance(containers_arg, list):
        raise PodTemplateError("podTemplate containers must be a list")
    containers = [
        _container(c, [dict(workspace_mount), *(dict(m) for m in mounts)])
        for c in containers_arg
        if isinstance(c, Call)
    ]
    if len(containers) != len(containers_arg):
        raise PodTemplateError("podTemplate containers: expected containerTemplate(...) entries")
    jnlp = {
        "name": "jnlp",
        "image": JNLP_IMAGE,
        "env": [
            {"name": "JENKINS_AGENT_NAME", "value": name},
            {"name": "JENKINS_NAME", "value": name},
            {"name": "JENKINS_AGENT_WORKDIR", "value": AGENT_WORKDIR},
            {"name": "JENKINS_URL", "value": root_url},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        "volumeMounts": [dict(workspace_mount)],
    }
    spec: dict[str, Any] = {
        "containers": [*containers, jnlp],
        "volumes": [*volumes, {"name": WORKSPACE_VOLUME, "emptyDir": {"medium": ""}}],
        "nodeSelector": dict(NODE_SELECTOR),
        "restartPolicy": "Never",
    }
    service_account = _str(template, "serviceAccount")
    if service_account:
        spec["serviceAccountName"] = service_account
    metadata = {
        "name": name,
        "namespace": namespace,
        "labels": {LABEL_KEY: label, LABEL_DIGEST_KEY: hashlib.sha1(label.encode()).hexdigest()},
        "annotations": {"buildUrl": f"{root_url}job/{job}/{number}/", "runUrl": f"job/{job}/{number}/"},
    }
    built = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    pod = merge(_yaml_pod(template), built)
    pod["metadata"]["name"], pod["metadata"]["namespace"] = name, namespace
    return AgentPodSpec(namespace, pod, _host_mounts(pod))


__all__ = ["AgentPodSpec", "HostMount", "PodTemplateError", "agent_pod", "merge", "pod_label", "pod_name"]
