"""Pipeline file text -> :class:`~crds.pipeline_file.PipelineConfig`, with errors a person can act on.

:func:`parse_pipeline_file` reports every problem at once as a :class:`PipelineFileError` whose
``errors`` are :class:`FileProblem` s carrying a path (``stages[1].steps[0]``), a 1-based line and
column, and a message; ``str(error)`` is one line per problem::

    stages[1].steps[0] (line 12, column 5): exactly one of runScriptConfig, ... is required

It never raises anything else, whatever the input (syntax errors, binary junk, huge or deeply nested
documents, alias bombs, duplicate keys, unknown tags).

YAML dialect: YAML 1.2 booleans (only ``true``/``false``; ``yes``, ``on``... stay strings) and no
implicit timestamps (``2024-01-01`` stays a string); anchors and aliases are allowed within a budget
of :data:`MAX_NODES` expanded nodes; duplicate keys are errors.

:func:`parse_pipeline_object` validates an already-decoded object (a Pipeline's inline ``config``, an
execution's ``pipelineConfig``). Its problems have a path but no position: ``line`` and ``column``
are 0, and ``str()`` leaves the position out.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from crds.pipeline_file import FileModel, PipelineConfig

DEFAULT_SOURCE: Final = ".cubepaas.devops.yml"
MAX_FILE_CHARS: Final = 1_000_000
MAX_NODES: Final = 100_000
MAX_DEPTH: Final = 64
ROOT_PATH: Final = "(root)"


@dataclass(frozen=True)
class FileProblem:
    """One problem in a pipeline file. ``line``/``column`` are 1-based; 0 means "no position"."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        if self.line <= 0:
            return f"{self.path}: {self.message}"
        return f"{self.path} (line {self.line}, column {self.column}): {self.message}"


