"""Pure rendering for ``devopsctl``: tables, ``describe`` text and the live progress view.

Nothing here does I/O except :class:`ProgressView`, which writes to the stream it is given. Times are
passed in (``now``) so the output is deterministic in tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from crds.execution import PipelineExecution, PipelineExecutionStatus, StageStatus, StepStatus
from crds.pipeline import Pipeline
from crds.reasons import ExecutionPhase

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

_COLORS: dict[str, str] = {
    "Success": "32",  # green
    "Failed": "31",  # red
    "Denied": "31",
    "Aborted": "35",  # magenta
    "Building": "33",  # yellow
    "Paused": "36",  # cyan
    "Queueing": "36",
    "Provisioning": "33",
    "Waiting": "2",  # dim
    "Skipped": "2",
}

_SYMBOLS: dict[str, str] = {
    "Success": "✔",
    "Failed": "✘",
    "Denied": "✘",
    "Aborted": "■",
    "Building": "▶",
    "Skipped": "-",
    "Waiting": "·",
}


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def colorize(text: str, state: str | None, enabled: bool) -> str:
    code = _COLORS.get(state or "")
    if not enabled or code is None:
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def human_seconds(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``, ``3d4h`` (kubectl-like, two units at most)."""
    secs = max(0, int(seconds))
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m{secs % 60:02d}s"
    if secs < 86400:
        return f"{secs // 3600}h{(secs % 3600) // 60:02d}m"
    return f"{secs // 86400}d{(secs % 86400) // 3600}h"


