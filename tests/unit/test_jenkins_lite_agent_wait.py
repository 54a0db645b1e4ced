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
