"""The Jenkinsfile generator: a pipeline file plus an execution's facts -> a scripted Pipeline.

The output runs as is on a real Jenkins with the kubernetes plugin (``podTemplate`` / ``node(POD_LABEL)``
/ ``container``), the credentials-binding plugin (``withCredentials``) and the pipeline-input-step plugin
(``input``). Its first line is the plan comment of ``docs/jenkins-plan.md``: the same pipeline as one line of
JSON, which jenkins-lite executes and real Jenkins ignores.

Shape::

    // cubepaas-plan: {...}
    podTemplate(namespace: .., serviceAccount: 'jenkins', containers: [one per step], ...) {
      node(POD_LABEL) {
        withEnv([CICD_* ...]) {
          timeout(pipeline) {
            stage('Clone') { parallel('step-0-0': { stage('step-0-0') { container(..) { withEnv(step env) {
                withCredentials(bindings) { timeout(step) { sh(script: '..') } } } } } }, failFast: false) }
            input(id: 'Gate1', ..)   // before every user stage: pause/resume/approval at stage boundaries
            stage('<user stage>') { timeout(stage) { parallel(...) } }     // or echo only when skipped
            ...

Escaping: every value that lands in Groovy goes through :func:`groovy_string`, which produces a
single-quoted Groovy string literal. Single-quoted Groovy strings are plain ``java.lang.String``s: no
``$`` interpolation. Backslash, quote, and line terminators use backslash escapes; every other control or
non-ASCII character becomes a ``\\uXXXX`` escape, so the generated script is printable ASCII. Groovy 2.4 (the
version Jenkins runs) translates ``\\uXXXX`` escapes before lexing, as Java does, so the escapes of ``'``,
``\\``, LF and CR are never written as ``\\uXXXX`` (that would end the literal or the line); the others only
ever become characters inside a literal. The plan comment is safe for the same reason: ``json.dumps`` writes
``\\n``/``\\r`` for line terminators, never ``\\u000a``/``\\u000d``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from crds.messages import gate_input_id
from crds.pipeline_file import (
    ApplyAppConfig,
    ApplyYamlConfig,
    PipelineConfig,
    PublishCatalogConfig,
    PublishImageConfig,
    Resources,
    RunScriptConfig,
    Step,
)

PLAN_PREFIX = "// cubepaas-plan: "
PLAN_VERSION = 1

#: Images of the built-in step types (a tool container runs the generated commands).
CLONE_IMAGE = "alpine/git:2.45.2"
DOCKER_IMAGE = "docker:27-cli"
KUBECTL_IMAGE = "bitnami/kubectl:1.31"
HELM_IMAGE = "alpine/helm:3.16.2"
CATALOG_IMAGE = "alpine/git:2.45.2"

#: Variables substituted as ``${NAME}`` in images, tags, paths and env values, and exported to every step.
CICD_VARIABLES = (
    "CICD_GIT_REPO_NAME",
    "CICD_GIT_URL",
    "CICD_GIT_COMMIT",
    "CICD_GIT_REF",
    "CICD_GIT_BRANCH",
    "CICD_GIT_TAG",
    "CICD_EVENT",
    "CICD_TRIGGER_TYPE",
    "CICD_EXECUTION_ID",
    "CICD_EXECUTION_SEQUENCE",
    "CICD_PIPELINE_ID",
    "CICD_PROJECT_ID",
    "CICD_LOCAL_REGISTRY",
)
_CICD_REF = re.compile(r"\$\{(CICD_[A-Z_]+)\}")

#: Variables the clone step's git credential is bound to.
GIT_USERNAME_VAR = "GIT_USERNAME"
GIT_PASSWORD_VAR = "GIT_PASSWORD"

#: A Groovy string constant may not exceed 65535 bytes in the class file; longer literals are emitted as a
#: concatenation of chunks of this many code points (at most 6 modified-UTF-8 bytes each).
_CHUNK = 10_000


# ------------------------------------------------------------------------------------------- escaping


_NAMED_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _escape_char(ch: str) -> str:
    named = _NAMED_ESCAPES.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if 0x20 <= code < 0x7F:
        return ch
    if code > 0xFFFF:  # astral: a UTF-16 surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _literal(value: str) -> str:
    return "'" + "".join(_escape_char(ch) for ch in value) + "'"


def groovy_string(value: str) -> str:
    """``value`` as a single-quoted Groovy string literal (printable ASCII, no interpolation).

    Values longer than a class-file constant allows become a parenthesised concatenation of literals.
    """
    if len(value) <= _CHUNK:
        return _literal(value)
    parts = [_literal(value[i : i + _CHUNK]) for i in range(0, len(value), _CHUNK)]
    return "(" + " + ".join(parts) + ")"


def _g(value: Any) -> str:
    """A Groovy literal for a plain value: strings via :func:`groovy_string`, ints, booleans, lists, maps."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return groovy_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_g(v) for v in value) + "]"
    raise TypeError(f"no Groovy literal for {type(value).__name__}")