def age(ts: datetime | None, now: datetime) -> str:
    """kubectl's AGE: the largest unit only (``5s``, ``3m``, ``2h``, ``4d``)."""
    if ts is None:
        return "<unknown>"
    secs = max(0, int((now - _aware(ts)).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    if secs < 7200:
        return f"{secs // 60}m"
    if secs < 172800:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def elapsed(started: datetime | None, ended: datetime | None, now: datetime) -> str:
    """The duration of something that started (still running: up to ``now``); empty if not started."""
    if started is None:
        return ""
    end = _aware(ended) if ended is not None else now
    return human_seconds((end - _aware(started)).total_seconds())


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by three spaces, like ``kubectl get``."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


# --- executions -------------------------------------------------------------------------------------


def phase_of(pe: PipelineExecution) -> str:
    status = pe.status
    if status is None or status.phase is None:
        return "Pending"
    if status.paused and not status.is_finished:
        if status.phase == ExecutionPhase.PAUSED:
            return str(ExecutionPhase.PAUSED)
        return f"{status.phase} (paused)"
    return str(status.phase)


def _jenkins_ref(status: PipelineExecutionStatus | None) -> str:
    if status is None or status.jenkins is None:
        return ""
    return f"{status.jenkins.job}#{status.jenkins.build}" if status.jenkins.build else status.jenkins.job


def executions_table(
    items: Sequence[PipelineExecution], *, wide: bool, all_namespaces: bool, now: datetime
) -> str:
    headers = ["NAME", "PIPELINE", "RUN", "PHASE", "BRANCH", "AGE"]
    if wide:
        headers += ["DURATION", "JENKINS", "MESSAGE"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows: list[list[str]] = []
    ordered = sorted(items, key=lambda p: (p.metadata.namespace or "", p.spec.pipeline_name, p.spec.run))
    for pe in ordered:
        status = pe.status
        row = [
            pe.metadata.name or "",
            pe.spec.pipeline_name,
            str(pe.spec.run),
            phase_of(pe),
            pe.spec.branch or "",
            age(pe.metadata.creation_timestamp, now),
        ]
        if wide:
            duration = ""
            if status is not None:
                duration = status.duration or elapsed(status.started, status.ended, now)
            row += [duration, _jenkins_ref(status), _one_line(status.message if status else None)]
        if all_namespaces:
            row.insert(0, pe.metadata.namespace or "")
        rows.append(row)
    return table(headers, rows)


def _one_line(text: str | None, limit: int = 80) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _fmt_time(ts: datetime | None) -> str:
    return _aware(ts).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts is not None else "<none>"


def stage_rows(status: PipelineExecutionStatus, now: datetime, *, logs: bool = False) -> list[list[str]]:
    """One row per stage and per step: index, name, state, duration (and the log object)."""
    rows: list[list[str]] = []
    for i, stage in enumerate(status.stages):
        mark = " (waiting for approval)" if status.pending_gate == i else ""
        row = [str(i), stage.name, "", f"{stage.state}{mark}", elapsed(stage.started, stage.ended, now)]
        if logs:
            row.append("")
        rows.append(row)
        for j, step in enumerate(stage.steps):
            row = [f"{i}.{j}", "", step.name, str(step.state), elapsed(step.started, step.ended, now)]
            if logs:
                row.append(step.log_object or "")
            rows.append(row)
    return rows


def describe_execution(pe: PipelineExecution, *, now: datetime, ui_url: str = "") -> str:
    spec = pe.spec
    status = pe.status or PipelineExecutionStatus()
    trigger = str(spec.triggered_by) + (f" ({spec.trigger_user_name})" if spec.trigger_user_name else "")
    lines = [
        f"Name:          {pe.metadata.name}",
        f"Namespace:     {pe.metadata.namespace}",
        f"Pipeline:      {spec.pipeline_name}",
        f"Run:           {spec.run}",
        f"Branch:        {spec.branch or ''}",
        f"Commit:        {spec.commit or ''}",
        f"Event:         {spec.event}",
        f"Triggered by:  {trigger}",
        f"Phase:         {phase_of(pe)}",
        f"Message:       {status.message or ''}",
        f"Created:       {_fmt_time(pe.metadata.creation_timestamp)}",
        f"Started:       {_fmt_time(status.started)}",
        f"Ended:         {_fmt_time(status.ended)}",
        f"Duration:      {status.duration or elapsed(status.started, status.ended, now)}",
        f"Paused:        {'yes' if (spec.paused or status.paused) else 'no'}",
        f"Cancelled:     {'yes' if spec.cancelled else 'no'}",
    ]
    if status.pending_gate is not None and status.pending_gate < len(status.stages):
        gate = status.pending_gate
        lines.append(f"Approval:      stage {gate} ({status.stages[gate].name}) is waiting")
    if status.jenkins is not None:
        lines.append(f"Jenkins:       job {status.jenkins.job}, build {status.jenkins.build or '(queued)'}")
    if status.workflow is not None:
        lines.append(
            f"Workflow:      {status.workflow.id}"
            + (f" (run {status.workflow.run_id})" if status.workflow.run_id else "")
        )
    if ui_url:
        lines.append(f"Temporal UI:   {ui_url}")
    lines.append("Stages:")
    if status.stages:
        body = table(["#", "STAGE", "STEP", "STATE", "DURATION", "LOG"], stage_rows(status, now, logs=True))
        lines += ["  " + line for line in body.splitlines()]
    else:
        lines.append("  <none>")
    lines.append("Conditions:")
    if status.conditions:
        crows = [
            [
                c.type,
                str(c.status),
                c.reason or "",
                _fmt_time(c.last_transition_time),
                _one_line(c.message, 100),
            ]
            for c in status.conditions
        ]
        body = table(["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], crows)
        lines += ["  " + line for line in body.splitlines()]
    else:
        lines.append("  <none>")
    return "\n".join(lines)


# --- live progress ------------------------------------------------------------------------------------


def progress_lines(pe: PipelineExecution, *, now: datetime, color: bool) -> list[str]:
    """The live view: a header line, then one line per stage and per step."""
    status = pe.status or PipelineExecutionStatus()
    phase = phase_of(pe)
    head = f"{pe.spec.pipeline_name} #{pe.spec.run}  {colorize(phase, str(status.phase or ''), color)}"
    took = elapsed(status.started, status.ended, now)
    if took:
        head += f"  {took}"
    if status.message:
        head += f"  {_one_line(status.message, 100)}"
    lines = [head]
    names = [len(s.name) for s in status.stages] + [len(t.name) + 2 for s in status.stages for t in s.steps]
    width = max([*names, 5])
    for i, stage in enumerate(status.stages):
        lines.append(_progress_row(f"{i}", stage.name, stage, width, now, color, status.pending_gate == i))
        for j, step in enumerate(stage.steps):
            lines.append(_progress_row(f"{i}.{j}", "  " + step.name, step, width, now, color, False))
    return lines


def _progress_row(
    index: str, name: str, item: StageStatus | StepStatus, width: int, now: datetime, color: bool, gate: bool
) -> str:
    state = str(item.state)
    symbol = _SYMBOLS.get(state, " ")
    label = f"{symbol} {state}" + (" (waiting for approval)" if gate else "")
    took = elapsed(item.started, item.ended, now)
    return f"  {index:<5} {name:<{width}}  {colorize(label.ljust(12), state, color)}  {took}".rstrip()


def _snapshot(pe: PipelineExecution) -> tuple[str, str, list[tuple[str, str, str]]]:
    status = pe.status or PipelineExecutionStatus()
    items: list[tuple[str, str, str]] = []
    for i, stage in enumerate(status.stages):
        items.append((f"stage {i} '{stage.name}'", str(stage.state), ""))
        for j, step in enumerate(stage.steps):
            label = f"step {i}.{j} '{step.name}' of '{stage.name}'"
            items.append((label, str(step.state), step.message or ""))
    gate = ""
    if status.pending_gate is not None and status.pending_gate < len(status.stages):
        gate = f"stage {status.pending_gate} '{status.stages[status.pending_gate].name}' waits for approval"
    return phase_of(pe), gate, items


def transitions(prev: PipelineExecution | None, cur: PipelineExecution) -> list[str]:
    """Plain-text progress: one line per change between two observations of the same execution."""
    phase, gate, items = _snapshot(cur)
    old_items: list[tuple[str, str, str]] = []
    if prev is None:
        old_phase, old_gate = "", ""
    else:
        old_phase, old_gate, old_items = _snapshot(prev)
    out: list[str] = []
    message = cur.status.message if cur.status else None
    if phase != old_phase:
        out.append(f"phase {phase}" + (f": {_one_line(message, 120)}" if message else ""))
    old = {name: state for name, state, _ in old_items}
    for name, state, msg in items:
        if old.get(name) != state and not (prev is None and state in ("Waiting",)):
            out.append(f"{name}: {state}" + (f" ({_one_line(msg, 120)})" if msg else ""))
    if gate and gate != old_gate:
        out.append(gate)
    return out


@dataclass
class ProgressView:
    """Shows an execution's progress on ``stream``.

    On a terminal (``tty``) the stage/step table is redrawn in place with ANSI cursor movement; otherwise
    every change is appended as one plain line (``HH:MM:SS <change>``) so logs and pipes stay readable.
    """

    stream: TextIO
    tty: bool
    color: bool = False
    _drawn: int = 0
    _last_lines: list[str] = field(default_factory=list)
    _prev: PipelineExecution | None = None

    def update(self, pe: PipelineExecution, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        if self.tty:
            lines = progress_lines(pe, now=now, color=self.color)
            if lines == self._last_lines:
                return
            self.clear()
            self.stream.write("\n".join(lines) + "\n")
            self._drawn = len(lines)
            self._last_lines = lines
        else:
            stamp = now.astimezone().strftime("%H:%M:%S")
            for line in transitions(self._prev, pe):
                self.stream.write(f"{stamp} {line}\n")
        self._prev = pe
        self.stream.flush()

    def clear(self) -> None:
        """Erase the table drawn last (terminal only), e.g. before printing log text above it."""
        if self.tty and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0
            self._last_lines = []

    def redraw(self, now: datetime | None = None) -> None:
        """Draw the last observation again (after :meth:`clear` and some log text)."""
        if self._prev is not None and self.tty:
            self.update(self._prev, now)


# --- pipelines ------------------------------------------------------------------------------------------


def pipelines_table(
    items: Sequence[Pipeline],
    *,
    wide: bool,
    all_namespaces: bool,
    now: datetime,
    next_cron: Mapping[tuple[str, str], datetime | None] | None = None,
) -> str:
    """``next_cron``: the next cron time per (namespace, name), shown with ``wide``."""
    from worker.cli_triggers import triggers_summary

    headers = ["NAME", "REPOSITORY", "LAST RUN", "STATE", "AGE"]
    if wide:
        headers += ["BRANCH", "NEXT RUN", "LAST STARTED", "TRIGGERS", "NEXT CRON"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows: list[list[str]] = []
    for pl in sorted(items, key=lambda p: (p.metadata.namespace or "", p.metadata.name or "")):
        status = pl.status
        row = [
            pl.metadata.name or "",
            pl.spec.repository_url,
            (status.last_execution_name or "") if status else "",
            str(status.last_run_state or "") if status else "",
            age(pl.metadata.creation_timestamp, now),
        ]
        if wide:
            row += [
                pl.spec.default_branch,
                str(status.next_run) if status else "1",
                age(status.last_started, now) if status and status.last_started else "",
                triggers_summary(pl),
                _next_cron(pl, next_cron or {}),
            ]
        if all_namespaces:
            row.insert(0, pl.metadata.namespace or "")
        rows.append(row)
    return table(headers, rows)


def _next_cron(pl: Pipeline, next_cron: Mapping[tuple[str, str], datetime | None]) -> str:
    if pl.spec.triggers.cron is None:
        return ""
    when = next_cron.get((pl.metadata.namespace or "", pl.metadata.name or ""))
    return when.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if when else "-"
