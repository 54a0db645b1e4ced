"""Logs: the build console and each step's complete log (``progressiveText``), streamed or as text."""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO
from urllib.parse import quote

import requests

from activities.errors import JenkinsPermanentError, JenkinsTransientError
from activities.jenkins.logs import (
    ConsoleChunk,
    LogCursor,
    ProgressiveAnswer,
    StepLogChunk,
    read_nodes,
    read_until_idle,
)
from activities.jenkins.transport import JenkinsTransport
from crds.reasons import Reason


class LogsMixin(JenkinsTransport):
    """The console and step logs of a build."""

    def _progressive(self, path: str, what: str) -> Callable[[int], ProgressiveAnswer]:
        def fetch(start: int) -> ProgressiveAnswer:
            response = self._get(path, what, params={"start": str(start)})
            size = response.headers.get("X-Text-Size")
            data = response.content
            more = response.headers.get("X-More-Data", "").lower() == "true"
            return ProgressiveAnswer(data, int(size) if size is not None else start + len(data), more)

        return fetch

    def read_console(self, job: str, number: int, start: int = 0) -> ConsoleChunk:
        """The build console from byte ``start``: ``(text, next_offset, more)``; more = it may grow."""
        fetch = self._progressive(
            f"{self._job(job)}{number}/logText/progressiveText", f"console of {job} #{number}"
        )
        return read_until_idle(fetch, start)

    def read_console_complete(self, job: str, number: int, timeout: float = 3600.0) -> str:
        """The whole console, waiting until the build stops writing (or ``timeout``)."""
        return "".join(self.follow_console(job, number, timeout=timeout))

    def follow_console(self, job: str, number: int, start: int = 0, timeout: float = 3600.0) -> Iterator[str]:
        deadline = time.monotonic() + timeout
        offset = start
        while True:
            chunk = self.read_console(job, number, offset)
            if chunk.text:
                yield chunk.text
            offset = chunk.next_offset
            if not chunk.more:
                return
            if time.monotonic() >= deadline:
                raise JenkinsTransientError(f"console of {job} #{number} still growing after {timeout}s")
            time.sleep(self._poll)

    def step_flow_nodes(
        self, job: str, number: int, step_node_id: str
    ) -> tuple[list[str], dict[str, bool], bool]:
        """The flow nodes of a step's stage (node describe ``stageFlowNodes``), which of them finished, and
        whether the stage itself still runs."""
        path = f"{self._job(job)}{number}/execution/node/{quote(step_node_id, safe='')}/wfapi/describe"
        node = self._get_json_or_none(path, f"node {step_node_id} of {job} #{number}")
        if node is None:
            raise JenkinsPermanentError(
                f"node {step_node_id} of {job} #{number} does not exist", reason=Reason.JENKINS_NOT_FOUND
            )
        ids: list[str] = []
        finished: dict[str, bool] = {}
        for fn in node.get("stageFlowNodes", []) or []:
            fid = str(fn.get("id"))
            ids.append(fid)
            finished[fid] = str(fn.get("status") or "") not in ("IN_PROGRESS", "PAUSED_PENDING_INPUT", "")
        running = str(node.get("status") or "") in ("IN_PROGRESS", "PAUSED_PENDING_INPUT")
        return ids, finished, running

    def read_step_log(
        self, job: str, number: int, step_node_id: str, cursor: LogCursor | None = None
    ) -> StepLogChunk:
        """A step's log from ``cursor``: the logs of its flow nodes, each complete, in order."""
        ids, finished, running = self.step_flow_nodes(job, number, step_node_id)

        def fetch_node(node_id: str) -> Callable[[int], ProgressiveAnswer]:
            node = quote(node_id, safe="")
            path = f"{self._job(job)}{number}/execution/node/{node}/log/logText/progressiveText"
            return self._progressive(path, f"log of node {node_id} of {job} #{number}")

        chunk = read_nodes(ids, finished, fetch_node, cursor)
        return StepLogChunk(chunk.text, chunk.cursor, chunk.more or running)

    def copy_step_log(
        self,
        job: str,
        number: int,
        step_node_id: str,
        out: BinaryIO,
        *,
        chunk: int = 1 << 20,
        timeout: float = 3600.0,
    ) -> int:
        """Stream a step's whole log into ``out`` in bounded memory; returns the bytes written.

        Each flow node's log is read with ``progressiveText`` as a streamed response, ``chunk`` bytes at a
        time, from the offset reached so far (``X-Text-Size``), until it is complete (no ``X-More-Data``).
        A fault mid-stream is retried from that offset, so nothing is lost or written twice.
        """
        deadline = time.monotonic() + timeout
        written = 0
        offsets: dict[str, int] = {}
        while True:
            ids, finished, running = self.step_flow_nodes(job, number, step_node_id)
            pending = False
            for node_id in ids:
                node = quote(node_id, safe="")
                path = f"{self._job(job)}{number}/execution/node/{node}/log/logText/progressiveText"
                while True:
                    start = offsets.get(node_id, 0)
                    more, copied = self._retrying(
                        f"log of node {node_id} of {job} #{number}",
                        functools.partial(self._stream_progressive, path, start, out, chunk),
                    )
                    offsets[node_id] = start + copied
                    written += copied
                    if not more or copied == 0:
                        break
                if more or not finished.get(node_id, True):
                    pending = True
            if not (pending or running):
                return written
            if time.monotonic() >= deadline:
                raise JenkinsTransientError(f"log of step node {step_node_id} still growing after {timeout}s")
            time.sleep(self._poll)

    def _stream_progressive(self, path: str, start: int, out: BinaryIO, chunk: int) -> tuple[bool, int]:
        """One streamed ``progressiveText`` answer from ``start`` into ``out``: (more may come, bytes)."""
        req = requests.Request("GET", self._abs(path), params={"start": str(start)})
        response: requests.Response = self._j.jenkins_request(req, stream=True)
        try:
            size = response.headers.get("X-Text-Size")
            more = response.headers.get("X-More-Data", "").lower() == "true"
            mark = out.tell()
            copied = 0
            try:
                for part in response.iter_content(chunk_size=chunk):
                    out.write(part)
                    copied += len(part)
            except Exception:
                out.seek(mark)  # a broken stream: forget its partial bytes; the retry starts at ``start``
                out.truncate()
                raise
            if size is not None and int(size) - start != copied:
                out.seek(mark)
                out.truncate()
                raise JenkinsTransientError(
                    f"{path}: got {copied} bytes, X-Text-Size says {int(size) - start}"
                )
            return more, copied
        finally:
            response.close()

    def read_step_log_complete(
        self, job: str, number: int, step_node_id: str, timeout: float = 3600.0
    ) -> str:
        """A step's whole log as text, waiting until the step ends (or ``timeout``); for small logs —
        the store-log activity streams with :meth:`copy_step_log` instead."""
        buffer = io.BytesIO()
        self.copy_step_log(job, number, step_node_id, buffer, timeout=timeout)
        return buffer.getvalue().decode("utf-8", errors="replace")


__all__ = ["LogsMixin"]