def _args(**kwargs: Any) -> str:
    """Named arguments ``a: 'x', b: 1`` (keys are our own identifiers, values escaped)."""
    return ", ".join(f"{k}: {_g(v)}" for k, v in kwargs.items() if v is not None)


# ------------------------------------------------------------------------------------------- input


class PodVolume(BaseModel):
    """A hostPath volume mounted in every container of the agent pod."""

    host_path: str
    mount_path: str


class PodExtension(BaseModel):
    """What :func:`pod_extension` adds to the agent pod: volumes (caches) and a pod YAML fragment merged into
    the template (node affinity)."""

    volumes: list[PodVolume] = Field(default_factory=list)
    yaml: str | None = None


class JenkinsfileInput(BaseModel):
    """Everything the generator needs for one execution. Credential ids name Jenkins credentials the calling
    activity created from Kubernetes Secrets; no secret value ever passes through here."""

    model_config = ConfigDict(extra="forbid")

    config: PipelineConfig
    namespace: str
    """Project namespace (also the agent pod's namespace unless ``agent_namespace`` is set)."""
    pipeline: str
    run: int
    execution_id: str
    """``<namespace>/<execution-name>/<uid>``: CICD_EXECUTION_ID and the build parameter."""
    git_url: str
    commit: str
    ref: str = ""
    branch: str = ""
    tag: str = ""
    event: str = "manual"
    trigger_type: str = "user"
    project_id: str = ""
    pipeline_id: str = ""
    """Defaults to ``<namespace>:<pipeline>``."""
    local_registry: str = ""
    executor_resources: Resources | None = None
    """Default resources of step containers without their own (from the PipelineSetting)."""
    agent_namespace: str | None = None
    service_account: str = "jenkins"
    git_credential_id: str | None = None
    """usernamePassword credential for the clone; None for public or file:// repositories."""
    env_from_credentials: dict[str, str] = Field(default_factory=dict)
    """``env_from_key(sourceName, sourceKey)`` -> id of the secret-text credential holding that key."""
    secrets_withheld: bool = False
    """No envFrom secrets for the steps (a pull request from a fork; the run's spec says so)."""
    extra_variables: dict[str, str] = Field(default_factory=dict)
    """More CICD_* variables of this run (CICD_IMAGE_REPO/TAG/DIGEST); the built-in ones win."""
    cache_root: str | None = None
    """hostPath directory under which step caches live (None: caches are off for this project)."""
    cache_nodes: list[str] = Field(default_factory=list)
    """Nodes that ran this pipeline most recently, newest first: the agent pod prefers them."""


def env_from_key(source_name: str, source_key: str) -> str:
    """Key of :attr:`JenkinsfileInput.env_from_credentials` for one Secret key."""
    return f"{source_name}/{source_key}"


def credential_id(namespace: str, pipeline: str, run: int, source_name: str, source_key: str) -> str:
    """A stable Jenkins credential id for one Secret key of one execution ([A-Za-z0-9_.-], bounded)."""
    raw = f"{namespace}-{pipeline}-{run}-{source_name}-{source_key}"
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)
    if safe == raw and len(safe) <= 120:
        return safe
    return f"{safe[:109]}-{hashlib.sha256(raw.encode()).hexdigest()[:10]}"


