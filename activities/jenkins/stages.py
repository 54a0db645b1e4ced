"""A build's stages and steps (``wfapi/describe``) and its gates (``input`` steps)."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import quote

from activities.jenkins.models import BuildStatus, PendingInput, StageStatus, StepStatus
from activities.jenkins.status import StepState, map_result, map_status
from activities.jenkins.transport import JenkinsTransport

STEP_STAGE = re.compile(r"^step-(\d+)-(\d+)$")
#: Run statuses of the stage view while the run builds.
RUNNING_STATUSES = frozenset({"IN_PROGRESS", "PAUSED_PENDING_INPUT"})


class StagesMixin(JenkinsTransport):
    """Stages, steps and gates of a build."""

    def describe(self, job: str, number: int, *, skipped_stages: frozenset[int] = frozenset()) -> BuildStatus:
        """The build, its stages and steps (split by the ``step-<i>-<j>`` naming rule) and pending gates.

        ``skipped_stages``: indexes the plan marked skipped (a real Jenkins shows a scripted stage that only
        echoes as SUCCESS; jenkins-lite shows NOT_EXECUTED); they are reported Skipped either way.
        """
        run = (
            self._get_json_or_none(f"{self._job(job)}{number}/wfapi/describe", f"stages of {job} #{number}")
            or {}
        )
        if run.get("status") in RUNNING_STATUSES:
            # The stage view says IN_PROGRESS (or paused) only while the run builds: no need to ask the
            # build itself each poll. Once it says anything else the build is asked, since its flow can
            # be complete while Jenkins still finishes the build, and only the build has its result.
            info: dict[str, Any] = {"building": True, "result": None, "timestamp": run.get("startTimeMillis")}
        else:
            info = self.build_info(job, number)
        building = bool(info.get("building"))
        result = info.get("result")
        stages: list[StageStatus] = []
        steps: list[StepStatus] = []
        for raw in run.get("stages", []) or []:
            name = str(raw.get("name", ""))
            status = str(raw.get("status") or "NOT_EXECUTED")
            start = raw.get("startTimeMillis") or None
            duration = raw.get("durationMillis")
            end = (
                (int(start) + int(duration))
                if start and duration is not None and status not in ("IN_PROGRESS", "PAUSED_PENDING_INPUT")
                else None
            )
            error = (raw.get("error") or {}).get("message")
            m = STEP_STAGE.match(name)
            if m:
                steps.append(
                    StepStatus(
                        stage_index=int(m.group(1)),
                        step_index=int(m.group(2)),
                        name=name,
                        node_id=str(raw.get("id")),
                        status=status,
                        state=map_status(status),
                        start_millis=start,
                        end_millis=end,
                        error=error,
                    )
                )
            else:
                index = len(stages)
                state = StepState.SKIPPED if index in skipped_stages else map_status(status)
                stages.append(
                    StageStatus(
                        index=index,
                        name=name,
                        node_id=str(raw.get("id")),
                        status=status,
                        state=state,
                        start_millis=start,
                        end_millis=end,
                        error=error,
                    )
                )
        for step in steps:
            if 0 <= step.stage_index < len(stages):
                stages[step.stage_index].steps.append(step)
        for stage in stages:
            stage.steps.sort(key=lambda s: s.step_index)
        run_status = str(run.get("status") or "")
        # The run is PAUSED_PENDING_INPUT while an input waits (the Stage View's RunExt): other polls need
        # not ask for the inputs. No status at all (no describe): asked, to be sure.
        pending = (
            self.pending_inputs(job, number)
            if building and run_status in ("", "PAUSED_PENDING_INPUT")
            else []
        )
        if not run_status:
            run_status = "IN_PROGRESS" if building else str(result or "NOT_EXECUTED")
        state = map_result(result, building)
        if building and pending:
            state = StepState.WAITING
        start_ms = info.get("timestamp") or None
        end_ms = (int(start_ms) + int(info.get("duration") or 0)) if start_ms and not building else None
        return BuildStatus(
            job=job,
            number=number,
            building=building,
            result=result,
            status=run_status,
            state=state,
            start_millis=start_ms,
            end_millis=end_ms,
            stages=stages,
            pending_inputs=pending,
        )

    def pending_inputs(self, job: str, number: int) -> list[PendingInput]:
        """Input steps the build waits on (``wfapi/pendingInputActions``)."""
        path = f"{self._job(job)}{number}/wfapi/pendingInputActions"
        raw = self._get_json_or_none(path, f"pending inputs of {job} #{number}") or []
        run_path = f"{self._job(job)}{number}/"
        out: list[PendingInput] = []
        for item in raw:
            input_id = str(item.get("id"))
            abort_url = str(item.get("abortUrl") or f"{run_path}input/{quote(input_id, safe='')}/abort")
            # proceedUrl is the Stage View's form endpoint (inputSubmit); proceedEmpty sits next to abort.
            proceed_url = re.sub(r"/abort/?$", "/proceedEmpty", abort_url)
            out.append(
                PendingInput(
                    id=input_id,
                    message=str(item.get("message") or ""),
                    proceed_url=proceed_url,
                    abort_url=abort_url,
                )
            )
        return out

    def _find_input(self, job: str, number: int, input_id: str) -> PendingInput | None:
        wanted = input_id.lower()
        for item in self.pending_inputs(job, number):
            if item.id.lower() == wanted:
                return item
        return None

    def _answer_input(
        self, job: str, number: int, input_id: str, action: Literal["proceed", "abort"]
    ) -> bool:
        answered = False

        def op() -> bool:
            # Re-checked on every attempt: a POST whose answer was lost shows up as "no longer pending".
            nonlocal answered
            item = self._find_input(job, number, input_id)
            if item is None:
                return answered
            url = item.proceed_url if action == "proceed" else item.abort_url
            answered = True
            self._post(url, f"{action} {item.id} of {job} #{number}", ok_404=True)
            return True

        return self._retrying(f"{action} {input_id} of {job} #{number}", op)

    def proceed(self, job: str, number: int, input_id: str) -> bool:
        """Proceed a gate (``input/<Id>/proceedEmpty``). False when it is not pending (already answered)."""
        return self._answer_input(job, number, input_id, "proceed")

    def abort_input(self, job: str, number: int, input_id: str) -> bool:
        """Abort a gate (``input/<Id>/abort``): the build ends ABORTED. False when it is not pending."""
        return self._answer_input(job, number, input_id, "abort")


__all__ = ["STEP_STAGE", "StagesMixin"]
