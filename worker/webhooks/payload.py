"""Typed reads from a decoded JSON payload: a missing or mistyped field is a default, never a crash."""

from __future__ import annotations

import json
from typing import Any

from worker.webhooks.events import MalformedPayload


def decode(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``; :class:`MalformedPayload` for anything else."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MalformedPayload(
            f"the body is not JSON ({type(err).__name__} at position {getattr(err, 'pos', 0)})"
        ) from None
    if not isinstance(doc, dict):
        raise MalformedPayload("the body is not a JSON object")
    return doc


def get(doc: Any, *path: str | int) -> Any:
    """``doc[path[0]][path[1]]...``, or None when a step is missing or of the wrong type."""
    cur = doc
    for part in path:
        if isinstance(part, int):
            if not isinstance(cur, list) or not -len(cur) <= part < len(cur):
                return None
            cur = cur[part]
        else:
            if not isinstance(cur, dict):
                return None
            cur = cur.get(part)
    return cur


def text(doc: Any, *path: str | int) -> str:
    """A string field ("" when missing; numbers as text)."""
    value = get(doc, *path)
    if isinstance(value, bool):
        return ""
    if isinstance(value, str | int):
        return str(value)
    return ""


def items(doc: Any, *path: str | int) -> list[Any]:
    value = get(doc, *path)
    return value if isinstance(value, list) else []


__all__ = ["decode", "get", "items", "text"]
