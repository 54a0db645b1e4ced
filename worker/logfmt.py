"""The worker's log lines: one per record, with control characters from user input escaped.

Names, git errors and Jenkins answers end up in log messages; a NUL among them makes the log a binary
file for grep, an escape sequence rewrites the operator's terminal and a newline forges a log line. The
formatter escapes the message (newlines too); a traceback keeps its newlines and loses the rest.
"""

from __future__ import annotations

import logging

from crds.text import escape_controls

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class EscapingFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose message and exception text carry no raw control characters."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        # The message is escaped above; what follows it (traceback, stack) keeps its newlines only.
        return escape_controls(super().format(record), keep_newlines=True)


def configure(level: str) -> None:
    """Root logging to stderr through :class:`EscapingFormatter`."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


__all__ = ["FORMAT", "EscapingFormatter", "configure"]
