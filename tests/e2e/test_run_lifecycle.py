"""A run's lifecycle after it ends, end to end on the local stack with the real worker process:
notifications to a real SMTP server (aiosmtpd) and a local HTTP receiver standing in for Slack, Teams and
a CloudEvents webhook; Kubernetes Events (read with kubectl); execution history limits; log retention.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from notify_receivers import HttpReceiver, SmtpReceiver
from temporalio.client import Client

from activities.kube import Kube, encode_secret_data
from crds.execution import PipelineExecution
from crds.messages import LOG_RETENTION_SCHEDULE, LOG_RETENTION_WORKFLOW, LogRetentionInput, SweepLogsResult
from crds.notifiers import NotificationSettings, Notifier
from crds.pipeline import ExecutionHistoryLimit, Pipeline
from crds.reasons import ConditionStatus, ConditionType, ExecutionPhase, NotificationState
from crds.setting import DEFAULT_SETTING_NAME, PipelineSetting
from worker.runs import create_run

# aiosmtpd warns that AUTH without TLS is unsafe: this server listens on loopback for one test.
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]

WORKER_LOG = Path(__file__).resolve().parents[2] / "test-output" / "worker.log"
TERMINAL = {p.value for p in ExecutionPhase if p.is_terminal}
SLACK_TOKEN = "slack-secret-token-" + uuid.uuid4().hex[:8]
HOOK_TOKEN = "hook-secret-token-" + uuid.uuid4().hex[:8]

NOTIFIED_PIPELINE = """
stages:
- name: Check
  steps:
  - runScriptConfig: {image: alpine, shellScript: "test -f MARKER || { echo not yet; exit 1; }"}
notification:
  recipients:
  - {recipient: ops@example.com, notifier: mail, condition: [Failed]}
  - {recipient: "#ci", notifier: slack, condition: [Success]}
  - {recipient: dev-team, notifier: teams, condition: [Changed]}
  - {recipient: ci-events, notifier: hook, condition: [Changed]}
  message: >-
    ${CICD_PIPELINE_NAME} run ${CICD_EXECUTION_SEQUENCE} is ${CICD_EXECUTION_STATE} at ${CICD_GIT_COMMIT}
