"""What pause, resume, cancel, approve and reject do to an execution's state (pure functions).

The workflow's signal and update handlers call these and nothing else, so each rule is unit-tested
without Temporal. Each returns whether the state changed in a way worth writing to the CR.
"""

from __future__ import annotations

from crds.messages import ControlInput, ExecutionState, GateDecisionInput
from crds.reasons import ExecutionPhase


class NotWaitingForApproval(ValueError):
    """An approve or reject that names no stage waiting for approval (the update is rejected)."""


def _finished(state: ExecutionState) -> bool:
    return state.status.phase is not None and ExecutionPhase(state.status.phase).is_terminal


def pause(state: ExecutionState) -> bool:
    if _finished(state) or state.paused:
        return False
    state.paused = state.status.paused = True
    return True


def resume(state: ExecutionState) -> bool:
    if not state.paused:
        return False
    state.paused = state.status.paused = False
    return True


def cancel(state: ExecutionState, inp: ControlInput | None) -> bool:
    """The first cancel counts (its reason is the one reported); later ones change nothing."""
    if state.cancel is not None or _finished(state):
        return False
    state.cancel = inp or ControlInput(reason="cancelled")
    return True


def waiting_stage(state: ExecutionState, inp: GateDecisionInput | None, stage_name: str) -> int:
    """The stage a decision is about: the waiting one, which ``inp.stage`` must name if it names one."""
    waiting = state.awaiting_approval
    if waiting is None:
        raise NotWaitingForApproval("no stage is waiting for approval")
    if inp is not None and inp.stage is not None and inp.stage != waiting:
        raise NotWaitingForApproval(
            f"stage {inp.stage} is not waiting for approval; stage {waiting} ('{stage_name}') is"
        )
    return waiting


def decide(state: ExecutionState, stage: int, *, approve: bool, inp: GateDecisionInput | None) -> None:
    """Record an approval or a rejection of ``stage`` (the first decision of a stage counts)."""
    if stage in state.approved or stage in state.rejected:
        return
    if approve:
        state.approved.append(stage)
    else:
        state.rejected[stage] = (inp.reason if inp else "") or "rejected"


def signal_stage(state: ExecutionState, inp: GateDecisionInput | None) -> int | None:
    """The stage a decision signal is about (signals cannot be refused: None when none applies)."""
    if inp is not None and inp.stage is not None:
        return inp.stage
    return state.awaiting_approval


__all__ = [
    "NotWaitingForApproval",
    "cancel",
    "decide",
    "pause",
    "resume",
    "signal_stage",
    "waiting_stage",
]
