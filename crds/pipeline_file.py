"""The pipeline file (``.cubepaas.devops.yml``) as pydantic models, with the behaviour the engine needs.

The same models validate the file a user commits (via :func:`crds.parse.parse_pipeline_file`, which
adds line numbers to errors), the inline ``config`` of a Pipeline, and the ``pipelineConfig`` snapshot
of a PipelineExecution, and they generate both the CRD schema of those fields and the editor JSON
Schema (:mod:`crds.generate`).

Rules a user meets (also in the field descriptions):

- Unknown fields are errors everywhere in the file (``extra="forbid"``).
- A step has exactly one step-type block (``runScriptConfig``, ``publishImageConfig``,
  ``applyYamlConfig``, ``applyAppConfig``, ``publishCatalogConfig``).
- ``branch`` and ``event`` constraints accept a string, a list, or ``{include, exclude}`` of fnmatch
  globs; ``exclude`` wins, an empty ``include`` matches everything. They are stored and emitted in the
  canonical ``{include, exclude}`` form (the CRD schema only accepts that form).
- Durations are ``90s``, ``10m``, ``1h``, ``1h30m`` (h, m, s in that order, each at most once, > 0).
- Stage names: 1 to 100 characters, unique, no control characters (newline, tab...), and not of the
  form ``step-<i>-<j>``, which is reserved for the per-step stages of the generated Jenkinsfile.
- Quantities (``cpuLimit: 1``, ``memoryLimit: 1Gi``) and env values (``CGO_ENABLED: 0``) may be
  written as YAML numbers; they are stored as strings.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from crds.reasons import GitEvent, NotificationCondition
from crds.text import first_control_character

MAX_STAGES: Final = 50
MAX_STEPS_PER_STAGE: Final = 50
MAX_STAGE_NAME_LENGTH: Final = 100
MAX_PATTERNS: Final = 50
MAX_SCRIPT_LENGTH: Final = 256 * 1024
DEFAULT_TIMEOUT: Final = "60m"
RESERVED_STAGE_NAME: Final = re.compile(r"^step-[0-9]+-[0-9]+$")

# Regexes below are written in the common subset of Python `re`, Go RE2 (apiserver `pattern` and CEL
# `matches`) and ECMAScript (editors' JSON Schema validation).
_NO_CONTROL_PATTERN: Final = r"^[^\x00-\x1F\x7F]*$"
#: Free text (scripts, manifests, images, paths...): every control character but tab, newline and CR is
#: refused. They cannot be passed to a process (a NUL), and they turn logs and terminals into garbage.
_TEXT_PATTERN: Final = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
_DURATION_PATTERN: Final = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
_DURATION_RE: Final = re.compile(r"^(?:([0-9]{1,5})h)?(?:([0-9]{1,6})m)?(?:([0-9]{1,8})s)?$")
_QUANTITY_PATTERN: Final = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_ENV_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"

STEP_TYPE_FIELDS: Final = (
    "runScriptConfig",
    "publishImageConfig",
    "applyYamlConfig",
    "applyAppConfig",
    "publishCatalogConfig",
)
EXACTLY_ONE_STEP_TYPE: Final = "exactly one of " + ", ".join(STEP_TYPE_FIELDS) + " is required"


class FileModel(BaseModel):
    """Base of the pipeline-file models: camelCase names, unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-compatible form (camelCase, no ``None``), as stored in the CRs."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- scalar types ---------------------------------------------------------------------------------