"""


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    server = SmtpReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()


def configure(
    kube: Kube,
    ns: str,
    smtp: SmtpReceiver,
    http: HttpReceiver,
    *,
    retry_timeout: str = "10m",
    hook_path: str = "/hook",
    **extra: Any,
) -> None:
    """Notifiers in the project's PipelineSetting; Slack and Teams URLs and the hook's token in Secrets."""
    secrets = {
        "slack-webhook": {"url": http.url(f"/slack/T000/B000/{SLACK_TOKEN}")},
        "teams-webhook": {"url": http.url("/teams")},
        "hook-headers": {"Authorization": f"Bearer {HOOK_TOKEN}"},
        "smtp-login": {"username": smtp.login[0], "password": smtp.login[1]},
    }
    for name, data in secrets.items():
        kube.ensure(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": ns},
                "data": encode_secret_data(data),
            }
        )
    setting = kube.get(PipelineSetting, ns, DEFAULT_SETTING_NAME)
    setting.spec.notifiers = [
        Notifier.model_validate(n)
        for n in (
            {
                "name": "mail",
                "smtp": {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "startTLS": False,
                    "from": "ci@x.io",
                    "credentialsSecretRef": {"name": "smtp-login"},
                },
            },
            {"name": "slack", "slack": {"urlSecretRef": {"name": "slack-webhook", "key": "url"}}},
            {"name": "teams", "msteams": {"urlSecretRef": {"name": "teams-webhook", "key": "url"}}},
            {
                "name": "hook",
                "webhook": {
                    "url": http.url(hook_path),
                    "headers": {"X-Source": "e2e"},
                    "headersSecretRef": {"name": "hook-headers"},
                },
            },
            *extra.get("notifiers", ()),
        )
    ]
    setting.spec.notification = NotificationSettings.model_validate({"retryTimeout": retry_timeout})
    kube.replace(setting)


def wait_for_pe(
    kube: Kube, ns: str, name: str, what: str, ok: Callable[[PipelineExecution], bool], timeout: float = 180
) -> PipelineExecution:
    deadline = time.monotonic() + timeout
    pe = kube.get(PipelineExecution, ns, name)
    while time.monotonic() < deadline:
        pe = kube.get(PipelineExecution, ns, name)
        if ok(pe):
            return pe
        time.sleep(0.4)
    pytest.fail(f"{ns}/{name}: {what} not reached after {timeout}s: {pe.status!r}", pytrace=False)


def notified(pe: PipelineExecution) -> bool:
    cond = pe.status.condition(ConditionType.NOTIFIED) if pe.status else None
    return pe.is_finished and cond is not None and cond.status != ConditionStatus.UNKNOWN


def records(pe: PipelineExecution) -> dict[str, tuple[str, int]]:
    assert pe.status is not None
    return {r.notifier: (str(r.state), r.attempts) for r in pe.status.notifications}


def start_run(kube_api_client: Any, ns: str, sha: str, **kwargs: Any) -> str:
    return create_run(kube_api_client, ns, "app", commit=sha, **kwargs).name


@pytest.fixture
def notified_project(
    project_namespace: Callable[..., str],
    kube: Kube,
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
    tmp_path: Path,
) -> Callable[..., tuple[str, str, Path]]:
    """``make(**project_kwargs) -> (namespace, commit, marker)``: runs fail until ``marker`` exists."""

    def make(**kwargs: Any) -> tuple[str, str, Path]:
        ns = project_namespace("life", **kwargs)
        marker = tmp_path / f"ok-{ns}"
        url, sha = git_repo(NOTIFIED_PIPELINE.replace("MARKER", str(marker)))
        pipeline_factory(ns, "app", url)
        return ns, sha, marker

    return make


class TestNotifications:
    async def test_a_failing_run_tells_failed_recipients_once_and_the_next_success_changed_and_success_ones(
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        temporal_client: Client,
        notified_project: Callable[..., tuple[str, str, Path]],
        smtp: SmtpReceiver,
        http: HttpReceiver,
        stack_env: dict[str, str],
    ) -> None:
        ns, sha, marker = notified_project()
        configure(kube, ns, smtp, http)

        first = start_run(kube_api_client, ns, sha)
        done = wait_for_pe(kube, ns, first, "notified", notified)
        assert done.status is not None and done.status.phase == ExecutionPhase.FAILED
        assert records(done) == {"mail": ("Sent", 1)}
        [mail] = smtp.to("ops@example.com")
        assert smtp.logins == [smtp.login[0]]  # logged in with the Secret's username and password
        assert mail.sender == "ci@x.io"
        assert mail.message["Subject"] == f"[{ns}] app #1: Failed"
        assert mail.message["Message-ID"] == f"<{done.status.notifications[0].id}@cubepaas.devops>"
        body = mail.message.get_payload()
        assert f"app run 1 is Failed at {sha}" in body
        assert f"Details: devopsctl describe execution {first} -n {ns}" in body
        assert http.requests == []

        marker.write_text("ok")
        second = start_run(kube_api_client, ns, sha)
        done = wait_for_pe(kube, ns, second, "notified", notified)
        assert done.status is not None and done.status.phase == ExecutionPhase.SUCCESS
        assert records(done) == {"slack": ("Sent", 1), "teams": ("Sent", 1), "hook": ("Sent", 1)}
        assert done.status.is_condition_true(ConditionType.NOTIFIED)
        assert len(smtp.mails) == 1  # Failed only: nothing more by mail
        [slack] = http.at(f"/slack/T000/B000/{SLACK_TOKEN}")
        assert slack.body["channel"] == "#ci" and f"app run 2 is Success at {sha}" in slack.body["text"]
        [teams] = http.at("/teams")
        assert (
            teams.body["@type"] == "MessageCard"
            and teams.body["title"] == f"[{ns}] app #2: Success (dev-team)"
        )
        [hook] = http.at("/hook")
        assert hook.headers["Content-Type"].startswith("application/cloudevents+json")
        assert hook.headers["Authorization"] == f"Bearer {HOOK_TOKEN}" and hook.headers["X-Source"] == "e2e"
        event = hook.body
        assert (event["specversion"], event["type"], event["subject"]) == (
            "1.0",
            "dev.cubepaas.pipelineexecution.succeeded.v1",
            second,
        )
        assert event["id"] == next(r.id for r in done.status.notifications if r.notifier == "hook")
        assert (event["data"]["run"], event["data"]["phase"], event["data"]["commit"]) == (2, "Success", sha)

        # Credentials never reach the CR or the workflow history.
        cr_text = json.dumps(kube.read_object("devops.cubepaas.io/v1alpha1", "PipelineExecution", second, ns))
        assert done.status.workflow is not None
        history = await temporal_client.get_workflow_handle(done.status.workflow.id).fetch_history()
        worker_log = await asyncio.to_thread(WORKER_LOG.read_text)
        for text in (cr_text, history.to_json(), worker_log):
            assert SLACK_TOKEN not in text and HOOK_TOKEN not in text and smtp.login[1] not in text

        # kubectl tells the story of the failed run.
        kubectl = await asyncio.to_thread(
            subprocess.run,
            ["kubectl", "--kubeconfig", stack_env["KUBECONFIG"], "-n", ns, "get", "events",
             "--field-selector", f"involvedObject.name={first}", "-o", "json"],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        items = json.loads(kubectl.stdout)["items"]
        story = {e["reason"]: (e["type"], e["count"]) for e in items}
        said = " | ".join(e["message"] for e in items)
        assert story["Started"] == ("Normal", 1)
        assert story["StageFailed"] == ("Warning", 1)
        assert story["Failed"] == ("Warning", 1)
        assert story["Notified"] == ("Normal", 1)
        assert "Succeeded" not in story
        # The build is told once: on its own Event, or in the one of the status write that carried it.
        # The clone stage, which every run has, is told only if it fails.
        assert said.count("Jenkins build ") == 1, said
        assert "'Clone'" not in said, said

    def test_a_notifier_answering_500_is_retried_then_recorded_failed_and_phase_and_quota_are_unaffected(
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        notified_project: Callable[..., tuple[str, str, Path]],
        smtp: SmtpReceiver,
        http: HttpReceiver,
    ) -> None:
        ns, sha, marker = notified_project(executor_quota=1)
        configure(kube, ns, smtp, http, retry_timeout="20s")
        http.fail("/hook", -1)  # always 500
        http.fail("/teams", 2)  # 500 twice, then 200
        first = start_run(kube_api_client, ns, sha)  # fails: the next success is a change
        wait_for_pe(kube, ns, first, "notified", notified)
        marker.write_text("ok")
        second = start_run(kube_api_client, ns, sha)
        ended = wait_for_pe(kube, ns, second, "finished", lambda pe: pe.is_finished)
        assert ended.status is not None and ended.status.phase == ExecutionPhase.SUCCESS

        # The hook is still being retried, yet the only executor slot is free: a third run builds.
        third = start_run(kube_api_client, ns, sha)
        wait_for_pe(
            kube, ns, third, "building", lambda pe: pe.status is not None and pe.status.jenkins is not None
        )
        meanwhile = kube.get(PipelineExecution, ns, second)
        assert meanwhile.status is not None and meanwhile.status.phase == ExecutionPhase.SUCCESS
        cond = meanwhile.status.condition(ConditionType.NOTIFIED)
        assert cond is not None and cond.status == ConditionStatus.UNKNOWN
        assert records(meanwhile)["hook"][0] in ("Retrying", "Sending")

        done = wait_for_pe(kube, ns, second, "notified", notified, timeout=120)
        assert done.status is not None and done.status.phase == ExecutionPhase.SUCCESS
        by_notifier = {r.notifier: r for r in done.status.notifications}
        hook = by_notifier["hook"]
        assert hook.state == NotificationState.FAILED and hook.attempts >= 3
        assert hook.message is not None and "gave up" in hook.message and "HTTP 500" in hook.message
        assert len(http.at("/hook")) == hook.attempts
        teams = by_notifier["teams"]
        assert (teams.state, teams.attempts) == (NotificationState.SENT, 3)
        assert len(http.at("/teams")) == 3
        cond = done.status.condition(ConditionType.NOTIFIED)
        assert (
            cond is not None
            and cond.status == ConditionStatus.FALSE
            and "hook:ci-events (Failed)" in (cond.message or "")
        )
        finished_third = wait_for_pe(kube, ns, third, "finished", lambda pe: pe.is_finished)
        assert finished_third.status is not None and finished_third.status.phase == ExecutionPhase.SUCCESS

    def test_a_worker_killed_while_a_notification_is_being_sent_sends_no_duplicate(
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        notified_project: Callable[..., tuple[str, str, Path]],
        dedicated_worker: Callable[[str], Any],
        smtp: SmtpReceiver,
        http: HttpReceiver,
    ) -> None:
        ns, sha, marker = notified_project()
        configure(kube, ns, smtp, http)
        first = dedicated_worker(ns)
        first.start()
        queue = {"devops.cubepaas.io/task-queue": first.queue}
        failed = start_run(kube_api_client, ns, sha, annotations=queue)
        wait_for_pe(kube, ns, failed, "notified", notified)
        marker.write_text("ok")
        # Run 2 succeeds: slack, teams and hook are told, in file order. Teams holds the request.
        held, release = http.hold("/teams")
        name = start_run(kube_api_client, ns, sha, annotations=queue)
        assert held.wait(180), "the teams notification was never sent"
        sending = kube.get(PipelineExecution, ns, name)
        assert records(sending) == {"slack": ("Sent", 1), "teams": ("Sending", 1), "hook": ("Pending", 0)}
        first.kill()
        release.set()
        second = dedicated_worker(ns)
        second.queue, second.env["CUBEPAAS_TASK_QUEUE"] = first.queue, first.queue
        second.start()
        done = wait_for_pe(kube, ns, name, "notified", notified, timeout=180)
        assert records(done) == {"slack": ("Sent", 1), "teams": ("Unknown", 1), "hook": ("Sent", 1)}
        assert done.status is not None
        teams = next(r for r in done.status.notifications if r.notifier == "teams")
        assert teams.message is not None and "not sent again" in teams.message
        assert len(http.at(f"/slack/T000/B000/{SLACK_TOKEN}")) == 1
        assert len(http.at("/teams")) == 1
        assert len(http.at("/hook")) == 1
        assert done.status.phase == ExecutionPhase.SUCCESS


HISTORY_PIPELINE = """
stages:
- name: Work
  steps:
  - runScriptConfig:
      image: alpine
      shellScript: |
        case "$CICD_EXECUTION_SEQUENCE" in
          1) while [ ! -f MARKER ]; do sleep 0.3; done ;;
          3|6|8) echo failing; exit 1 ;;
        esac
        echo ok
