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

from activities.jenkins.stepreport import REPORT_PREFIX
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
BUILDAH_IMAGE = "quay.io/buildah/stable:v1.38.1"
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
#: Set at run time by the latest publishImage step, for the steps after it (shell scripts, applyYaml
#: manifests, applyApp values).
PUBLISHED_IMAGE_VARIABLES = (
    "CICD_PUBLISHED_IMAGE_REPO",
    "CICD_PUBLISHED_IMAGE_TAG",
    "CICD_PUBLISHED_IMAGE_DIGEST",
)
#: Given by an image-push trigger (the run's spec.variables): the image whose push started the run.
IMAGE_TRIGGER_VARIABLES = (
    "CICD_IMAGE_REPO",
    "CICD_IMAGE_TAG",
    "CICD_IMAGE_DIGEST",
)
_CICD_REF = re.compile(r"\$\{(CICD_[A-Z_]+)\}")

#: Variables the registry credential of a publishImage step is bound to.
REGISTRY_USERNAME_VAR = "CUBEPAAS_REGISTRY_USERNAME"
REGISTRY_PASSWORD_VAR = "CUBEPAAS_REGISTRY_PASSWORD"

#: Where the latest publishImage step leaves its variables for the later steps: next to the workspace, on
#: the volume every container of the agent pod shares (Jenkins keeps its own step scripts in ``<ws>@tmp``).
PUBLISHED_IMAGE_FILE = "${WORKSPACE:-$PWD}@tmp/cubepaas/published-image.env"
_IMAGE_REPOSITORY = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)+$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

#: Default wait of deploy steps without a timeout of their own (or their stage's).
DEFAULT_DEPLOY_TIMEOUT_SECONDS = 300

#: Variables the clone step's git credential is bound to.
GIT_USERNAME_VAR = "GIT_USERNAME"
GIT_PASSWORD_VAR = "GIT_PASSWORD"

#: A Groovy string constant may not exceed 65535 bytes in the class file; longer literals are emitted as a
#: concatenation of chunks of this many code points (at most 6 modified-UTF-8 bytes each).
_CHUNK = 10_000


class JenkinsfileError(ValueError):
    """The pipeline file asks for something no script can do (the run fails with this message)."""


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
    """A hostPath cache volume of the agent pod and the step containers that mount it."""

    name: str
    host_path: str
    mount_path: str
    containers: list[str]


class PodExtension(BaseModel):
    """What :func:`pod_extension` adds to the agent pod: cache volumes, mounted only by the containers of the
    steps that cache them, and a pod YAML fragment merged into the template (node affinity)."""

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
    """CICD_LOCAL_REGISTRY: host[:port] publishImage steps push to unless pushRemote."""
    registry_credentials: dict[str, str] = Field(default_factory=dict)
    """Registry host -> usernamePassword credential publishImage steps log in with for it."""
    insecure_registries: list[str] = Field(default_factory=list)
    """Registry hosts reached over plain HTTP or unverified TLS."""
    catalog_credentials: dict[str, str] = Field(default_factory=dict)
    """SourceCodeCredential name -> usernamePassword credential publishCatalog steps push with."""
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
    """Every path some step caches (pipeline, stage or step level), once, in the order of first use."""
    seen: list[str] = []
    for i, j, _, _ in config.iter_steps():
        seen += [p for p in config.step_cache_paths(i, j) if p not in seen]
    return seen


def step_node(stage_index: int, step_index: int) -> str:
    """The plan's node (and container) name of a step; ``stage_index`` counts the clone stage as 0."""
    return f"step-{stage_index}-{step_index}"


