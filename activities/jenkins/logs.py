"""Complete log reading: the build console and each step's flow-node log, never truncated.

Jenkins serves logs as "progressive text" (``hudson.console.AnnotatedLargeText``): ``GET
<log>/progressiveText?start=<byte offset>`` answers the bytes from that offset to the current end, with
``X-Text-Size`` (the offset to ask next) and ``X-More-Data: true`` while the log may still grow. The
build console is ``job/<n>/<b>/logText/progressiveText``; a flow node's log is its ``LogAction``
(url name ``log``) at ``job/<n>/<b>/execution/node/<id>/log/logText/progressiveText``. The Stage View's
``wfapi/log`` answer is *not* used for content: it returns only the last 10 KiB (``hasMore: true`` when
cut).

Offsets are byte offsets. A chunk that ends inside a multi-byte UTF-8 sequence (the writer was mid-way)
is cut before that sequence and the offset advanced only over what was decoded, so concatenating chunks
reproduces the log byte for byte.

A step's log is the concatenation of the logs of its flow nodes (``stageFlowNodes`` of the step's stage,
in order: in jenkins-lite exactly one, the ``sh`` node; in Jenkins the wrappers may add nodes). The
:class:`LogCursor` records the offset reached in each node so an activity can heartbeat it and resume.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pydantic import BaseModel, Field


class ProgressiveAnswer(NamedTuple):
    """One progressiveText answer: raw bytes, ``X-Text-Size`` and ``X-More-Data``."""

    data: bytes
    text_size: int
    more: bool


#: Fetch ``progressiveText?start=<offset>`` of one log.
Fetch = Callable[[int], ProgressiveAnswer]


#: The longest console line quoted in a message.
MAX_QUOTED_LINE = 300


def last_line(text: str) -> str:
    """The console's last line that says something, shortened to quote it in a message.

    Jenkins closes every console with ``Finished: <RESULT>``; the line before says why (e.g. that the
    build cannot resume after a restart), so that one is taken when there is one.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[-1].startswith("Finished: "):
        lines.pop()
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= MAX_QUOTED_LINE else line[: MAX_QUOTED_LINE - 1] + "…"


class ConsoleChunk(NamedTuple):
    """Text read from the build console, the offset to continue from, and whether more may come."""

    text: str
    next_offset: int
    more: bool


def complete_utf8_prefix(data: bytes, final: bool) -> int:
    """Length of the longest prefix of ``data`` that does not end inside a UTF-8 sequence.

    When ``final`` (nothing more will be written) the whole buffer counts.
    """
    if final or not data:
        return len(data)
    # Look back at most 3 bytes for the start of an incomplete sequence.
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0b1100_0000 == 0b1000_0000:  # continuation byte: keep looking for the lead byte
            continue
        if byte < 0x80:
            return len(data)
        need = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
        return len(data) if back >= need else len(data) - back
    return len(data)


def read_progressive(fetch: Fetch, start: int) -> ConsoleChunk:
    """Read once from ``start``: the available text, the next offset, whether the log may grow."""
    answer = fetch(start)
    data = answer.data
    # X-Text-Size is where the server stopped; the bytes we got are exactly start..text_size.
    end = answer.text_size if answer.text_size >= start else start + len(data)
    if end - start != len(data):
        # A server that sent fewer/more bytes than it claims: trust the bytes we have.
        end = start + len(data)
    keep = complete_utf8_prefix(data, final=not answer.more)
    text = data[:keep].decode("utf-8", errors="replace")
    return ConsoleChunk(text, end - (len(data) - keep), answer.more)


def read_until_idle(fetch: Fetch, start: int) -> ConsoleChunk:
    """Read repeatedly from ``start`` while the server keeps returning bytes (a very large log may be served
    in parts); stop when an answer adds nothing or the log is complete."""
    parts: list[str] = []
    offset = start
    more = True
    while True:
        chunk = read_progressive(fetch, offset)
        progressed = chunk.next_offset > offset
        parts.append(chunk.text)
        offset = chunk.next_offset
        more = chunk.more
        if not more or not progressed:
            break
    return ConsoleChunk("".join(parts), offset, more)


class LogCursor(BaseModel):
    """Where reading a step's log got to: per flow node, the byte offset reached and whether that node's
    log is complete. Serializable (an activity heartbeats it and resumes from it)."""

    offsets: dict[str, int] = Field(default_factory=dict)
    done: list[str] = Field(default_factory=list)

    def offset(self, node_id: str) -> int:
        return self.offsets.get(node_id, 0)


class StepLogChunk(NamedTuple):
    """Text read from a step's log, the cursor to continue from, and whether more may come."""

    text: str
    cursor: LogCursor
    more: bool


def read_nodes(
    node_ids: list[str],
    node_finished: dict[str, bool],
    fetch_node: Callable[[str], Fetch],
    cursor: LogCursor | None,
) -> StepLogChunk:
    """Read the logs of a step's flow nodes in order, from ``cursor``.

    A node whose log may still grow stops the read there, so text from a later node never comes before
    the end of an earlier one. ``more`` is False only when every node's log is complete and all the nodes
    have finished.
    """
    cur = cursor.model_copy(deep=True) if cursor is not None else LogCursor()
    parts: list[str] = []
    for node_id in node_ids:
        if node_id in cur.done:
            continue
        chunk = read_until_idle(fetch_node(node_id), cur.offset(node_id))
        parts.append(chunk.text)
        cur.offsets[node_id] = chunk.next_offset
        if chunk.more or not node_finished.get(node_id, False):
            return StepLogChunk("".join(parts), cur, True)
        cur.done.append(node_id)
    return StepLogChunk("".join(parts), cur, False)