EXECUTION_LABEL = "devops.cubepaas.io/execution"
"""Label on the agent pod naming its execution (cleanup deletes the pods by it)."""


def execution_label_value(execution_id: str) -> str:
    """A valid label value for the execution ``<namespace>/<name>/<uid>``: its name, made label-safe."""
    parts = execution_id.split("/")
    name = parts[1] if len(parts) > 1 else execution_id
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:63].strip("-_.")
    return safe or "execution"


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


#: Scheduling weights of the cache nodes, newest first (preferred, never required: a run never waits for
#: one node; it only builds faster there).
CACHE_NODE_WEIGHTS = (100, 80, 60, 40, 20, 10, 5, 1)


def cache_host_path(root: str, namespace: str, pipeline: str, path: str) -> str:
    """The node directory that holds one cached path of one pipeline (its own per project and pipeline)."""
    digest = hashlib.sha256(path.encode()).hexdigest()[:16]
    return f"{root.rstrip('/')}/{namespace}/{pipeline}/{digest}"


def cache_paths(config: PipelineConfig) -> list[str]:
    """Every path some step wants cached, once, in the order of first use."""
    seen: list[str] = []
    for _, _, _, step in config.iter_steps():
        for path in step.cache.paths if step.cache else []:
            if path not in seen:
                seen.append(path)
    return seen


def pod_extension(inp: JenkinsfileInput) -> PodExtension:
    """Build caches: a hostPath volume for every cached path, and node affinity toward the nodes that ran
    this pipeline most recently (where those directories are warm)."""
    if inp.cache_root is None:
        return PodExtension()
    paths = cache_paths(inp.config)
    if not paths:
        return PodExtension()
    volumes = [
        PodVolume(host_path=cache_host_path(inp.cache_root, inp.namespace, inp.pipeline, p), mount_path=p)
        for p in paths
    ]
    preferred = [
        {
            "weight": weight,
            "preference": {
                "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]
            },
        }
        for node, weight in zip(inp.cache_nodes, CACHE_NODE_WEIGHTS, strict=False)
    ]
    if not preferred:
        return PodExtension(volumes=volumes)
    affinity = {
        "spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred}}}
    }
    return PodExtension(volumes=volumes, yaml=yaml.safe_dump(affinity, sort_keys=True))


# ------------------------------------------------------------------------------------------- variables


def repo_name(url: str) -> str:
    """``https://host/org/app.git`` -> ``app``."""
    tail = re.split(r"[/:]", url.rstrip("/"))[-1]
    return tail[:-4] if tail.endswith(".git") else tail


def cicd_variables(inp: JenkinsfileInput) -> dict[str, str]:
    return {
        **{k: v for k, v in inp.extra_variables.items() if k.startswith("CICD_")},
        "CICD_GIT_REPO_NAME": repo_name(inp.git_url),
        "CICD_GIT_URL": inp.git_url,
        "CICD_GIT_COMMIT": inp.commit,
        "CICD_GIT_REF": inp.ref,
        "CICD_GIT_BRANCH": inp.branch,
        "CICD_GIT_TAG": inp.tag,
        "CICD_EVENT": inp.event,
        "CICD_TRIGGER_TYPE": inp.trigger_type,
        "CICD_EXECUTION_ID": inp.execution_id,
        "CICD_EXECUTION_SEQUENCE": str(inp.run),
        "CICD_PIPELINE_ID": inp.pipeline_id or f"{inp.namespace}:{inp.pipeline}",
        "CICD_PROJECT_ID": inp.project_id or inp.namespace,
        "CICD_LOCAL_REGISTRY": inp.local_registry,
    }


def substitute(text: str, variables: dict[str, str]) -> str:
    """Replace ``${CICD_...}`` references to known variables; every other ``$`` text stays as written."""
    return _CICD_REF.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


# ------------------------------------------------------------------------------------------- step scripts


def _q(value: str) -> str:
    return shlex.quote(value)


