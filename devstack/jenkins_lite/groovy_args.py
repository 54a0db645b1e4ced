"""Read the literal arguments of one Groovy call in a Pipeline script (``podTemplate(...)``), as data.

A small recursive-descent reader for the Groovy subset a pod template is written in: named arguments,
single- and double-quoted strings (double-quoted only without ``$`` interpolation), triple-quoted
strings, ``+`` concatenation of strings, integers, ``true``/``false``/``null``, lists, maps and nested
calls such as ``containerTemplate(name: 'x')`` or ``merge()``. Anything else is a :class:`GroovyError`
naming the position: jenkins-lite never evaluates Groovy, it only reads literals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "\\": "\\", "'": "'", '"': '"', "$": "$"}


class GroovyError(ValueError):
    pass


@dataclass
class Call:
    """A call expression: ``name(positional..., key: value...)``."""

    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


class _Reader:
    def __init__(self, text: str, pos: int = 0) -> None:
        self.text = text
        self.pos = pos

    def error(self, what: str) -> GroovyError:
        line = self.text.count("\n", 0, self.pos) + 1
        return GroovyError(f"{what} at line {line} of the pipeline script")

    def skip(self) -> None:
        """Whitespace and comments."""
        t = self.text
        while self.pos < len(t):
            if t[self.pos].isspace():
                self.pos += 1
            elif t.startswith("//", self.pos):
                end = t.find("\n", self.pos)
                self.pos = len(t) if end < 0 else end + 1
            elif t.startswith("/*", self.pos):
                end = t.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("unterminated comment")
                self.pos = end + 2
            else:
                return

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos : self.pos + 1]

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.error(f"expected {ch!r}")
        self.pos += 1

    def identifier(self) -> str:
        self.skip()
        start = self.pos
        t = self.text
        while self.pos < len(t) and (t[self.pos].isalnum() or t[self.pos] in "_$"):
            self.pos += 1
        if start == self.pos or t[start].isdigit():
            raise self.error("expected a name")
        return t[start : self.pos]

    def string(self) -> str:
        self.skip()
        t = self.text
        quote = t[self.pos]
        triple = t.startswith(quote * 3, self.pos)
        end_mark = quote * 3 if triple else quote
        self.pos += 3 if triple else 1
        out: list[str] = []
        while True:
            if self.pos >= len(t):
                raise self.error("unterminated string")
            if t.startswith(end_mark, self.pos):
                self.pos += len(end_mark)
                return "".join(out)
            ch = t[self.pos]
            if ch == "\\":
                out.append(self._escape())
                continue
            if quote == '"' and ch == "$":
                raise self.error("a GString with ${...} interpolation is not a literal")
            if ch in "\r\n" and not triple:
                raise self.error("line break in a string")
            out.append(ch)
            self.pos += 1

    def _escape(self) -> str:
        t = self.text
        nxt = t[self.pos + 1 : self.pos + 2]
        if nxt == "u":
            code = self._hex4(self.pos + 2)
            self.pos += 6
            if 0xD800 <= code < 0xDC00 and t.startswith("\\u", self.pos):
                low = self._hex4(self.pos + 2)
                if 0xDC00 <= low < 0xE000:
                    self.pos += 6
                    return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
            return chr(code)
        if nxt in _ESCAPES:
            self.pos += 2
            return _ESCAPES[nxt]
        if nxt == "\n":  # line continuation inside a string
            self.pos += 2
            return ""
        raise self.error(f"unknown escape \\{nxt}")

    def _hex4(self, at: int) -> int:
        digits = self.text[at : at + 4]
        try:
            if len(digits) != 4:
                raise ValueError(digits)
            return int(digits, 16)
        except ValueError:
            raise self.error("bad \\u escape") from None

    def value(self) -> Any:
        first = self.term()
        while self.peek() == "+":
            self.pos += 1
            nxt = self.term()
            if not (isinstance(first, str) and isinstance(nxt, str)):
                raise self.error("'+' joins only strings")
            first += nxt
        return first

    def term(self) -> Any:
        ch = self.peek()
        if ch in ("'", '"'):
            return self.string()
        if ch == "(":
            self.pos += 1
            inner = self.value()
            self.expect(")")
            return inner
        if ch == "[":
            return self.collection()
        if ch == "-" or ch.isdigit():
            return self.number()
        if ch.isalpha() or ch == "_":
            name = self.identifier()
            if name in ("true", "false"):
                return name == "true"
            if name == "null":
                return None
            if self.peek() == "(":
                self.pos += 1
                return self.call_args(name)
            raise self.error(f"{name!r} is not a literal")
        raise self.error(f"unexpected {ch!r}" if ch else "unexpected end of script")

    def number(self) -> int:
        self.skip()
        start = self.pos
        if self.text[self.pos] == "-":
            self.pos += 1
        while self.pos < len(self.text) and self.text[self.pos].isdigit():
            self.pos += 1
        try:
            return int(self.text[start : self.pos])
        except ValueError:
            raise self.error("bad number") from None

    def _key(self) -> str | None:
        """A ``key:`` ahead (name or string), consumed; None (nothing consumed) when there is none."""
        save = self.pos
        ch = self.peek()
        try:
            key = self.string() if ch in ("'", '"') else self.identifier()
        except GroovyError:
            self.pos = save
            return None
        if self.peek() == ":":
            self.pos += 1
            return key
        self.pos = save
        return None

    def collection(self) -> list[Any] | dict[str, Any]:
        self.expect("[")
        if self.peek() == ":":
            self.pos += 1
            self.expect("]")
            return {}
        items: list[Any] = []
        entries: dict[str, Any] = {}
        while self.peek() != "]":
            key = self._key()
            if key is not None:
                entries[key] = self.value()
            else:
                items.append(self.value())
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "]":
                raise self.error("expected ',' or ']'")
        self.pos += 1
        if items and entries:
            raise self.error("a list mixes values and key: value entries")
        return entries if entries else items

    def call_args(self, name: str) -> Call:
        call = Call(name)
        while self.peek() != ")":
            key = self._key()
            if key is not None:
                call.kwargs[key] = self.value()
            else:
                call.args.append(self.value())
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != ")":
                raise self.error("expected ',' or ')'")
        self.pos += 1
        return call


def _skip_literal(r: _Reader) -> None:
    t = r.text
    if t[r.pos] in "'\"":
        r.string()
    else:
        r.pos += 1


def find_call(script: str, name: str) -> Call | None:
    """The first top-level-or-nested call ``name(...)`` outside strings and comments, read as data."""
    r = _Reader(script)
    t = script
    while True:
        r.skip()
        if r.pos >= len(t):
            return None
        ch = t[r.pos]
        if ch in "'\"":
            r.string()
        elif ch.isalpha() or ch == "_":
            word = r.identifier()
            if word == name and r.peek() == "(":
                r.pos += 1
                return r.call_args(name)
        else:
            _skip_literal(r)


__all__ = ["Call", "GroovyError", "find_call"]