def pod_extension(inp: JenkinsfileInput, nodes: frozenset[str] | None = None) -> PodExtension:
    """Build caches: a hostPath volume for every cached path, mounted in the containers of the steps (of
    ``nodes``, the steps this run has) that cache it, and node affinity toward the nodes that ran this
    pipeline most recently (where those directories are warm)."""
    if inp.cache_root is None:
        return PodExtension()
    users: dict[str, list[str]] = {}
    for i, j, _, _ in inp.config.iter_steps():
        node = step_node(i + 1, j)
        if nodes is not None and node not in nodes:
            continue
        for path in inp.config.step_cache_paths(i, j):
            users.setdefault(path, []).append(node)
    if not users:
        return PodExtension()
    volumes = [
        PodVolume(
            name=f"cache-{hashlib.sha256(p.encode()).hexdigest()[:12]}",
            host_path=cache_host_path(inp.cache_root, inp.namespace, inp.pipeline, p),
            mount_path=p,
            containers=containers,
        )
        for p, containers in users.items()
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


def cache_pod_yaml(volumes: Sequence[PodVolume]) -> dict[str, Any]:
    """The pod fragment of the cache volumes: hostPath volumes plus each step container's own mounts (the
    plugin merges containers by name), so a step that turned its cache off does not see it."""
    mounts: dict[str, list[dict[str, str]]] = {}
    for v in volumes:
        for c in v.containers:
            mounts.setdefault(c, []).append({"name": v.name, "mountPath": v.mount_path})
    return {
        "spec": {
            "volumes": [
                {"name": v.name, "hostPath": {"path": v.host_path, "type": "DirectoryOrCreate"}}
                for v in volumes
            ],
            "containers": [{"name": c, "volumeMounts": m} for c, m in sorted(mounts.items())],
        }
    }


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


def published_image_prelude() -> str:
    """Every generated script (and every shell runScript) starts with the latest publishImage's variables."""
    return (
        f'cubepaas_image_env="{PUBLISHED_IMAGE_FILE}"\n'
        'if [ -f "$cubepaas_image_env" ]; then . "$cubepaas_image_env"; fi\n'
    )


def _tmpdir_prelude() -> str:
    return 'cubepaas_tmp="$(mktemp -d)"\ntrap \'rm -rf "$cubepaas_tmp"\' EXIT\n'


def substitution_function() -> str:
    """``cubepaas_subst IN OUT [json]``: ``${CICD_...}`` references replaced by the step's environment at run
    time (so the published image's digest reaches manifests and values); unset variables stay as written."""
    names = " ".join((*CICD_VARIABLES, *IMAGE_TRIGGER_VARIABLES, *PUBLISHED_IMAGE_VARIABLES))
    return (
        "cubepaas_subst() {\n"
        '  cp "$1" "$2.part"\n'
        f"  for cubepaas_var in {names}; do\n"
        '    eval "cubepaas_isset=\\${$cubepaas_var+x}"\n'
        '    [ -n "$cubepaas_isset" ] || continue\n'
        '    eval "cubepaas_val=\\$$cubepaas_var"\n'
        '    if [ "${3:-}" = json ]; then\n'
        '      cubepaas_val="$(printf \'%s\' "$cubepaas_val" | sed \'s/[\\\\"]/\\\\&/g\')"\n'
        "    fi\n"
        "    cubepaas_val=\"$(printf '%s' \"$cubepaas_val\" | sed 's/[&|\\\\]/\\\\&/g')\"\n"
        '    sed "s|\\${$cubepaas_var}|$cubepaas_val|g" "$2.part" > "$2.next"\n'
        '    mv "$2.next" "$2.part"\n'
        "  done\n"
        '  mv "$2.part" "$2"\n'
        "}\n"
    )


def _fail_with(what: str) -> str:
    """Shell that prints the first error line of ``$cubepaas_tmp/err`` as the step's error mark and fails."""
    return (
        'cat "$cubepaas_tmp/err" >&2\n'
        'cubepaas_why="$(grep -m1 -i \'error\' "$cubepaas_tmp/err" || head -n1 "$cubepaas_tmp/err")"\n'
        f"printf '{REPORT_PREFIX}error %s\\n' \"{what}: $cubepaas_why\"\n"
        "exit 1\n"
    )


def run_script(cfg: RunScriptConfig) -> str:
    script = cfg.shell_script
    if script.startswith("#!"):
        return script
    return "set -e\n" + published_image_prelude() + script + ("" if script.endswith("\n") else "\n")


def image_registry(cfg: PublishImageConfig, local_registry: str) -> str:
    """The registry host a publishImage step pushes to: `registry` when pushRemote, else the project's."""
    return ((cfg.registry or "") if cfg.push_remote else local_registry).rstrip("/")


def image_reference(cfg: PublishImageConfig, variables: dict[str, str]) -> tuple[str, str, str]:
    """``(registry, repository, tag)`` a publishImage step pushes (the repository includes the registry).

    The tag is ``name[:tag]`` relative to the project's registry (CICD_LOCAL_REGISTRY), or to ``registry``
    when ``pushRemote``; a tag that already starts with that registry is taken as is.
    """
    tag = substitute(cfg.tag, variables)
    registry = image_registry(cfg, variables.get("CICD_LOCAL_REGISTRY", ""))
    if not registry:
        raise JenkinsfileError(
            "publishImageConfig: no registry to push to (pushRemote needs registry; the project has no local"
            " registry)"
        )
    name = tag.removeprefix(registry + "/")
    last = name.rsplit("/", 1)[-1]
    repo, image_tag = name.rsplit(":", 1) if ":" in last else (name, "latest")
    repository = f"{registry}/{repo}"
    if not _IMAGE_REPOSITORY.match(repository) or not _IMAGE_TAG.match(image_tag):
        raise JenkinsfileError(
            f"publishImageConfig: {repository}:{image_tag} is not a valid image reference (repository:"
            " lower-case"
            " letters, digits, . _ - /; tag: letters, digits, . _ -, at most 128)"
        )
    return registry, repository, image_tag


def publish_image_script(
    cfg: PublishImageConfig, variables: dict[str, str], insecure: bool, login: bool
) -> str:
    """buildah without a daemon: ``bud`` (vfs storage, chroot isolation) and ``push``, in a storage of its own
    that the step removes; the digest the registry stores is reported and exported to the later steps."""
    registry, repository, tag = image_reference(cfg, variables)
    image = f"{repository}:{tag}"
    tls = " --tls-verify=false" if insecure else ""
    auth = ' --authfile "$cubepaas_tmp/auth.json"' if login else ""
    lines = [
        "set -e",
        published_image_prelude().rstrip("\n"),
        _tmpdir_prelude().rstrip("\n"),
        "export BUILDAH_ISOLATION=chroot",
        'cubepaas_buildah() { buildah --root "$cubepaas_tmp/root" --runroot "$cubepaas_tmp/run"'
        ' --storage-driver vfs "$@"; }',
    ]
    if login:
        lines.append(
            f"printf '%s' \"${REGISTRY_PASSWORD_VAR}\" | buildah login{auth}{tls} --username"
            f' "${REGISTRY_USERNAME_VAR}" --password-stdin {_q(registry)}'
        )
    lines += [
        f"cubepaas_buildah bud --isolation chroot{tls}{auth}"
        f" -f {_q(substitute(cfg.dockerfile_path, variables))}"
        f" -t {_q(image)} {_q(substitute(cfg.build_context, variables))}",
        f'cubepaas_buildah push{tls}{auth} --digestfile "$cubepaas_tmp/digest" {_q(image)}',
        'cubepaas_digest="$(cat "$cubepaas_tmp/digest")"',
        'case "$cubepaas_digest" in sha256:*) ;; *)'
        f" printf '{REPORT_PREFIX}error %s\\n' 'buildah push reported no digest'; exit 1 ;; esac",
        'mkdir -p "$(dirname "$cubepaas_image_env")"',
        "printf 'export CICD_PUBLISHED_IMAGE_REPO=%s CICD_PUBLISHED_IMAGE_TAG=%s"
        " CICD_PUBLISHED_IMAGE_DIGEST=%s\\n'"
        f' {_q(_q(repository))} {_q(_q(tag))} "$cubepaas_digest" > "$cubepaas_image_env"',
        f"printf '{REPORT_PREFIX}image repository=%s tag=%s digest=%s\\n' {_q(repository)} {_q(tag)}"
        ' "$cubepaas_digest"',
        f'echo "Pushed {image}@$cubepaas_digest"',
    ]
    return "\n".join(lines) + "\n"


def _deploy_timeout(step: Step, stage_timeout: int | None) -> int:
    """How long a deploy step waits for its workloads: its own timeout, else its stage's, else 5 minutes."""
    if step.timeout is not None:
        return step.timeout.seconds
    return stage_timeout or DEFAULT_DEPLOY_TIMEOUT_SECONDS


#: Prints ``Kind/name namespace`` per applied object, for a single object and for a List alike.
_APPLIED_TEMPLATE = (
    '{{if .items}}{{range .items}}{{.kind}}/{{.metadata.name}} {{.metadata.namespace}}{{"\\n"}}{{end}}'
    '{{else}}{{.kind}}/{{.metadata.name}} {{.metadata.namespace}}{{"\\n"}}{{end}}'
)


def apply_yaml_script(
    cfg: ApplyYamlConfig, variables: dict[str, str], field_manager: str, timeout: int
) -> str:
    """Server-side apply with the pipeline's field manager, then wait for the applied workloads to roll out
    within the step's time; a refused object or a stuck rollout fails the step, naming it."""
    ns = f" -n {_q(substitute(cfg.namespace, variables))}" if cfg.namespace else ""
    lines = [
        "set -e",
        published_image_prelude().rstrip("\n"),
        _tmpdir_prelude().rstrip("\n"),
        substitution_function().rstrip("\n"),
        f"cubepaas_deadline=$(( $(date +%s) + {int(timeout)} ))",
    ]
    if cfg.path is not None:
        path = _q(substitute(cfg.path, variables))
        lines += [
            f"if [ -d {path} ]; then",
            f"  find {path} -maxdepth 1 -type f"
            " \\( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \\) | sort |"
            " while IFS= read -r cubepaas_f; do printf -- '---\\n'; cat \"$cubepaas_f\"; printf '\\n'; done"
            ' > "$cubepaas_tmp/in.yaml"',
            "else",
            f'  cat {path} > "$cubepaas_tmp/in.yaml"',
            "fi",
        ]
    else:
        lines.append(f"printf '%s\\n' {_q(cfg.content or '')} > \"$cubepaas_tmp/in.yaml\"")
    lines += [
        'cubepaas_subst "$cubepaas_tmp/in.yaml" "$cubepaas_tmp/manifests.yaml"',
        f"if ! kubectl apply --server-side --force-conflicts --field-manager={_q(field_manager)}{ns}"
        f' -f "$cubepaas_tmp/manifests.yaml" -o go-template={_q(_APPLIED_TEMPLATE)} > "$cubepaas_tmp/applied"'
        ' 2> "$cubepaas_tmp/err"; then',
        _indent(_fail_with("kubectl apply was refused")),
        "fi",
        'cat "$cubepaas_tmp/err" >&2',
        "sed 's/^/applied /' \"$cubepaas_tmp/applied\"",
        "while read -r cubepaas_obj cubepaas_ns; do",
        '  case "$cubepaas_obj" in Deployment/*|StatefulSet/*|DaemonSet/*) ;; *) continue ;; esac',
        "  cubepaas_left=$(( cubepaas_deadline - $(date +%s) ))",
        '  if [ "$cubepaas_left" -lt 1 ]; then cubepaas_left=1; fi',
        '  if ! kubectl rollout status "$cubepaas_obj" -n "$cubepaas_ns" --timeout="${cubepaas_left}s"'
        " < /dev/null; then",
        f"    printf '{REPORT_PREFIX}error %s\\n'"
        f' "$cubepaas_obj in namespace $cubepaas_ns did not roll out within {int(timeout)}s"',
        "    exit 1",
        "  fi",
        'done < "$cubepaas_tmp/applied"',
    ]
    return "\n".join(lines) + "\n"


def apply_app_script(cfg: ApplyAppConfig, variables: dict[str, str], namespace: str, timeout: int) -> str:
    """``helm upgrade --install --atomic``: a failed install is uninstalled and a failed upgrade rolled back
    to the release's previous revision, within the step's time; the revision is reported."""
    name = substitute(cfg.name, variables)
    ns = substitute(cfg.target_namespace, variables) if cfg.target_namespace else namespace
    # Keep a margin so that helm's own rollback finishes before the step's timeout stops it.
    helm_timeout = max(timeout - min(60, timeout // 5), 1)
    cmd = f"helm upgrade --install {_q(name)} {_q(substitute(cfg.chart, variables))}"
    if cfg.chart_repository:
        cmd += f" --repo {_q(substitute(cfg.chart_repository, variables))}"
    if cfg.version:
        cmd += f" --version {_q(substitute(cfg.version, variables))}"
    cmd += f' --namespace {_q(ns)} --values "$cubepaas_tmp/values.json"'
    cmd += f" --atomic --wait --timeout {helm_timeout}s"
    lines = [
        "set -e",
        published_image_prelude().rstrip("\n"),
        _tmpdir_prelude().rstrip("\n"),
        substitution_function().rstrip("\n"),
        # JSON is YAML: the values go to helm as a file, exactly as written in the pipeline file.
        f"printf '%s\\n' {_q(json.dumps(cfg.values, sort_keys=True))} > \"$cubepaas_tmp/in.json\"",
        'cubepaas_subst "$cubepaas_tmp/in.json" "$cubepaas_tmp/values.json" json',
        f'if ! {cmd} 2> "$cubepaas_tmp/err"; then',
        _indent(_fail_with(f"helm upgrade --install {name} failed (rolled back)")),
        "fi",
        'cat "$cubepaas_tmp/err" >&2',
        f"cubepaas_revision=\"$(helm status {_q(name)} --namespace {_q(ns)} | sed -n 's/^REVISION: *//p')\"",
        f"printf '{REPORT_PREFIX}release name=%s namespace=%s revision=%s\\n' {_q(name)} {_q(ns)}"
        ' "$cubepaas_revision"',
    ]
    return "\n".join(lines) + "\n"


def publish_catalog_script(
    cfg: PublishCatalogConfig, variables: dict[str, str], with_credentials: bool
) -> str:
    """Copy the chart folder to ``templates/<template>/<version>`` of the catalog branch and push it. The same
    content again is a no-op; different content for a published version is refused unless ``overwrite``."""
    src = substitute(cfg.path, variables).rstrip("/") or "."
    version = substitute(cfg.version, variables)
    template = substitute(cfg.catalog_template, variables)
    dest = f"templates/{template}/{version}"
    url, branch = substitute(cfg.git_url, variables), substitute(cfg.git_branch, variables)
    author = cfg.git_author or "CubePaaS DevOps"
    email = cfg.git_email or "devops@cubepaas.local"
    refused = (
        f"catalog template {template} version {version} is already published with different content"
        " (set overwrite: true to replace it)"
    )
    lines = ["set -e"]
    if with_credentials:
        lines.append(_askpass_prelude().rstrip("\n"))
    lines += [
        published_image_prelude().rstrip("\n"),
        'cubepaas_src="$(pwd)"/' + _q(src),
        'cubepaas_catalog="$(mktemp -d)"',
        'trap \'rm -rf "$cubepaas_catalog" "${cubepaas_askpass:-}"\' EXIT',
        'cd "$cubepaas_catalog"',
        "git init -q .",
        "cubepaas_rc=0",
        f"git ls-remote --exit-code --heads {_q(url)} {_q(branch)} > /dev/null || cubepaas_rc=$?",
        'if [ "$cubepaas_rc" -eq 0 ]; then',
        f"  git fetch -q {_q(url)} {_q('refs/heads/' + branch)}",
        f"  git checkout -q -B {_q(branch)} FETCH_HEAD",
        'elif [ "$cubepaas_rc" -eq 2 ]; then',
        f"  git checkout -q --orphan {_q(branch)}",
        "else",
        f"  printf '{REPORT_PREFIX}error %s\\n' {_q(f'cannot read the catalog repository {url}')}",
        "  exit 1",
        "fi",
        f"if [ -d {_q(dest)} ]; then",
        f'  if diff -r "$cubepaas_src" {_q(dest)} > /dev/null; then',
        f"    echo {_q(f'{template} {version} is already published with this content')}",
        "    exit 0",
        "  fi",
    ]
    if not cfg.overwrite:
        lines += [f"  printf '{REPORT_PREFIX}error %s\\n' {_q(refused)}", "  exit 1"]
    lines += [
        "fi",
        f"rm -rf {_q(dest)}",
        f"mkdir -p {_q(dest)}",
        f'cp -R "$cubepaas_src"/. {_q(dest)}/',
        f"git add -A {_q(dest)}",
        f"git -c user.name={_q(author)} -c user.email={_q(email)}"
        f" commit -q -m {_q(f'Publish {template} {version}')}",
        f"git push -q {_q(url)} {_q(f'HEAD:refs/heads/{branch}')}",
        f"echo {_q(f'Published {template} {version} to {url} ({branch})')}",
    ]
    return "\n".join(lines) + "\n"


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.rstrip("\n").split("\n"))


# ------------------------------------------------------------------------------------------- plan


def step_resources(step: Resources | None, executor: Resources | None) -> dict[str, str]:
    """A step container's requests and limits: the step's own, field by field over the executor's."""
    merged: dict[str, str] = {}
    for source in (executor, step):
        if source is not None:
            merged.update(source.model_dump(by_alias=True, exclude_none=True))
    return merged


def _registry_login(inp: JenkinsfileInput, registry: str) -> dict[str, str] | None:
    cred = inp.registry_credentials.get(registry)
    if cred is None:
        return None
    return {
        "id": cred,
        "kind": "usernamePassword",
        "usernameVariable": REGISTRY_USERNAME_VAR,
        "passwordVariable": REGISTRY_PASSWORD_VAR,
    }


def _git_login(cred: str) -> dict[str, str]:
    return {
        "id": cred,
        "kind": "usernamePassword",
        "usernameVariable": GIT_USERNAME_VAR,
        "passwordVariable": GIT_PASSWORD_VAR,
    }


def _step_plan(
    inp: JenkinsfileInput,
    stage_index: int,
    step_index: int,
    step: Step,
    variables: dict[str, str],
    stage_timeout: int | None,
) -> dict[str, Any]:
    cfg = step.config
    credentials: list[dict[str, str]] = []
    where = f"stages[{stage_index - 1}].steps[{step_index}]"
    try:
        if isinstance(cfg, RunScriptConfig):
            image, script = substitute(cfg.image, variables), run_script(cfg)
        elif isinstance(cfg, PublishImageConfig):
            registry = image_reference(cfg, variables)[0]
            login = _registry_login(inp, registry)
            credentials += [login] if login else []
            insecure = registry in inp.insecure_registries
            image, script = BUILDAH_IMAGE, publish_image_script(cfg, variables, insecure, login is not None)
        elif isinstance(cfg, ApplyYamlConfig):
            timeout = _deploy_timeout(step, stage_timeout)
            manager = inp.pipeline
            image, script = KUBECTL_IMAGE, apply_yaml_script(cfg, variables, manager, timeout)
        elif isinstance(cfg, ApplyAppConfig):
            timeout = _deploy_timeout(step, stage_timeout)
            image, script = HELM_IMAGE, apply_app_script(cfg, variables, inp.namespace, timeout)
        else:
            cred = inp.catalog_credentials.get(cfg.source_code_credential or "")
            if cfg.source_code_credential and cred is None:
                raise JenkinsfileError(
                    f"no Jenkins credential for SourceCodeCredential {cfg.source_code_credential}"
                )
            credentials += [_git_login(cred)] if cred else []
            image, script = CATALOG_IMAGE, publish_catalog_script(cfg, variables, cred is not None)
    except JenkinsfileError as err:
        raise JenkinsfileError(f"{where}: {err}") from None
    if not inp.secrets_withheld:  # a pull request from a fork gets no secrets
        for ref in step.env_from:
            key = env_from_key(ref.source_name, ref.source_key)
            env_cred = inp.env_from_credentials.get(key)
            if env_cred is None:
                raise JenkinsfileError(f"{where}: no Jenkins credential for envFrom {key}")
            credentials.append({"id": env_cred, "kind": "string", "variable": ref.variable})
    return {
        "index": step_index,
        "node": step_node(stage_index, step_index),
        "type": step.type.value,
        "image": image,
        "script": script,
        "env": {k: substitute(v, variables) for k, v in step.env.items()},
        "credentials": credentials,
        "timeoutSeconds": step.timeout.seconds if step.timeout else None,
        "privileged": step.privileged,
        "resources": step_resources(step.resources, inp.executor_resources),
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
        "node": step_node(0, 0),
        "type": "clone",
        "image": CLONE_IMAGE,
        "script": clone_script(inp.git_url, inp.commit, inp.ref, bool(inp.git_credential_id)),
        "env": {},
        "credentials": clone_creds,
        "timeoutSeconds": None,
        "privileged": False,
        "resources": step_resources(None, inp.executor_resources),
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
                _step_plan(inp, i, j, step, variables, stage.timeout.seconds if stage.timeout else None)
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
    steps = [s for st in plan["stages"] for s in st["steps"]]
    ext = pod_extension(inp, frozenset(str(s["node"]) for s in steps))
    pod_args = [
        f"namespace: {_g(inp.agent_namespace or inp.namespace)}",
        f"serviceAccount: {_g(inp.service_account)}",
        "containers: [\n" + "".join(f"        {_container_template(s)},\n" for s in steps) + "    ]",
    ]
    pod: dict[str, Any] = {"metadata": {"labels": {EXECUTION_LABEL: execution_label_value(inp.execution_id)}}}
    if ext.volumes:
        pod = _deep_merge(pod, cache_pod_yaml(ext.volumes))
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