def _askpass_prelude() -> str:
    """A GIT_ASKPASS helper answering with the bound credential variables (never written to the log)."""
    return (
        'cubepaas_askpass="$(mktemp)"\n'
        "trap 'rm -f \"$cubepaas_askpass\"' EXIT\n"
        "cat > \"$cubepaas_askpass\" <<'CUBEPAAS_ASKPASS'\n"
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  Username*|username*) printf '%s\\n' \"${GIT_USERNAME_VAR}\" ;;\n"
        f"  *) printf '%s\\n' \"${GIT_PASSWORD_VAR}\" ;;\n"
        "esac\n"
        "CUBEPAAS_ASKPASS\n"
        'chmod 700 "$cubepaas_askpass"\n'
        'export GIT_ASKPASS="$cubepaas_askpass" GIT_TERMINAL_PROMPT=0\n'
    )


def clone_script(url: str, commit: str, ref: str, with_credentials: bool) -> str:
    """Fetch ``commit`` (or ``ref``) from ``url`` into the workspace and check it out detached."""
    lines = ["set -e"]
    if with_credentials:
        lines.append(_askpass_prelude().rstrip("\n"))
    lines += [
        "git init -q .",
        "git config advice.detachedHead false",
    ]
    target = commit or ref or "HEAD"
    if commit and ref:
        # Servers that refuse fetching an unadvertised commit still serve the ref that points at it.
        lines.append(f"git fetch -q {_q(url)} {_q(commit)} || git fetch -q {_q(url)} {_q(ref)}")
    else:
        lines.append(f"git fetch -q {_q(url)} {_q(target)}")
    checkout = commit or "FETCH_HEAD"
    lines += [
        f"git checkout -q -f --detach {_q(checkout)}",
        'echo "Checked out $(git rev-parse HEAD)"',
    ]
    return "\n".join(lines) + "\n"


def run_script(cfg: RunScriptConfig) -> str:
    script = cfg.shell_script
    if script.startswith("#!"):
        return script
    return "set -e\n" + script + ("" if script.endswith("\n") else "\n")


def publish_image_script(cfg: PublishImageConfig, variables: dict[str, str]) -> str:
    tag = substitute(cfg.tag, variables)
    registry = (cfg.registry or "") if cfg.push_remote else variables.get("CICD_LOCAL_REGISTRY", "")
    image = (
        f"{registry.rstrip('/')}/{tag}"
        if registry and not tag.startswith(registry.rstrip("/") + "/")
        else tag
    )
    dockerfile = substitute(cfg.dockerfile_path, variables)
    context = substitute(cfg.build_context, variables)
    return f"set -e\ndocker build -f {_q(dockerfile)} -t {_q(image)} {_q(context)}\ndocker push {_q(image)}\n"


def apply_yaml_script(cfg: ApplyYamlConfig, variables: dict[str, str]) -> str:
    ns = f" -n {_q(substitute(cfg.namespace, variables))}" if cfg.namespace else ""
    if cfg.path is not None:
        return f"set -e\nkubectl apply{ns} -f {_q(substitute(cfg.path, variables))}\n"
    content = cfg.content or ""
    return f"set -e\nprintf '%s\\n' {_q(content)} | kubectl apply{ns} -f -\n"


def apply_app_script(cfg: ApplyAppConfig, variables: dict[str, str]) -> str:
    lines = ["set -e", 'cubepaas_values="$(mktemp)"', "trap 'rm -f \"$cubepaas_values\"' EXIT"]
    # JSON is YAML: the values go to helm as a file, exactly as written in the pipeline file.
    lines.append(f"printf '%s\\n' {_q(json.dumps(cfg.values, sort_keys=True))} > \"$cubepaas_values\"")
    cmd = (
        f"helm upgrade --install {_q(substitute(cfg.name, variables))} {_q(substitute(cfg.chart, variables))}"
    )
    if cfg.version:
        cmd += f" --version {_q(substitute(cfg.version, variables))}"
    if cfg.target_namespace:
        cmd += f" --namespace {_q(substitute(cfg.target_namespace, variables))} --create-namespace"
    cmd += ' --values "$cubepaas_values" --wait'
    lines.append(cmd)
    return "\n".join(lines) + "\n"


