"""Conditions: the Kubernetes convention for observed state, with helpers that keep it consistent."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from crds.meta import KubeModel, Timestamp
from crds.reasons import ConditionStatus
from crds.text import ConditionMessage


class Condition(KubeModel):
    """One aspect of the object's state (Initialized, Provisioned, Built, Succeeded...)."""

    type: str = Field(min_length=1, max_length=316)
    """Condition type, e.g. Succeeded."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str | None = Field(default=None, max_length=1024)
    """CamelCase reason of the last transition."""
    message: ConditionMessage | None = None
    """Human-readable details."""
    last_transition_time: Timestamp | None = None
    """When status last changed."""
    observed_generation: int | None = None

    @property
    def is_true(self) -> bool:
        return self.status == ConditionStatus.TRUE


class HasConditions(KubeModel):
    """A status with ``conditions`` (one per type) and the helpers to read and set them."""

    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def is_condition_true(self, type_: str) -> bool:
        found = self.condition(type_)
        return found is not None and found.is_true

    def set_condition(
        self,
        type_: str,
        status: ConditionStatus | str,
        reason: str | None,
        message: str | None,
        now: datetime,
    ) -> bool:
        """Add or update the condition; ``lastTransitionTime`` moves only when ``status`` changes.

        ``now`` is required and timezone-aware: workflows pass ``workflow.now()`` (reading the clock
        here would break their determinism). Returns whether anything changed.
        """
        status = ConditionStatus(status)
        existing = self.condition(type_)
        if existing is None:
            self.conditions.append(
                Condition(type=type_, status=status, reason=reason, message=message, last_transition_time=now)
            )
            return True
        changed = (existing.status, existing.reason, existing.message) != (status, reason, message)
        if existing.status != status:
            existing.last_transition_time = now
        existing.status = status
        existing.reason = reason
        existing.message = message
        return changed


__all__ = ["Condition", "HasConditions"]