class Duration(str):
    """A duration such as ``90s``, ``10m``, ``1h`` or ``1h30m``; :attr:`seconds` is its length."""

    __slots__ = ()
    EXAMPLES: ClassVar[str] = "90s, 10m, 1h or 1h30m"

    @property
    def seconds(self) -> int:
        match = _DURATION_RE.match(self)
        assert match is not None  # guaranteed by parse()
        hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
        return hours * 3600 + minutes * 60 + seconds

    @classmethod
    def parse(cls, value: object) -> Duration:
        """Validate ``value``; raises ``ValueError`` with a message meant for users."""
        if isinstance(value, bool) or not isinstance(value, str):
            hint = (
                f" (add a unit, e.g. {value}m)"
                if isinstance(value, int) and not isinstance(value, bool)
                else ""
            )
            raise ValueError(f"must be a duration like {cls.EXAMPLES}{hint}")
        text = value.strip()
        match = _DURATION_RE.match(text)
        if not text or match is None:
            raise ValueError(f"must be a duration like {cls.EXAMPLES}, got {value!r}")
        result = cls(text)
        if result.seconds <= 0:
            raise ValueError(f"must be longer than 0s, got {value!r}")
        return result

    @classmethod
    def from_seconds(cls, seconds: int) -> Duration:
        """Canonical form: ``5400`` -> ``1h30m``; ``0`` -> ``0s`` (not a valid timeout)."""
        hours, rest = divmod(max(int(seconds), 0), 3600)
        minutes, secs = divmod(rest, 60)
        text = (
            (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
        )
        return cls(text or "0s")

    @classmethod
    def _validate(cls, value: object) -> Duration:
        if isinstance(value, Duration):
            return value
        try:
            return cls.parse(value)
        except ValueError as exc:
            raise PydanticCustomError("duration", str(exc)) from None

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="always"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": _DURATION_PATTERN,
            "minLength": 2,
            "maxLength": 32,
            "description": f"A duration like {cls.EXAMPLES}.",
        }