def publish_catalog_script(cfg: PublishCatalogConfig, variables: dict[str, str]) -> str:
    src = substitute(cfg.path, variables)
    version = substitute(cfg.version, variables)
    dest = f"templates/{cfg.catalog_template}/{version}"
    author = cfg.git_author or "CubePaaS DevOps"
    email = cfg.git_email or "devops@cubepaas.local"
    return (
        "\n".join(
            [
                "set -e",
                'cubepaas_catalog="$(mktemp -d)"',
                "trap 'rm -rf \"$cubepaas_catalog\"' EXIT",
                f'git clone -q --branch {_q(cfg.git_branch)} {_q(cfg.git_url)} "$cubepaas_catalog"',
                f'rm -rf "$cubepaas_catalog"/{_q(dest)}',
                f'mkdir -p "$cubepaas_catalog"/{_q(dest)}',
                f'cp -R {_q(src.rstrip("/"))}/. "$cubepaas_catalog"/{_q(dest)}/',
                'cd "$cubepaas_catalog"',
                "git add -A",
                f"git -c user.name={_q(author)} -c user.email={_q(email)} commit -q -m "
                f"{_q(f'Publish {cfg.catalog_template} {version}')} || echo 'catalog already up to date'",
                f"git push -q origin HEAD:{_q(cfg.git_branch)}",
            ]
        )
        + "\n"
    )


# ------------------------------------------------------------------------------------------- plan


def _step_plan(
    inp: JenkinsfileInput, stage_index: int, step_index: int, step: Step, variables: dict[str, str]
) -> dict[str, Any]:
    cfg = step.config
    if isinstance(cfg, RunScriptConfig):
        image, script = substitute(cfg.image, variables), run_script(cfg)
    elif isinstance(cfg, PublishImageConfig):
        image, script = DOCKER_IMAGE, publish_image_script(cfg, variables)
    elif isinstance(cfg, ApplyYamlConfig):
        image, script = KUBECTL_IMAGE, apply_yaml_script(cfg, variables)
    elif isinstance(cfg, ApplyAppConfig):
        image, script = HELM_IMAGE, apply_app_script(cfg, variables)
    else:
        image, script = CATALOG_IMAGE, publish_catalog_script(cfg, variables)
    credentials: list[dict[str, str]] = []
    if not inp.secrets_withheld:  # a pull request from a fork gets no secrets
        for ref in step.env_from:
            key = env_from_key(ref.source_name, ref.source_key)
            cred = inp.env_from_credentials.get(key)
            if cred is None:
                raise ValueError(f"no Jenkins credential for envFrom {key} (step {stage_index}-{step_index})")
            credentials.append({"id": cred, "kind": "string", "variable": ref.variable})
    resources = step.resources or inp.executor_resources
    return {
        "index": step_index,
        "node": f"step-{stage_index}-{step_index}",
        "type": step.type.value,
        "image": image,
        "script": script,
        "env": {k: substitute(v, variables) for k, v in step.env.items()},
        "credentials": credentials,
        "timeoutSeconds": step.timeout.seconds if step.timeout else None,
        "privileged": step.privileged,
        "resources": resources.model_dump(by_alias=True, exclude_none=True) if resources else {},
    }