class PipelineFileError(ValueError):
    """The pipeline file (or inline config) is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: list[FileProblem], source: str = DEFAULT_SOURCE) -> None:
        self.errors = list(errors)
        self.source = source
        super().__init__("\n".join(str(problem) for problem in self.errors))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errors, self.source))


# --- YAML loading ---------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and without implicit timestamps."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _mark_position(mark: yaml.Mark | None) -> tuple[int, int]:
    if mark is None:
        return 1, 1
    return mark.line + 1, mark.column + 1


class _TooBig(Exception):
    pass


def _check_nodes(root: Node) -> list[FileProblem]:
    """Duplicate keys, depth and the expanded-size budget (aliases count every time they are used)."""
    problems: list[FileProblem] = []
    visits = 0

    def walk(node: Node, path: str, depth: int) -> None:
        nonlocal visits
        visits += 1
        if visits > MAX_NODES:
            raise _TooBig(
                f"the document is too large: more than {MAX_NODES} values once aliases are expanded"
            )
        if depth > MAX_DEPTH:
            raise _TooBig(f"the document is nested too deeply (more than {MAX_DEPTH} levels)")
        if isinstance(node, MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                key_text = key.value if isinstance(key, ScalarNode) else None
                child = _join(path, key_text if key_text is not None else "?")
                if key_text is not None and key_text != "<<":
                    if key_text in seen:
                        line, column = _mark_position(key.start_mark)
                        problems.append(FileProblem(child, line, column, f"duplicate key {key_text!r}"))
                    seen.add(key_text)
                walk(value, child, depth + 1)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{path}[{index}]" if path != ROOT_PATH else f"[{index}]", depth + 1)

    walk(root, ROOT_PATH, 0)
    return problems


def _join(path: str, key: str) -> str:
    return key if path == ROOT_PATH else f"{path}.{key}"


def _line_of_offset(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _yaml_problem(exc: yaml.YAMLError, text: str) -> FileProblem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, column = _mark_position(mark)
        parts = [part for part in (exc.context, exc.problem) if part]
        message = "; ".join(parts) or "invalid YAML"
        return FileProblem(ROOT_PATH, line, column, f"invalid YAML: {message}")
    if isinstance(exc, yaml.reader.ReaderError):
        line, column = _line_of_offset(text, exc.position)
        return FileProblem(
            ROOT_PATH,
            line,
            column,
            f"invalid YAML: unacceptable character #x{exc.character:04x}"
            if isinstance(exc.character, int)
            else f"invalid YAML: {exc.reason}",
        )
    return FileProblem(ROOT_PATH, 1, 1, f"invalid YAML: {exc}")


def _load(text: str) -> tuple[Node | None, Any, list[FileProblem]]:
    """Compose and construct one document; problems instead of exceptions."""
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        return None, None, [_yaml_problem(exc, text)]
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            return None, None, [_yaml_problem(exc, text)]
        except RecursionError:
            return None, None, [FileProblem(ROOT_PATH, 1, 1, "the document is nested too deeply")]
        if node is None:
            return None, None, []
        try:
            problems = _check_nodes(node)
        except _TooBig as exc:
            line, column = _mark_position(node.start_mark)
            return node, None, [FileProblem(ROOT_PATH, line, column, str(exc))]
        try:
            data = loader.construct_document(node)
        except yaml.YAMLError as exc:
            return node, None, [*problems, _yaml_problem(exc, text)]
        except Exception as exc:
            line, column = _mark_position(node.start_mark)
            return (
                node,
                None,
                [*problems, FileProblem(ROOT_PATH, line, column, f"cannot read a value: {exc}")],
            )
        return node, data, problems
    finally:
        loader.dispose()


# --- mapping validation errors to places ----------------------------------------------------------


@functools.cache
def _all_aliases() -> list[str]:
    """Every field name of the pipeline-file models (for "did you mean" suggestions)."""
    names: set[str] = set()
    pending: list[type[BaseModel]] = [FileModel]
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        names.update(info.alias or name for name, info in model.model_fields.items())
    return sorted(names)


def _friendly(error: ErrorDetails, key: str | None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden" and key is not None:
        message = f"unknown field {key!r}"
        suggestion = difflib.get_close_matches(key, _all_aliases(), n=1, cutoff=0.75)
        if suggestion:
            message += f" (did you mean {suggestion[0]!r}?)"
        return message
    if kind == "missing":
        return f"{key!r} is required" if key is not None else "a required field is missing"
    ctx = error.get("ctx") or {}
    simple = {
        "string_type": "must be a string",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "list_type": "must be a list",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "model_attributes_type": "must be a mapping",
        "invalid-json-value": "must be plain data (mappings, lists, strings, numbers, booleans, null)",
    }
    if kind in simple:
        return simple[kind]
    if kind == "too_short" and "min_length" in ctx:
        return (
            "must not be empty" if ctx["min_length"] == 1 else f"must have at least {ctx['min_length']} items"
        )
    if kind == "too_long" and "max_length" in ctx:
        return f"must have at most {ctx['max_length']} items"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long" and "max_length" in ctx:
        return f"must be at most {ctx['max_length']} characters long"
    if kind == "enum" and "expected" in ctx:
        return f"must be one of {ctx['expected']}"
    return error["msg"]


def _format_loc(loc: Iterable[int | str]) -> str:
    path = ""
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
        elif _is_field_name(item):
            path += f".{item}" if path else item
    return path or ROOT_PATH


def _is_field_name(item: str) -> bool:
    return bool(item) and not any(ch in item for ch in "[](), ")


def _locate(root: Node, loc: tuple[int | str, ...]) -> tuple[Node, Node | None, int]:
    """The deepest node ``loc`` reaches, the key node of its last mapping step, and how many items matched."""
    node = root
    key_node: Node | None = None
    matched = 0
    for item in loc:
        if isinstance(node, MappingNode):
            found = None
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value == str(item):
                    found = (key, value)  # the last one wins, like the constructor
            if found is None:
                break
            key_node, node = found
        elif isinstance(node, SequenceNode) and isinstance(item, int) and 0 <= item < len(node.value):
            key_node, node = None, node.value[item]
        else:
            break
        matched += 1
    return node, key_node, matched


def _problems_from_validation(exc: ValidationError, root: Node | None) -> list[FileProblem]:
    problems: list[FileProblem] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(item for item in error["loc"] if isinstance(item, int) or _is_field_name(item))
        if error["type"] == "duplicate_stage" and isinstance((error.get("ctx") or {}).get("index"), int):
            loc = (*loc, error["ctx"]["index"], "name")  # point at the second stage's name
        key = str(loc[-1]) if loc and error["type"] in ("extra_forbidden", "missing") else None
        path = _format_loc(loc)
        message = _friendly(error, key)
        if root is None:
            problems.append(FileProblem(path, 0, 0, message))
            continue
        node, key_node, matched = _locate(root, loc)
        if error["type"] == "extra_forbidden" and key_node is not None and matched == len(loc):
            line, column = _mark_position(key_node.start_mark)
        else:
            line, column = _mark_position(node.start_mark)
        problems.append(FileProblem(path, line, column, message))
    return problems


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


# --- public API -----------------------------------------------------------------------------------


def parse_pipeline_file(text: str | bytes, *, source: str = DEFAULT_SOURCE) -> PipelineConfig:
    """Parse and validate a pipeline file; raises :class:`PipelineFileError` listing every problem."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PipelineFileError(
                [FileProblem(ROOT_PATH, 1, 1, f"the file is not UTF-8 text (byte {exc.start})")], source
            ) from None
    if not isinstance(text, str):
        raise PipelineFileError([FileProblem(ROOT_PATH, 1, 1, "the file must be text")], source)
    if len(text) > MAX_FILE_CHARS:
        raise PipelineFileError(
            [
                FileProblem(
                    ROOT_PATH,
                    1,
                    1,
                    f"the file is too large ({len(text)} characters, at most {MAX_FILE_CHARS})",
                )
            ],
            source,
        )
    node, data, problems = _load(text)
    if node is None and not problems:
        raise PipelineFileError(
            [FileProblem(ROOT_PATH, 1, 1, "the file is empty: it needs a stages list")], source
        )
    if node is None or (data is None and problems):
        raise PipelineFileError(problems, source)
    if not isinstance(data, dict):
        line, column = _mark_position(node.start_mark)
        problems.append(
            FileProblem(
                ROOT_PATH,
                line,
                column,
                f"the file must be a mapping with a stages list, got {_type_name(data)}",
            )
        )
        raise PipelineFileError(problems, source)
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems_from_validation(exc, node))
    except RecursionError:
        problems.append(FileProblem(ROOT_PATH, 1, 1, "the document is nested too deeply"))
    if problems:
        problems.sort(key=lambda p: (p.line, p.column))
        raise PipelineFileError(problems, source)
    return config


def parse_pipeline_object(obj: Any, *, source: str = "config") -> PipelineConfig:
    """Validate a decoded pipeline config (e.g. a Pipeline's inline ``config``).

    Raises :class:`PipelineFileError` whose problems have paths and ``line == column == 0``.
    """
    if not isinstance(obj, dict):
        raise PipelineFileError(
            [
                FileProblem(
                    ROOT_PATH, 0, 0, f"the config must be a mapping with a stages list, got {_type_name(obj)}"
                )
            ],
            source,
        )
    try:
        return PipelineConfig.model_validate(obj)
    except ValidationError as exc:
        raise PipelineFileError(_problems_from_validation(exc, None), source) from None
    except RecursionError:
        raise PipelineFileError(
            [FileProblem(ROOT_PATH, 0, 0, "the config is nested too deeply")], source
        ) from None


__all__ = [
    "DEFAULT_SOURCE",
    "MAX_FILE_CHARS",
    "MAX_NODES",
    "FileProblem",
    "PipelineFileError",
    "parse_pipeline_file",
    "parse_pipeline_object",
]
