"""The one table from Jenkins statuses onto the product's step states (:class:`crds.reasons.StepState`).

Jenkins speaks two vocabularies: the Pipeline Stage View REST API (``wfapi``) reports a node status
(``SUCCESS``, ``FAILED``, ``ABORTED``, ``IN_PROGRESS``, ``PAUSED_PENDING_INPUT``, ``NOT_EXECUTED``,
``UNSTABLE``), and a build's ``result`` is a ``hudson.model.Result`` (``SUCCESS``, ``FAILURE``,
``ABORTED``, ``UNSTABLE``, ``NOT_BUILT``; ``null`` while building). The Stage View maps results onto its
statuses (``FAILURE`` -> ``FAILED``, ``NOT_BUILT`` -> ``NOT_EXECUTED``); this table accepts both.
"""

from __future__ import annotations

from crds.reasons import StepState

#: The table. ``UNSTABLE`` (tests failed but the build went on) counts as Failed: the product has no
#: "unstable" state and must not report failed tests as a success. ``PAUSED_PENDING_INPUT`` is a gate
#: waiting for approval or resume: Waiting.
STATUS_TABLE: dict[str, StepState] = {
    # wfapi node statuses
    "SUCCESS": StepState.SUCCESS,
    "FAILED": StepState.FAILED,
    "ABORTED": StepState.ABORTED,
    "IN_PROGRESS": StepState.BUILDING,
    "PAUSED_PENDING_INPUT": StepState.WAITING,
    "NOT_EXECUTED": StepState.SKIPPED,
    "UNSTABLE": StepState.FAILED,
    # build results (hudson.model.Result) that differ from the wfapi names
    "FAILURE": StepState.FAILED,
    "NOT_BUILT": StepState.SKIPPED,
    # queue: not started yet
    "QUEUED": StepState.WAITING,
}


def map_status(status: str | None) -> StepState:
    """Map a wfapi status or a build result; ``None`` (not started) and unknown values are Waiting."""
    if status is None:
        return StepState.WAITING
    return STATUS_TABLE.get(status.upper(), StepState.WAITING)


def map_result(result: str | None, building: bool) -> StepState:
    """Map a build's ``result``/``building`` pair (``result`` is null while the build runs)."""
    if result is None:
        return StepState.BUILDING if building else StepState.WAITING
    return map_status(result)


def is_final(state: StepState) -> bool:
    """True for states that never change again."""
    return state in (
        StepState.SUCCESS,
        StepState.FAILED,
        StepState.SKIPPED,
        StepState.ABORTED,
        StepState.DENIED,
    )


__all__ = ["STATUS_TABLE", "StepState", "is_final", "map_result", "map_status"]