def build_plan(inp: JenkinsfileInput) -> dict[str, Any]:
    """The plan of docs/jenkins-plan.md (plus per-step ``resources``/``privileged`` for the pod)."""
    variables = cicd_variables(inp)
    clone_creds: list[dict[str, str]] = []
    if inp.git_credential_id:
        clone_creds.append(
            {
                "id": inp.git_credential_id,
                "kind": "usernamePassword",
                "usernameVariable": GIT_USERNAME_VAR,
                "passwordVariable": GIT_PASSWORD_VAR,
            }
        )
    clone = {
        "index": 0,
        "node": "step-0-0",
        "type": "clone",
        "image": CLONE_IMAGE,
        "script": clone_script(inp.git_url, inp.commit, inp.ref, bool(inp.git_credential_id)),
        "env": {},
        "credentials": clone_creds,
        "timeoutSeconds": None,
        "privileged": False,
        "resources": inp.executor_resources.model_dump(by_alias=True, exclude_none=True)
        if inp.executor_resources
        else {},
    }
    stages: list[dict[str, Any]] = [
        {"index": 0, "name": "Clone", "gate": None, "skip": False, "timeoutSeconds": None, "steps": [clone]}
    ]
    branch = inp.branch or None
    event = inp.event or None
    for file_index, stage in enumerate(inp.config.stages):
        i = file_index + 1
        skip = not stage.applies(branch, event)
        steps = (
            []
            if skip
            else [
                _step_plan(inp, i, j, step, variables)
                for j, step in enumerate(stage.steps)
                if step.applies(branch, event)
            ]
        )
        stages.append(
            {
                "index": i,
                "name": stage.name,
                "gate": gate_input_id(i),
                "approval": stage.approval,
                "skip": skip,
                "timeoutSeconds": stage.timeout.seconds if stage.timeout else None,
                "steps": steps,
            }
        )
    return {
        "version": PLAN_VERSION,
        "timeoutSeconds": inp.config.timeout.seconds,
        "env": variables,
        "stages": stages,
    }


def plan_comment(plan: dict[str, Any]) -> str:
    return PLAN_PREFIX + json.dumps(plan, ensure_ascii=True, separators=(",", ":"), sort_keys=True)


def parse_plan(script: str) -> dict[str, Any] | None:
    """The plan of a generated script (its first line), or None."""
    first = script.split("\n", 1)[0]
    if not first.startswith(PLAN_PREFIX):
        return None
    plan: dict[str, Any] = json.loads(first[len(PLAN_PREFIX) :])
    return plan


def skipped_stages(plan: dict[str, Any]) -> frozenset[int]:
    """Indexes of the plan's skipped stages (for :meth:`JenkinsEngine.describe`)."""
    return frozenset(int(s["index"]) for s in plan.get("stages", []) if s.get("skip"))


# ------------------------------------------------------------------------------------------- Groovy


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def block(self, head: str, body: Callable[[], None]) -> None:
        self.line(head + " {")
        self.depth += 1
        body()
        self.depth -= 1
        self.line("}")


def _timeout_head(seconds: int | None) -> str | None:
    return f"timeout({_args(time=seconds, unit='SECONDS')})" if seconds else None


def _wrap(w: _Writer, heads: Sequence[str | None], inner: Callable[[], None]) -> None:
    """Nest ``inner`` in the given block heads, outermost first (None entries are left out)."""
    present = [h for h in heads if h]
    if not present:
        inner()
        return
    w.block(present[0], lambda: _wrap(w, present[1:], inner))


def _binding(cred: dict[str, str]) -> str:
    if cred["kind"] == "usernamePassword":
        return (
            "usernamePassword("
            + _args(
                credentialsId=cred["id"],
                usernameVariable=cred["usernameVariable"],
                passwordVariable=cred["passwordVariable"],
            )
            + ")"
        )
    return "string(" + _args(credentialsId=cred["id"], variable=cred["variable"]) + ")"


def _env_list(env: dict[str, str]) -> str:
    return _g([f"{k}={v}" for k, v in env.items()])


def _container_template(step: dict[str, Any]) -> str:
    res = step.get("resources") or {}
    args = _args(
        name=step["node"],
        image=step["image"],
        command="sleep",
        args="99d",
        ttyEnabled=False,
        privileged=bool(step.get("privileged")) or None,
        resourceRequestCpu=res.get("cpuRequest"),
        resourceLimitCpu=res.get("cpuLimit"),
        resourceRequestMemory=res.get("memoryRequest"),
        resourceLimitMemory=res.get("memoryLimit"),
    )
    return f"containerTemplate({args})"


