"""``devopsctl logs`` of a run whose logs the retention deleted says so (pure part)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crds.execution import PipelineExecution, PipelineExecutionSpec, PipelineExecutionStatus
from crds.meta import ObjectMeta
from crds.reasons import ExecutionPhase
from crds.setting import PipelineSetting
from worker.cli import expired_message

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def run(ended: datetime, logs_expired: datetime | None = None) -> PipelineExecution:
    return PipelineExecution(
        metadata=ObjectMeta(name="app-7", namespace="p"),
        spec=PipelineExecutionSpec(pipeline_name="app", run=7),
        status=PipelineExecutionStatus(phase=ExecutionPhase.SUCCESS, ended=ended, logs_expired=logs_expired),
    )


def setting(days: int) -> PipelineSetting:
    return PipelineSetting.model_validate({"spec": {"objectStore": {"logRetentionDays": days}}})


def test_a_run_marked_by_the_sweep_has_expired_logs_with_the_date_and_the_retention() -> None:
    message = expired_message(run(NOW - timedelta(days=40), NOW - timedelta(days=9)), setting(30), NOW)
    assert message == (
        "the logs of app-7 have expired: deleted on 2026-05-23 12:00 UTC "
        "(step logs are kept 30 days: spec.objectStore.logRetentionDays)"
    )


def test_a_run_older_than_the_retention_has_expired_logs_even_before_it_is_marked() -> None:
    assert "the run ended on 2026-04-22" in (
        expired_message(run(NOW - timedelta(days=40)), setting(30), NOW) or ""
    )


def test_a_recent_run_or_a_retention_of_zero_has_no_expired_logs() -> None:
    assert expired_message(run(NOW - timedelta(days=2)), setting(30), NOW) is None
    assert expired_message(run(NOW - timedelta(days=400)), setting(0), NOW) is None
    assert expired_message(run(NOW - timedelta(days=400)), None, NOW) is None