"""


ONE_STEP = """
stages:
- name: Work
  steps:
  - runScriptConfig: {image: alpine, shellScript: "echo ok"}
"""


class TestHistoryAndRetention:
    def test_with_limits_2_and_1_only_the_newest_finished_runs_remain_and_a_running_one_is_untouched(
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        project_namespace: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        tmp_path: Path,
    ) -> None:
        ns = project_namespace("history", executor_quota=3)
        marker = tmp_path / "release-run-1"
        url, sha = git_repo(HISTORY_PIPELINE.replace("MARKER", str(marker)))
        pipeline = pipeline_factory(ns, "app", url)
        pipeline = kube.get(Pipeline, ns, pipeline.name)
        pipeline.spec.execution_history_limit = ExecutionHistoryLimit(successful=2, failed=1)
        kube.replace(pipeline)

        running = start_run(kube_api_client, ns, sha)
        wait_for_pe(
            kube, ns, running, "building", lambda pe: pe.status is not None and pe.status.jenkins is not None
        )
        names = []
        for _ in range(8):  # runs 2..9: 5 successes (2, 4, 5, 7, 9) and 3 failures (3, 6, 8)
            names.append(start_run(kube_api_client, ns, sha))
            wait_for_pe(kube, ns, names[-1], "finished and settled", lambda pe: pe.is_finished and not any(
                c.type == ConditionType.NOTIFIED for c in (pe.status.conditions if pe.status else [])
            ))  # fmt: skip
        # The last run's history pass ran after it finished: wait for the deletions to show.
        wait = time.monotonic() + 60
        while time.monotonic() < wait:
            left = sorted(pe.spec.run for pe in kube.list_resources(PipelineExecution, ns))
            if left == [1, 7, 8, 9]:
                break
            time.sleep(0.5)
        assert left == [1, 7, 8, 9]
        still = kube.get(PipelineExecution, ns, running)
        assert still.status is not None and still.status.phase == ExecutionPhase.BUILDING
        marker.write_text("go")
        done = wait_for_pe(kube, ns, running, "finished", lambda pe: pe.is_finished)
        assert done.status is not None and done.status.phase == ExecutionPhase.SUCCESS
        # The run that just ended stays until a later run ends, although it is older than the kept ones.
        assert sorted(pe.spec.run for pe in kube.list_resources(PipelineExecution, ns)) == [1, 7, 8, 9]

    async def test_logs_older_than_the_retention_are_deleted_by_the_sweep_and_devopsctl_says_they_expired(
        self,
        worker_process: Any,
        kube: Kube,
        kube_api_client: Any,
        temporal_client: Client,
        project_namespace: Callable[..., str],
        pipeline_factory: Callable[..., Any],
        git_repo: Callable[..., tuple[str, str]],
        s3_client: Any,
        devopsctl: Callable[..., subprocess.CompletedProcess[str]],
        stack_env: dict[str, str],
    ) -> None:
        ns = project_namespace("retention")
        setting = kube.get(PipelineSetting, ns, DEFAULT_SETTING_NAME)
        setting.spec.object_store.log_retention_days = 1
        kube.replace(setting)
        url, sha = git_repo(ONE_STEP)
        pipeline_factory(ns, "app", url)
        name = start_run(kube_api_client, ns, sha)
        done = wait_for_pe(kube, ns, name, "finished", lambda pe: pe.is_finished)
        assert done.status is not None and done.status.phase == ExecutionPhase.SUCCESS
        bucket = "pipeline-logs"
        stored = sorted(
            o.object_name for o in s3_client.list_objects(bucket, prefix=f"{ns}/", recursive=True)
        )
        assert len(stored) == 2  # clone and the one step
        assert "ok" in devopsctl("logs", name, "-n", ns, "--stage", "1", check=True).stdout

        async def sweep(as_of: datetime) -> SweepLogsResult:
            result: SweepLogsResult = await temporal_client.execute_workflow(
                LOG_RETENTION_WORKFLOW,
                LogRetentionInput(as_of=as_of),
                id=f"retention-test-{uuid.uuid4().hex[:8]}",
                task_queue=stack_env.get("CUBEPAAS_TASK_QUEUE", "cubepaas-devops"),
                result_type=SweepLogsResult,
            )
            return result

        now = datetime.now(UTC)
        # Other projects of this stack keep logs 30 days: sweeping "2 days from now" touches only ours.
        early = await sweep(now + timedelta(hours=12))
        assert f"{ns}/{name}" not in early.expired_runs
        assert len(list(s3_client.list_objects(bucket, prefix=f"{ns}/", recursive=True))) == 2
        late = await sweep(now + timedelta(days=2))
        assert f"{ns}/{name}" in late.expired_runs and late.deleted_objects >= 2
        assert list(s3_client.list_objects(bucket, prefix=f"{ns}/", recursive=True)) == []
        expired = kube.get(PipelineExecution, ns, name)
        assert expired.status is not None and expired.status.logs_expired is not None

        out = devopsctl("logs", name, "-n", ns)
        assert out.returncode == 3, out
        assert f"the logs of {name} have expired" in out.stderr and "not found" not in out.stderr
        assert "kept 1 days" in out.stderr
        events = kube.list_objects("v1", "Event", ns, field_selector=f"involvedObject.name={name}")
        assert "LogsExpired" in {e["reason"] for e in events}

        # The daily schedule that runs the same sweep exists (created by the worker at start-up).
        schedule = await temporal_client.get_schedule_handle(LOG_RETENTION_SCHEDULE).describe()
        [daily] = schedule.schedule.spec.calendars  # the server stores the cron "30 3 * * *" as a calendar
        assert ([r.start for r in daily.hour], [r.start for r in daily.minute]) == ([3], [30])
        action = schedule.schedule.action
        assert getattr(action, "workflow", None) == LOG_RETENTION_WORKFLOW