def _render_step(w: _Writer, step: dict[str, Any]) -> None:
    node = step["node"]
    heads: list[str | None] = [
        f"stage({_g(node)})",
        f"container({_g(node)})",
        f"withEnv({_env_list(step['env'])})" if step["env"] else None,
        "withCredentials([" + ", ".join(_binding(c) for c in step["credentials"]) + "])"
        if step["credentials"]
        else None,
        _timeout_head(step["timeoutSeconds"]),
    ]
    _wrap(w, heads, lambda: w.line(f"sh({_args(script=step['script'], label=node)})"))


def _render_stage(w: _Writer, stage: dict[str, Any]) -> None:
    if stage["gate"]:
        verb = "Approve" if stage.get("approval") else "Start"
        message = f"{verb} stage {stage['name']}?"
        w.line(f"input({_args(id=stage['gate'], message=message, ok=verb)})")

    def body() -> None:
        if stage["skip"]:
            w.line(f"echo({_g('Stage skipped: its when condition does not match this run.')})")
            return
        if not stage["steps"]:
            w.line(f"echo({_g('Stage has no step for this run.')})")
            return

        def branches() -> None:
            w.line("parallel([")
            w.depth += 1
            for step in stage["steps"]:
                w.line(f"{_g(step['node'])}: {{")
                w.depth += 1
                _render_step(w, step)
                w.depth -= 1
                w.line("},")
            w.line("failFast: false,")
            w.depth -= 1
            w.line("])")

        _wrap(w, [_timeout_head(stage["timeoutSeconds"])], branches)

    w.block(f"stage({_g(stage['name'])})", body)


def render_plan(inp: JenkinsfileInput, plan: dict[str, Any]) -> str:
    """The scripted Pipeline for ``plan`` (see the module docstring)."""
    w = _Writer()
    w.lines.append(plan_comment(plan))
    w.line(
        f"// Generated by CubePaaS DevOps for {json.dumps(inp.namespace)}/{json.dumps(inp.pipeline)} "
        f"run {inp.run}. Do not edit: the execution regenerates it."
    )
    ext = pod_extension(inp)
    steps = [s for st in plan["stages"] for s in st["steps"]]
    pod_args = [
        f"namespace: {_g(inp.agent_namespace or inp.namespace)}",
        f"serviceAccount: {_g(inp.service_account)}",
        "containers: [\n" + "".join(f"        {_container_template(s)},\n" for s in steps) + "    ]",
    ]
    if ext.volumes:
        vols = ", ".join(
            f"hostPathVolume({_args(hostPath=v.host_path, mountPath=v.mount_path)})" for v in ext.volumes
        )
        pod_args.append(f"volumes: [{vols}]")
    pod: dict[str, Any] = {"metadata": {"labels": {EXECUTION_LABEL: execution_label_value(inp.execution_id)}}}
    if ext.yaml:
        pod = _deep_merge(pod, yaml.safe_load(ext.yaml) or {})
    pod_args += [f"yaml: {_g(yaml.safe_dump(pod, sort_keys=True))}", "yamlMergeStrategy: merge()"]
    w.line("podTemplate(\n    " + ",\n    ".join(pod_args) + "\n) {")
    w.depth += 1

    def pipeline_body() -> None:
        for stage in plan["stages"]:
            _render_stage(w, stage)

    _wrap(
        w,
        ["node(POD_LABEL)", f"withEnv({_env_list(plan['env'])})", _timeout_head(plan["timeoutSeconds"])],
        pipeline_body,
    )
    w.depth -= 1
    w.line("}")
    return "\n".join(w.lines) + "\n"


def render_jenkinsfile(inp: JenkinsfileInput) -> str:
    """The Jenkinsfile (plan comment + scripted Pipeline) of one execution."""
    return render_plan(inp, build_plan(inp))


__all__ = [
    "CICD_VARIABLES",
    "PLAN_PREFIX",
    "JenkinsfileInput",
    "PodExtension",
    "PodVolume",
    "build_plan",
    "cicd_variables",
    "credential_id",
    "env_from_key",
    "groovy_string",
    "parse_plan",
    "pod_extension",
    "render_jenkinsfile",
    "skipped_stages",
    "substitute",
]
