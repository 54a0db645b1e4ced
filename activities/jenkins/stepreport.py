"""What a built-in step reports about its work, through its console log.

The generated scripts of publishImage, applyYaml, applyApp and publishCatalog print one marked line per
fact (``##cubepaas <kind> key=value ...``, or ``##cubepaas error <text>``). The console log is the one
channel every Jenkins has (no artifact plugin, no extra API), the log is copied to the object store anyway,
and the activity that copies it reads the marks back while the file is on local disk. Only the steps whose
scripts we generate are read (a user's runScript cannot fake an image), and the last mark of a kind wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import IO, Final

from crds.execution import HelmRelease, PublishedImage
from crds.messages import StepReport

REPORT_PREFIX: Final = "##cubepaas "
MAX_ERROR_LENGTH: Final = 1000
_PAIR = re.compile(r"([a-z]+)=(\S+)")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _pairs(text: str) -> dict[str, str]:
    return dict(_PAIR.findall(text))


def read_report(lines: Iterable[str]) -> StepReport:
    """The report in a step's console log (lines with or without their ends)."""
    report = StepReport()
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line.startswith(REPORT_PREFIX):
            continue
        kind, _, rest = line[len(REPORT_PREFIX) :].partition(" ")
        if kind == "error" and rest.strip():
            text = rest.strip()
            report.error = text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"
        elif kind == "image":
            pairs = _pairs(rest)
            if {"repository", "tag", "digest"} <= pairs.keys() and _DIGEST.match(pairs["digest"]):
                report.image = PublishedImage(
                    repository=pairs["repository"], tag=pairs["tag"], digest=pairs["digest"]
                )
        elif kind == "release":
            pairs = _pairs(rest)
            if {"name", "namespace", "revision"} <= pairs.keys() and pairs["revision"].isdigit():
                report.release = HelmRelease(
                    name=pairs["name"], namespace=pairs["namespace"], revision=int(pairs["revision"])
                )
    return report


def read_report_file(spool: IO[bytes]) -> StepReport:
    """:func:`read_report` of a log file, line by line from its start (memory bounded by the longest line)."""
    spool.seek(0)
    return read_report(line.decode("utf-8", "replace") for line in spool)


__all__ = ["REPORT_PREFIX", "StepReport", "read_report", "read_report_file"]
