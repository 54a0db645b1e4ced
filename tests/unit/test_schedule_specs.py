"""What a Pipeline's cron and pollScm triggers become as Temporal Schedules (pure; no server)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from crds.meta import ObjectMeta
from crds.pipeline import Pipeline, PipelineSpec, Triggers
from crds.reasons import OverlapPolicy
from worker.triggers.specs import OVERLAP, desired_schedules, owned, pipeline_of

pytestmark = pytest.mark.unit


def pipeline(triggers: dict[str, Any], uid: str = "u-1") -> Pipeline:
    return Pipeline(
        metadata=ObjectMeta(name="app", namespace="team", uid=uid),
        spec=PipelineSpec(
            repository_url="https://git.example/app.git", triggers=Triggers.model_validate(triggers)
        ),
    )


def test_a_pipeline_without_cron_or_polling_has_no_schedule() -> None:
    assert desired_schedules(pipeline({}), "q") == []


def test_a_cron_trigger_becomes_one_schedule_with_its_expression_zone_note_and_skip_overlap() -> None:
    [d] = desired_schedules(pipeline({"cron": {"schedule": "0 3 * * *", "timezone": "Europe/Paris"}}), "q")
    assert d.id == "devops-cron/team/app"
    assert d.schedule.spec.cron_expressions == ["0 3 * * *"]
    assert d.schedule.spec.time_zone_name == "Europe/Paris"
    assert d.schedule.state.note == "cron trigger of Pipeline team/app"
    assert d.schedule.state.paused is False
    assert d.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    assert d.schedule.policy.catchup_window == timedelta(minutes=10)
    assert isinstance(d.schedule.action, ScheduleActionStartWorkflow)
    assert d.schedule.action.task_queue == "q"


def test_every_overlap_setting_maps_to_a_temporal_policy() -> None:
    assert set(OVERLAP) == set(OverlapPolicy)
    [d] = desired_schedules(pipeline({"cron": {"schedule": "* * * * *", "overlap": "BufferOne"}}), "q")
    assert d.schedule.policy.overlap is ScheduleOverlapPolicy.BUFFER_ONE


def test_the_fingerprint_changes_with_the_trigger_and_only_with_it() -> None:
    base = desired_schedules(pipeline({"cron": {"schedule": "0 3 * * *"}}), "q")[0].fingerprint
    assert desired_schedules(pipeline({"cron": {"schedule": "0 3 * * *"}}), "q")[0].fingerprint == base
    for changed in (
        pipeline({"cron": {"schedule": "0 4 * * *"}}),
        pipeline({"cron": {"schedule": "0 3 * * *", "paused": True}}),
        pipeline({"cron": {"schedule": "0 3 * * *"}}, uid="u-2"),  # re-created Pipeline
    ):
        assert desired_schedules(changed, "q")[0].fingerprint != base
    assert desired_schedules(pipeline({"cron": {"schedule": "0 3 * * *"}}), "other")[0].fingerprint != base


def test_polling_becomes_an_interval_schedule_that_never_overlaps() -> None:
    [d] = desired_schedules(pipeline({"pollScm": {"interval": "30s", "branch": "dev"}}), "q")
    assert d.id == "devops-poll/team/app"
    assert [i.every for i in d.schedule.spec.intervals] == [timedelta(seconds=30)]
    assert d.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP


def test_schedule_ids_name_their_pipeline_and_foreign_ids_are_not_ours() -> None:
    assert pipeline_of("devops-cron/team/app") == ("team", "app")
    assert pipeline_of("devops-poll/team/app") == ("team", "app")
    assert pipeline_of("nightly-report") is None
    assert not owned("nightly-report")
