"""Text that came from users, made safe to show: control characters escaped, never copied raw.

A NUL or an escape sequence in a CR field (``spec.pipelineName``, a git error, a Jenkins console
line...) must not reach ``status.message``, a terminal or the worker's log as is: it turns the log into a
binary file for grep, or rewrites a terminal line. :func:`escape_controls` is the one helper; it is
applied where such text leaves the product (the status models' message fields, the activity error
boundary, the worker's log formatter), so every message built from user input goes through it.

:data:`SafeMessage` is a ``str`` whose serialised form (what the apiserver receives) is escaped, however
the message was assembled.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import Field, PlainSerializer

#: C0 controls, DEL and the C1 controls (U+0080..U+009F): nothing a message should carry raw.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: The same without tab, newline and carriage return (multi-line text such as scripts and tracebacks).
_CONTROL_BUT_WHITESPACE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NAMED: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    return _NAMED.get(ch) or f"\\x{ord(ch):02x}"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character written as an escape (``\\x00``, ``\\n``, ``\\x1b``).

    ``keep_newlines`` keeps tab, newline and carriage return (for multi-line text such as a traceback).
    Printable text, including every non-ASCII letter, is unchanged; escaping twice changes nothing more.
    """
    pattern = _CONTROL_BUT_WHITESPACE if keep_newlines else _CONTROL
    return pattern.sub(_escape, text)


def first_control_character(text: str, *, allow_whitespace: bool = True) -> tuple[int, str] | None:
    """``(index, character)`` of the first control character (tab/newline/CR allowed by default)."""
    pattern = _CONTROL_BUT_WHITESPACE if allow_whitespace else _CONTROL
    match = pattern.search(text)
    return (match.start(), match.group(0)) if match else None


MAX_CONDITION_MESSAGE: Final = 32768


def _escape_condition_message(text: str) -> str:
    # Escaping lengthens the text: cut it so the apiserver never refuses a status for the limit.
    escaped = escape_controls(text)
    if len(escaped) <= MAX_CONDITION_MESSAGE:
        return escaped
    return escaped[: MAX_CONDITION_MESSAGE - 1] + "…"


SafeMessage = Annotated[str, PlainSerializer(escape_controls, return_type=str)]
"""A human-readable message without a length limit: stored and sent with its control characters
escaped."""
ConditionMessage = Annotated[
    str,
    Field(max_length=MAX_CONDITION_MESSAGE),
    PlainSerializer(
        _escape_condition_message, return_type=Annotated[str, Field(max_length=MAX_CONDITION_MESSAGE)]
    ),
]
"""A condition's message (at most 32 KiB), escaped like :data:`SafeMessage`."""


__all__ = [
    "MAX_CONDITION_MESSAGE",
    "ConditionMessage",
    "SafeMessage",
    "escape_controls",
    "first_control_character",
]
