"""Who is told about a finished run, what they are told, and how each recipient's record moves (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from activities.notify import decide, delivery
from activities.notify.message import (
    DEFAULT_TEMPLATE,
    cloud_event,
    event_type,
    message_text,
    render,
    run_variables,
    slack_payload,
    subject,
    teams_payload,
)
from crds.execution import (
    NotificationRecord,
    PipelineExecution,
    PipelineExecutionSpec,
    PipelineExecutionStatus,
    StageStatus,
    WorkflowRef,
)
from crds.messages import ExecutionContext, ExecutionRef
from crds.meta import ObjectMeta
from crds.notifiers import Notifier
from crds.parse import parse_pipeline_file
from crds.pipeline_file import Notification, Recipient
from crds.reasons import ConditionStatus, ExecutionPhase, NotificationCondition, NotificationState, Reason
from crds.setting import PipelineSettingSpec

pytestmark = pytest.mark.unit

S, F, A, D = ExecutionPhase.SUCCESS, ExecutionPhase.FAILED, ExecutionPhase.ABORTED, ExecutionPhase.DENIED
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def notification(
    *recipients: tuple[str, str, list[str] | None], condition: list[str] | None = None
) -> Notification:
    return Notification(
        recipients=[
            Recipient(
                recipient=r, notifier=n, condition=[NotificationCondition(c) for c in cs] if cs else None
            )
            for r, n, cs in recipients
        ],
        condition=[NotificationCondition(c) for c in condition or []],
    )


def execution(run: int, phase: ExecutionPhase | None, name: str = "app") -> PipelineExecution:
    return PipelineExecution(
        metadata=ObjectMeta(name=f"{name}-{run}", namespace="proj", uid=f"uid-{run}"),
        spec=PipelineExecutionSpec(pipeline_name=name, run=run),
        status=PipelineExecutionStatus(phase=phase),
    )


# --- decide -----------------------------------------------------------------------------------------


def test_a_run_meets_its_outcome_and_changed_only_when_the_previous_finished_run_ended_otherwise() -> None:
    assert decide.conditions_met(F, None) == {NotificationCondition.FAILED}
    assert decide.conditions_met(S, F) == {NotificationCondition.SUCCESS, NotificationCondition.CHANGED}
    assert decide.conditions_met(S, S) == {NotificationCondition.SUCCESS}
    assert decide.conditions_met(D, A) == {NotificationCondition.ABORTED, NotificationCondition.CHANGED}


def test_the_previous_finished_run_is_the_newest_lower_run_that_ended_ignoring_running_ones() -> None:
    runs = [
        e.summary()
        for e in (execution(1, S), execution(2, F), execution(3, ExecutionPhase.BUILDING), execution(5, S))
    ]
    assert decide.previous_finished_phase(runs, 4) == F
    assert decide.previous_finished_phase(runs, 6) == S
    assert decide.previous_finished_phase(runs, 1) is None


def test_recipients_use_their_own_condition_else_the_notifications_else_failed_and_changed() -> None:
    n = notification(
        ("ops@example.com", "mail", ["Failed"]),
        ("#ci", "slack", ["Success"]),
        ("hook", "webhook", ["Changed"]),
        ("team", "teams", None),
    )
    assert [r.recipient for r in decide.recipients_to_notify(n, F, None)] == ["ops@example.com", "team"]
    assert [r.recipient for r in decide.recipients_to_notify(n, S, F)] == ["#ci", "hook", "team"]
    assert [r.recipient for r in decide.recipients_to_notify(n, S, S)] == ["#ci"]
    both = notification(("a", "mail", None), condition=["Success"])
    assert [r.recipient for r in decide.recipients_to_notify(both, S, S)] == ["a"]
    assert decide.recipients_to_notify(both, F, S) == []


def test_a_recipient_listed_twice_is_told_once_and_no_notification_tells_nobody() -> None:
    n = notification(("a", "mail", None), ("a", "mail", ["Failed"]))
    assert len(decide.recipients_to_notify(n, F, None)) == 1
    assert decide.recipients_to_notify(None, F, S) == []


# --- message ------------------------------------------------------------------------------------------


def context() -> ExecutionContext:
    config = parse_pipeline_file(
        "stages:\n- name: T\n  steps:\n  - runScriptConfig: {image: a, shellScript: x}\n"
    )
    return ExecutionContext(
        execution=ExecutionRef(namespace="proj", name="app-7", uid="u-7"),
        pipeline="app",
        run=7,
        branch="main",
        commit="abc123",
        event="push",
        triggered_by="webhook",
        repository_url="https://git.example.com/app.git",
        config=config,
        setting=PipelineSettingSpec(),
        pipeline_namespace="proj-pipeline",
    )


def finished(phase: ExecutionPhase = F) -> PipelineExecution:
    pe = execution(7, phase)
    assert pe.status is not None
    pe.status.duration = "1m2s"
    pe.status.message = "step 1.0 failed"
    pe.status.started, pe.status.ended = T0, T0 + timedelta(seconds=62)
    pe.status.stages = [StageStatus(name="Clone", state="Success"), StageStatus(name="T", state="Failed")]
    pe.status.workflow = WorkflowRef(id="pe-proj-app-7-u", ui_url="http://ui/namespaces/default/workflows/x")
    return pe


def test_the_template_substitutes_known_variables_and_leaves_others_as_written() -> None:
    variables = run_variables(context(), finished())
    template = "${CICD_PIPELINE_NAME} #${CICD_EXECUTION_SEQUENCE} ${CICD_EXECUTION_STATE} $HOME ${CICD_NOPE}"
    assert render(template, variables) == "app #7 Failed $HOME ${CICD_NOPE}"
    assert render(None, variables) == "app #7 (main): Failed after 1m2s. step 1.0 failed"
    assert "${CICD_EXECUTION_STATE}" in DEFAULT_TEMPLATE


def test_every_message_ends_with_the_temporal_ui_link_and_the_describe_command() -> None:
    text = message_text("built ${CICD_GIT_COMMIT}", run_variables(context(), finished()))
    assert text.splitlines() == [
        "built abc123",
        "",
        "Temporal UI: http://ui/namespaces/default/workflows/x",
        "Details: devopsctl describe execution app-7 -n proj",
    ]
    assert subject(run_variables(context(), finished())) == "[proj] app #7: Failed"


def test_the_cloudevent_is_structured_cloudevents_1_0_with_the_execution_as_data() -> None:
    pe = finished(S)
    event = cloud_event(pe, run_variables(context(), pe), event_id="id-1", recipient="hook", text="t", now=T0)
    assert {k: event[k] for k in ("specversion", "id", "type", "subject", "time", "datacontenttype")} == {
        "specversion": "1.0",
        "id": "id-1",
        "type": "dev.cubepaas.pipelineexecution.succeeded.v1",
        "subject": "app-7",
        "time": "2026-05-01T12:00:00Z",
        "datacontenttype": "application/json",
    }
    assert event["source"] == "/apis/devops.cubepaas.io/v1alpha1/namespaces/proj/pipelineexecutions/app-7"
    data = event["data"]
    assert (data["pipeline"], data["run"], data["phase"], data["commit"]) == ("app", 7, "Success", "abc123")
    assert data["stages"] == [{"name": "Clone", "state": "Success"}, {"name": "T", "state": "Failed"}]
    assert [event_type(p) for p in (F, A, D)] == [
        "dev.cubepaas.pipelineexecution.failed.v1",
        "dev.cubepaas.pipelineexecution.aborted.v1",
        "dev.cubepaas.pipelineexecution.denied.v1",
    ]


def test_slack_and_teams_payloads_carry_the_text_and_the_recipient() -> None:
    assert slack_payload("hi", "#ci") == {"text": "hi", "channel": "#ci"}
    card = teams_payload("[proj] app #7: Failed", "a\nb", "team", ok=False)
    assert (card["@type"], card["title"], card["text"]) == (
        "MessageCard",
        "[proj] app #7: Failed (team)",
        "a<br>b",
    )


# --- notifier models ------------------------------------------------------------------------------------


def test_a_notifier_needs_exactly_one_kind_and_names_are_unique_in_a_setting() -> None:
    with pytest.raises(ValidationError, match="exactly one of smtp, slack, msteams, webhook"):
        Notifier.model_validate({"name": "x"})
    with pytest.raises(ValidationError, match="got slack and webhook"):
        Notifier.model_validate(
            {
                "name": "x",
                "slack": {"urlSecretRef": {"name": "s", "key": "url"}},
                "webhook": {"url": "http://h"},
            }
        )
    mail = Notifier.model_validate({"name": "m", "smtp": {"host": "h", "from": "ci@x.io", "startTLS": False}})
    assert mail.kind == "smtp" and mail.smtp is not None and mail.smtp.from_ == "ci@x.io"
    with pytest.raises(ValidationError, match="duplicate notifier names: m"):
        PipelineSettingSpec.model_validate({"notifiers": [mail.to_dict(), mail.to_dict()]})


# --- delivery ---------------------------------------------------------------------------------------


def record(state: NotificationState, attempts: int = 0, last: datetime | None = None) -> NotificationRecord:
    return NotificationRecord(notifier="n", recipient="r", kind="webhook", id="i", state=state,
                              attempts=attempts, last_attempt=last)  # fmt: skip


def test_the_plan_has_one_pending_record_per_recipient_and_fails_one_naming_no_notifier() -> None:
    hook = Notifier.model_validate({"name": "hook", "webhook": {"url": "http://h"}})
    wanted = [Recipient(recipient="a", notifier="hook"), Recipient(recipient="b", notifier="gone")]
    recs = delivery.plan("u", wanted, [hook])
    assert [(r.kind, r.state) for r in recs] == [("webhook", "Pending"), ("unknown", "Failed")]
    assert "no notifier 'gone'" in (recs[1].message or "")
    assert recs[0].id == delivery.record_id("u", "hook", "a") != delivery.record_id("u", "hook", "b")


def test_an_interrupted_send_is_recorded_unknown_and_never_sent_again() -> None:
    recs = delivery.resume(
        [record(NotificationState.SENDING, 1, T0), record(NotificationState.RETRYING, 1, T0)]
    )
    assert [r.state for r in recs] == [NotificationState.UNKNOWN, NotificationState.RETRYING]
    assert recs[0].message == delivery.INTERRUPTED
    assert NotificationState.UNKNOWN.is_settled and not NotificationState.RETRYING.is_settled


def test_retries_back_off_from_one_second_doubling_up_to_thirty_and_stop_at_the_deadline() -> None:
    assert [delivery.retry_delay(n) for n in (1, 2, 3, 5, 6, 20)] == [1.0, 2.0, 4.0, 16.0, 30.0, 30.0]
    rec = record(NotificationState.RETRYING, 3, T0)
    assert not delivery.due(rec, T0 + timedelta(seconds=3))
    assert delivery.due(rec, T0 + timedelta(seconds=4))
    assert delivery.next_due([rec, record(NotificationState.SENT, 1, T0)]) == T0 + timedelta(seconds=4)
    assert not delivery.give_up(rec, T0, T0 + timedelta(seconds=1))
    assert delivery.give_up(rec, T0 + timedelta(seconds=1), T0 + timedelta(seconds=1))
    assert not delivery.give_up(record(NotificationState.PENDING), T0 + timedelta(days=1), T0)


def test_the_notified_condition_sums_up_the_records() -> None:
    assert delivery.summary([]) == (
        ConditionStatus.TRUE,
        Reason.NO_NOTIFICATIONS,
        "no recipient's condition was met",
    )
    assert delivery.summary([record(NotificationState.SENT), record(NotificationState.PENDING)])[:2] == (
        ConditionStatus.UNKNOWN,
        Reason.NOTIFYING,
    )
    assert delivery.summary([record(NotificationState.SENT)])[:2] == (
        ConditionStatus.TRUE,
        Reason.NOTIFICATIONS_SENT,
    )
    status, reason, message = delivery.summary(
        [record(NotificationState.SENT), record(NotificationState.FAILED)]
    )
    assert (status, reason, message) == (
        ConditionStatus.FALSE,
        Reason.NOTIFICATIONS_FAILED,
        "not delivered: n:r (Failed)",
    )