def _scalar_to_str(value: object) -> object:
    """YAML numbers and booleans where a string is expected (``CGO_ENABLED: 0``, ``cpuLimit: 1``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _check_quantity(value: str) -> str:
    if not re.match(_QUANTITY_PATTERN, value):
        raise PydanticCustomError(
            "quantity",
            "must be a Kubernetes quantity like 500m, 1, 1.5, 512Mi or 2Gi, got {value}",
            {"value": repr(value)},
        )
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_scalar_to_str),
    AfterValidator(_check_quantity),
    WithJsonSchema({"type": "string", "pattern": _QUANTITY_PATTERN, "maxLength": 64}, mode="serialization"),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": _QUANTITY_PATTERN}, {"type": "number"}]}, mode="validation"
    ),
]
"""A Kubernetes resource quantity (``500m``, ``1``, ``1Gi``); numbers are accepted and kept as strings."""


def _check_env_name(value: str) -> str:
    if not re.match(_ENV_NAME_PATTERN, value) or len(value) > 253:
        raise PydanticCustomError(
            "env_name",
            "env names must be letters, digits and _, not starting with a digit, got {value}",
            {"value": repr(value)},
        )
    return value


EnvName = Annotated[
    str,
    AfterValidator(_check_env_name),
    WithJsonSchema({"type": "string", "pattern": _ENV_NAME_PATTERN, "maxLength": 253}),
]


def _check_text(value: str) -> str:
    found = first_control_character(value)
    if found is not None:
        index, char = found
        raise PydanticCustomError(
            "control_character",
            "must not contain control characters other than tab, newline and carriage return;"
            " found U+{code} at character {index}",
            {"code": f"{ord(char):04X}", "index": index},
        )
    return value


_TEXT_SCHEMA: Final = {"pattern": _TEXT_PATTERN}
Text = Annotated[str, AfterValidator(_check_text), Field(json_schema_extra=_TEXT_SCHEMA)]
"""Free text that goes into the Jenkinsfile: no control characters but tab, newline and CR."""
EnvValue = Annotated[
    str,
    BeforeValidator(_scalar_to_str),
    AfterValidator(_check_text),
    WithJsonSchema({"type": "string", **_TEXT_SCHEMA}, mode="serialization"),
    WithJsonSchema({"type": ["string", "number", "boolean"], **_TEXT_SCHEMA}, mode="validation"),
]
NonEmpty = Annotated[
    str, StringConstraints(min_length=1), AfterValidator(_check_text), Field(json_schema_extra=_TEXT_SCHEMA)
]
Pattern = Annotated[
    str,
    StringConstraints(min_length=1, max_length=253),
    AfterValidator(_check_text),
    Field(json_schema_extra=_TEXT_SCHEMA),
]


def _check_stage_name(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("stage_name", "stage name must not be empty")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise PydanticCustomError(
            "stage_name",
            "stage name must not contain newlines or other control characters, got {value}",
            {"value": repr(value)},
        )
    if RESERVED_STAGE_NAME.match(value):
        raise PydanticCustomError(
            "stage_name",
            "stage name {value} is reserved: names of the form step-<stage>-<step> are used for the steps"
            " of the generated Jenkinsfile",
            {"value": repr(value)},
        )
    return value


StageName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_STAGE_NAME_LENGTH),
    AfterValidator(_check_stage_name),
    Field(
        description=(
            "Name of the stage, shown in the execution's status: unique in the file, 1-100 characters, no"
            " control characters, and not of the form step-<i>-<j> (reserved for the steps)."
        ),
        json_schema_extra={
            "pattern": _NO_CONTROL_PATTERN,
            "x-kubernetes-validations": [
                {
                    "rule": "!self.matches('^step-[0-9]+-[0-9]+$')",
                    "message": "stage names of the form step-<stage>-<step> are reserved for the steps",
                }
            ],
        },
    ),
]


# --- constraints ----------------------------------------------------------------------------------


class Constraint(FileModel):
    """Which values (branch names, events) something applies to.

    Written as a string, a list of strings, or ``{include, exclude}``; each entry is an fnmatch glob
    (``release/*``). A value matches when it matches some ``include`` glob (or ``include`` is empty)
    and no ``exclude`` glob: exclude wins.
    """

    include: list[Pattern] = Field(default_factory=list, max_length=MAX_PATTERNS)
    """Globs that select values; empty selects every value."""
    exclude: list[Pattern] = Field(default_factory=list, max_length=MAX_PATTERNS)
    """Globs that deselect values, even ones selected by include."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"include": [value]}
        if isinstance(value, list):
            return {"include": value}
        if isinstance(value, dict | BaseModel):
            return value
        raise PydanticCustomError(
            "constraint",
            "must be a string, a list of strings, or a mapping with include and/or exclude lists",
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if handler.mode == "validation":
            # The file accepts the shorthands; stored objects (serialization) only use the mapping.
            resolved = handler.resolve_ref_schema(json_schema)
            mapping = dict(resolved)
            description = mapping.pop("description", None)
            resolved.clear()
            resolved["anyOf"] = [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}},
                mapping,
            ]
            if description:
                resolved["description"] = description
        return json_schema

    def matches(self, value: str | None) -> bool:
        """Whether ``value`` passes; ``None`` (no such value, e.g. the branch of a tag) always passes."""
        if value is None:
            return True
        if any(fnmatch.fnmatchcase(value, pattern) for pattern in self.exclude):
            return False
        return not self.include or any(fnmatch.fnmatchcase(value, pattern) for pattern in self.include)


class EventConstraint(Constraint):
    """Which git events (push, pull_request, tag, manual) something applies to; globs allowed."""

    @model_validator(mode="after")
    def _known_events(self) -> EventConstraint:
        events = [e.value for e in GitEvent]
        for pattern in [*self.include, *self.exclude]:
            if not fnmatch.filter(events, pattern):
                raise PydanticCustomError(
                    "event",
                    "{pattern} matches no event; events are " + ", ".join(events),
                    {"pattern": repr(pattern)},
                )
        return self


class When(FileModel):
    """Conditions under which a stage or step runs; both must match."""

    branch: Constraint | None = None
    """Branches (globs) the stage or step runs for."""
    event: EventConstraint | None = None
    """Events (push, pull_request, tag, manual) the stage or step runs for."""

    def matches(self, branch: str | None, event: str | None) -> bool:
        return (self.branch is None or self.branch.matches(branch)) and (
            self.event is None or self.event.matches(event)
        )


# --- steps ----------------------------------------------------------------------------------------


class RunScriptConfig(FileModel):
    """Run a shell script in a container image."""

    image: NonEmpty
    """Container image the script runs in, e.g. golang:1.22."""
    shell_script: Annotated[Text, StringConstraints(min_length=1, max_length=MAX_SCRIPT_LENGTH)]
    """The script, run with /bin/sh -e in the workspace."""


class PublishImageConfig(FileModel):
    """Build an image from a Dockerfile and push it."""

    dockerfile_path: NonEmpty = "./Dockerfile"
    """Path of the Dockerfile in the repository."""
    build_context: NonEmpty = "."
    """Build context directory in the repository."""
    tag: NonEmpty
    """Image tag, e.g. app:${CICD_GIT_COMMIT}; variables are substituted."""
    push_remote: bool = False
    """Push to the remote registry named by registry instead of the project's local registry."""
    registry: Text | None = None
    """Registry host to push to when pushRemote is true."""


class ApplyYamlConfig(FileModel):
    """Apply Kubernetes manifests, from a file in the repository or inline."""

    path: Text | None = None
    """Path of a manifest file or directory in the repository (exactly one of path and content)."""
    content: Text | None = None
    """Inline manifest YAML (exactly one of path and content)."""
    namespace: Text | None = None
    """Namespace to apply into; defaults to the manifests' own."""

    @model_validator(mode="after")
    def _path_or_content(self) -> ApplyYamlConfig:
        if (self.path is None) == (self.content is None):
            raise PydanticCustomError("path_or_content", "exactly one of path and content is required")
        return self


class ApplyAppConfig(FileModel):
    """Install or upgrade a Helm chart."""

    chart: NonEmpty
    """Chart folder in the repository (./charts/app), an OCI reference (oci://host/path/app), or the chart's
    name in chartRepository."""
    chart_repository: Text | None = None
    """URL of a chart repository that holds chart (helm --repo)."""
    name: NonEmpty
    """Release name."""
    version: Text | None = None
    """Chart version (for charts from a chart repository or an OCI registry)."""
    target_namespace: Text | None = None
    """Namespace of the release."""
    values: dict[str, JsonValue] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Values passed to the chart (free-form)."""


class PublishCatalogConfig(FileModel):
    """Publish a chart into a catalog git repository."""

    path: NonEmpty
    """Path of the chart in the repository."""
    catalog_template: NonEmpty
    """Name of the template in the catalog."""
    version: NonEmpty
    """Version to publish."""
    git_url: NonEmpty
    """URL of the catalog git repository."""
    git_branch: NonEmpty
    """Branch of the catalog repository to push to."""
    git_author: Text | None = None
    """Commit author name."""
    git_email: Text | None = None
    """Commit author email."""
    source_code_credential: Text | None = None
    """SourceCodeCredential (in the project namespace) used to push; none for repositories open to push."""
    overwrite: bool = False
    """Replace a published version whose content differs; otherwise such a publish fails."""


class EnvFrom(FileModel):
    """Expose one key of a Secret in the project namespace as an environment variable."""

    source_name: NonEmpty
    """Name of the Secret."""
    source_key: NonEmpty
    """Key in the Secret."""
    target_key: EnvName | None = None
    """Name of the environment variable; defaults to sourceKey."""

    @property
    def variable(self) -> str:
        return self.target_key or self.source_key


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise PydanticCustomError(
            "cache_path", "cache paths must be absolute, got {path}", {"path": repr(path)}
        )
    return path


CachePath = Annotated[str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_absolute)]


class Cache(FileModel):
    """Directories kept between runs on the same node (hostPath cache), for the pipeline, a stage or a step.

    A step's cached paths are those of the pipeline, its stage and its own, in that order; ``enabled:
    false`` at a level drops what it would inherit (and its own paths), so a stage or a step can opt out.
    """

    enabled: bool = True
    """Whether this level caches at all; false turns off the paths inherited from the levels above."""
    paths: list[CachePath] = Field(default_factory=list, max_length=20)
    """Absolute paths inside the step containers, e.g. /root/.cache/go-build."""


def effective_cache_paths(*levels: Cache | None) -> list[str]:
    """The cached paths of a step given the caches of its levels, outermost first (pipeline, stage, step)."""
    paths: list[str] = []
    for level in levels:
        if level is None:
            continue
        if not level.enabled:
            paths = []
            continue
        paths += [p for p in level.paths if p not in paths]
    return paths


class Resources(FileModel):
    """CPU and memory of the step's container."""

    cpu_request: Quantity | None = None
    cpu_limit: Quantity | None = None
    memory_request: Quantity | None = None
    memory_limit: Quantity | None = None


class StepType(StrEnum):
    """Step kinds as named in the Jenkinsfile plan (``docs/jenkins-plan.md``)."""

    RUN_SCRIPT = "runScript"
    PUBLISH_IMAGE = "publishImage"
    APPLY_YAML = "applyYaml"
    APPLY_APP = "applyApp"
    PUBLISH_CATALOG = "publishCatalog"


StepConfig = RunScriptConfig | PublishImageConfig | ApplyYamlConfig | ApplyAppConfig | PublishCatalogConfig


class Step(FileModel):
    """One step: exactly one step-type block plus common settings. Steps of a stage run in parallel."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": " + ".join(f"(has(self.{name}) ? 1 : 0)" for name in STEP_TYPE_FIELDS) + " == 1",
                    "message": EXACTLY_ONE_STEP_TYPE,
                }
            ]
        }
    )

    run_script_config: RunScriptConfig | None = None
    publish_image_config: PublishImageConfig | None = None
    apply_yaml_config: ApplyYamlConfig | None = None
    apply_app_config: ApplyAppConfig | None = None
    publish_catalog_config: PublishCatalogConfig | None = None
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=100)
    """Environment variables of the step."""
    env_from: list[EnvFrom] = Field(default_factory=list, max_length=50)
    """Environment variables from Secrets (not injected for pull_request events)."""
    cache: Cache | None = None
    """This step's cache; it inherits the pipeline's and its stage's (enabled: false turns them off)."""
    timeout: Duration | None = None
    """Step timeout; on expiry the step is aborted."""
    resources: Resources | None = None
    privileged: bool = False
    """Run the step's container privileged."""
    when: When | None = None
    """Run the step only for these branches/events."""

    @model_validator(mode="after")
    def _exactly_one_type(self) -> Step:
        present = [name for name in STEP_TYPE_FIELDS if getattr(self, _SNAKE[name]) is not None]
        if len(present) != 1:
            message = EXACTLY_ONE_STEP_TYPE
            if present:
                message += ", got " + " and ".join(present)
            raise PydanticCustomError("step_type", message)
        return self

    @property
    def config(self) -> StepConfig:
        """The step-type block."""
        for name in STEP_TYPE_FIELDS:
            value: StepConfig | None = getattr(self, _SNAKE[name])
            if value is not None:
                return value
        raise AssertionError("validated Step without a step type")

    @property
    def type(self) -> StepType:
        return _STEP_TYPES[type(self.config)]

    def applies(self, branch: str | None, event: str | None) -> bool:
        return self.when is None or self.when.matches(branch, event)

    def display_name(self) -> str:
        """Short label for the execution status, e.g. ``Run script (golang:1.22)``."""
        config = self.config
        if isinstance(config, RunScriptConfig):
            label, detail = "Run script", config.image
        elif isinstance(config, PublishImageConfig):
            label, detail = "Publish image", config.tag
        elif isinstance(config, ApplyYamlConfig):
            label, detail = "Apply YAML", config.path or "inline"
        elif isinstance(config, ApplyAppConfig):
            label, detail = "Apply app", config.name
        else:
            label, detail = "Publish catalog", config.catalog_template
        text = f"{label} ({detail})"
        return text if len(text) <= 100 else text[:99] + "…"


_SNAKE: Final = {
    "runScriptConfig": "run_script_config",
    "publishImageConfig": "publish_image_config",
    "applyYamlConfig": "apply_yaml_config",
    "applyAppConfig": "apply_app_config",
    "publishCatalogConfig": "publish_catalog_config",
}
_STEP_TYPES: Final[dict[type[FileModel], StepType]] = {
    RunScriptConfig: StepType.RUN_SCRIPT,
    PublishImageConfig: StepType.PUBLISH_IMAGE,
    ApplyYamlConfig: StepType.APPLY_YAML,
    ApplyAppConfig: StepType.APPLY_APP,
    PublishCatalogConfig: StepType.PUBLISH_CATALOG,
}


# --- stages and the file --------------------------------------------------------------------------


class Stage(FileModel):
    """A stage: its steps run in parallel; stages run in order."""

    name: StageName
    when: When | None = None
    """Run the stage only for these branches/events; otherwise it is Skipped."""
    approval: bool = False
    """Wait for an approve signal before the stage starts."""
    timeout: Duration | None = None
    """Stage timeout; on expiry its running steps are aborted."""
    cache: Cache | None = None
    """Cache of every step of the stage (adds to the pipeline's; enabled: false turns it off)."""
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS_PER_STAGE)

    def applies(self, branch: str | None, event: str | None) -> bool:
        return self.when is None or self.when.matches(branch, event)


class Recipient(FileModel):
    recipient: NonEmpty
    """Address for the notifier: a channel, an email address..."""
    notifier: NonEmpty
    """Name of the notifier (PipelineSetting spec.notifiers[].name) to send through."""
    condition: list[NotificationCondition] | None = Field(default=None, max_length=4)
    """When this recipient is told; empty = the notification's condition."""


class Notification(FileModel):
    """Who is told when a run ends, and when."""

    recipients: list[Recipient] = Field(default_factory=list, max_length=50)
    condition: list[NotificationCondition] = Field(default_factory=list, max_length=4)
    """Run outcomes that send the notification (default Failed and Changed); Changed = the outcome
    differs from the previous finished run of the pipeline."""
    message: Text | None = None
    """Message text; ${CICD_...} variables are substituted (a link to the run is always added)."""


class PipelineConfig(FileModel):
    """The pipeline file ``.cubepaas.devops.yml``."""

    model_config = ConfigDict(title="CubePaaS DevOps pipeline file")

    stages: list[Stage] = Field(
        min_length=1,
        max_length=MAX_STAGES,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Stages, run in order."""
    timeout: Duration = Duration(DEFAULT_TIMEOUT)
    """Timeout of the whole run (default 60m); on expiry the run is aborted."""
    branch: Constraint | None = None
    """Branches the pipeline runs for."""
    event: EventConstraint | None = None
    """Events the pipeline runs for."""
    notification: Notification | None = None
    cache: Cache | None = None
    """Cache of every step of the pipeline (stages and steps add paths or turn it off)."""

    @field_validator("stages")
    @classmethod
    def _unique_stage_names(cls, stages: list[Stage]) -> list[Stage]:
        seen: dict[str, int] = {}
        for index, stage in enumerate(stages):
            if stage.name in seen:
                raise PydanticCustomError(
                    "duplicate_stage",
                    "duplicate stage name {name} (stages[{first}] and stages[{index}])",
                    {"name": repr(stage.name), "first": seen[stage.name], "index": index},
                )
            seen[stage.name] = index
        return stages

    def applies(self, branch: str | None, event: str | None) -> bool:
        """Whether the pipeline-level ``branch``/``event`` constraints let a run start."""
        return (self.branch is None or self.branch.matches(branch)) and (
            self.event is None or self.event.matches(event)
        )

    def stage_applies(self, stage: int | Stage, branch: str | None, event: str | None) -> bool:
        """Whether ``stage`` (index or object) runs for ``branch``/``event`` (pipeline and stage level)."""
        target = self.stages[stage] if isinstance(stage, int) else stage
        return self.applies(branch, event) and target.applies(branch, event)

    def iter_steps(self) -> Iterator[tuple[int, int, Stage, Step]]:
        """``(stage_index, step_index, stage, step)`` for every step, in file order."""
        for i, stage in enumerate(self.stages):
            for j, step in enumerate(stage.steps):
                yield i, j, stage, step

    def step_cache_paths(self, stage: int, step: int) -> list[str]:
        """The cached paths of ``stages[stage].steps[step]`` (file indexes), from all three levels."""
        st = self.stages[stage]
        return effective_cache_paths(self.cache, st.cache, st.steps[step].cache)

    @property
    def timeout_seconds(self) -> int:
        return self.timeout.seconds


__all__ = [
    "DEFAULT_TIMEOUT",
    "EXACTLY_ONE_STEP_TYPE",
    "MAX_STAGES",
    "MAX_STAGE_NAME_LENGTH",
    "MAX_STEPS_PER_STAGE",
    "RESERVED_STAGE_NAME",
    "STEP_TYPE_FIELDS",
    "ApplyAppConfig",
    "ApplyYamlConfig",
    "Cache",
    "Constraint",
    "Duration",
    "EnvFrom",
    "EventConstraint",
    "FileModel",
    "Notification",
    "PipelineConfig",
    "PublishCatalogConfig",
    "PublishImageConfig",
    "Quantity",
    "Recipient",
    "Resources",
    "RunScriptConfig",
    "Stage",
    "Step",
    "StepConfig",
    "StepType",
    "When",
]
