"""jenkins-lite's wait for an agent pod across an apiserver restart (the chaos suite's apiserver outage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devstack.jenkins_lite import agents
from devstack.jenkins_lite.agents import KubernetesCloud
from devstack.jenkins_lite.kubeclient import KubeError

RUNNING = {"spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}}


class ScriptedApiserver:
    """Answers the pod GETs from ``answers`` in turn (a KubeError is raised); ``/readyz`` from ``ready``."""

    def __init__(self, answers: list[Any], ready: list[bool]) -> None:
        self.answers = answers
        self.readiness = ready
        self.gets = 0

    def request(self, method: str, path: str, body: Any = None) -> Any:
        self.gets += 1
        answer = self.answers.pop(0)
        if isinstance(answer, KubeError):
            raise answer
        return answer

    def ready(self) -> bool:
        return self.readiness.pop(0) if len(self.readiness) > 1 else self.readiness[0]


def wait(api: ScriptedApiserver, tmp_path: Path) -> dict[str, Any]:
    cloud = KubernetesCloud(api, tmp_path)  # type: ignore[arg-type]  # the two methods the wait uses
    return cloud._wait_running(api, "ns", "pod", lambda line: None, lambda: False)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents, "POLL_SECONDS", 0)


def test_a_403_from_an_apiserver_not_yet_ready_is_waited_out(tmp_path: Path) -> None:
    api = ScriptedApiserver([KubeError(403, "forbidden"), RUNNING], ready=[False, True])
    assert wait(api, tmp_path) == RUNNING
    assert api.gets == 2


def test_after_the_apiserver_was_unreachable_the_pod_is_asked_for_only_once_it_is_ready(
    tmp_path: Path,
) -> None:
    api = ScriptedApiserver([KubeError(0, "connection refused"), RUNNING], ready=[False, False, True])
    assert wait(api, tmp_path) == RUNNING
    assert api.gets == 2  # no GET while /readyz said not ready (it would be refused with 403)
    assert api.readiness == [True]


def test_a_403_from_a_ready_apiserver_is_the_build_s_rbac_error(tmp_path: Path) -> None:
    api = ScriptedApiserver([KubeError(403, "forbidden: cannot get pods")], ready=[True])
    with pytest.raises(KubeError, match="cannot get pods"):
        wait(api, tmp_path)


def pod(phase: str, version: str, node: str | None = None, reason: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if reason:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": reason}]
    return {"metadata": {"resourceVersion": version}, "spec": {"nodeName": node}, "status": status}


class WatchingApiserver(ScriptedApiserver):
    """Also answers watches: each from ``watches`` in turn (a list of events, or a KubeError)."""

    def __init__(self, answers: list[Any], watches: list[Any]) -> None:
        super().__init__(answers, ready=[True])
        self.watches = watches
        self.watched_from: list[str] = []

    def watch(self, path: str, seconds: int) -> Any:
        self.watched_from.append(path.rsplit("resourceVersion=", 1)[1])
        events = self.watches.pop(0)
        if isinstance(events, KubeError):
            raise events
        yield from events


def wait_from(api: WatchingApiserver, tmp_path: Path, version: str) -> dict[str, Any]:
    cloud = KubernetesCloud(api, tmp_path)  # type: ignore[arg-type]
    return cloud._wait_running(api, "ns", "pod", lambda line: None, lambda: False, False, version)  # type: ignore[arg-type]


def test_a_pending_pod_is_watched_from_its_created_version_until_it_runs_without_a_get(
    tmp_path: Path,
) -> None:
    running = pod("Running", "12", node="node-1")
    api = WatchingApiserver(
        [],
        [
            [],
            [{"type": "MODIFIED", "object": pod("Pending", "11")}],
            [{"type": "MODIFIED", "object": running}],
        ],
    )
    assert wait_from(api, tmp_path, "10") == running
    assert api.gets == 0
    assert api.watched_from == ["10", "10", "11"], (
        "an empty watch ended by the server goes on from the same place"
    )


def test_a_version_too_old_to_watch_is_read_again_with_a_get(tmp_path: Path) -> None:
    running = pod("Running", "30", node="node-1")
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    api = WatchingApiserver([pod("Pending", "29")], [[gone], [{"type": "MODIFIED", "object": running}]])
    assert wait_from(api, tmp_path, "5") == running
    assert api.gets == 1 and api.watched_from == ["5", "29"]


def test_a_pod_deleted_while_pending_fails_the_provisioning(tmp_path: Path) -> None:
    api = WatchingApiserver([], [[{"type": "DELETED", "object": pod("Pending", "8")}]])
    with pytest.raises(agents.ProvisionFailed, match="deleted before the build ran"):
        wait_from(api, tmp_path, "7")


def test_a_watch_cut_by_an_apiserver_outage_is_taken_up_again_once_it_is_ready(tmp_path: Path) -> None:
    running = pod("Running", "3", node="node-1")
    api = WatchingApiserver([], [KubeError(0, "connection reset"), [{"type": "MODIFIED", "object": running}]])
    assert wait_from(api, tmp_path, "2") == running
    assert api.watched_from == ["2", "2"]
