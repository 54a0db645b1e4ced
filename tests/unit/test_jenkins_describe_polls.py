"""How many requests one look at a build costs (StagesMixin.describe), against canned Jenkins answers."""

from __future__ import annotations

from typing import Any

from activities.jenkins.stages import StagesMixin


class CannedJenkins(StagesMixin):
    """Answers ``wfapi/describe`` with ``status`` and records every path asked."""

    def __init__(self, status: str) -> None:
        super().__init__("http://jenkins.invalid/", None, None)
        self.status = status
        self.asked: list[str] = []

    def build_info(self, job: str, number: int) -> dict[str, Any]:
        self.asked.append("api/json")
        return {"building": True, "timestamp": 1}

    def _get_json_or_none(self, path: str, what: str, **kw: Any) -> Any:
        self.asked.append(path.rsplit("/", 1)[-1])
        if path.endswith("wfapi/describe"):
            return {"status": self.status, "stages": []}
        return [{"id": "Gate1", "message": "Start?", "abortUrl": "/job/j/1/input/Gate1/abort"}]


def test_a_running_build_is_looked_at_in_one_request_without_asking_for_its_inputs_or_itself() -> None:
    jenkins = CannedJenkins("IN_PROGRESS")
    status = jenkins.describe("j", 1)
    assert jenkins.asked == ["describe"]
    assert status.building and status.result is None and status.pending_inputs == []


def test_a_build_paused_at_an_input_is_asked_which_one() -> None:
    jenkins = CannedJenkins("PAUSED_PENDING_INPUT")
    status = jenkins.describe("j", 1)
    assert jenkins.asked == ["describe", "pendingInputActions"]
    assert [g.id for g in status.pending_inputs] == ["Gate1"]


def test_a_run_whose_stage_view_ended_asks_the_build_which_may_still_be_finishing() -> None:
    jenkins = CannedJenkins("SUCCESS")
    status = jenkins.describe("j", 1)
    assert jenkins.asked == ["describe", "api/json"]
    assert status.building, "the build (canned: still building) has the last word, not the stage view"
