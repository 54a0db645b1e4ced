"""The PipelineSetting's resource quota and executor defaults in the pipeline namespace, reconciled by
devops.namespace.bootstrap against the real cluster of the stack (its Deployments become available through
the controllers and kwok): created, admitted against, left alone when correct, removed when unset."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from activity_env import activity_environment
from kubernetes import client as k8s

from activities.bootstrap import EXECUTORS_NAME, NamespaceActivities
from activities.kube import Kube
from crds.messages import BootstrapInput, BootstrapResult
from crds.setting import PipelineSettingSpec

pytestmark = pytest.mark.integration


@pytest.fixture
def kube(kube_api_client: k8s.ApiClient) -> Kube:
    """The activity's access: its write counter is what the tests assert on."""
    return Kube(kube_api_client)


def _input(setting: dict[str, Any]) -> BootstrapInput:
    suffix = uuid.uuid4().hex[:8]
    spec = PipelineSettingSpec.model_validate({"jenkins": {"mode": "External"}, **setting})
    inp = BootstrapInput.for_setting(f"quota-{suffix}", f"quota-{suffix}-pipeline", spec)
    return inp.model_copy(update={"ready_timeout_seconds": 120, "ready_poll_seconds": 0.5})


def run(kube: Kube, inp: BootstrapInput) -> BootstrapResult:
    return activity_environment().run(NamespaceActivities(kube).bootstrap, inp)


SETTING = {
    # Spelled the way users write them; the apiserver stores 500m and 1 (see with_live_quantities).
    "resourceQuota": {"requestsCpu": "4", "limitsMemory": "8Gi", "pods": 20},
    "executorResources": {"cpuRequest": "0.5", "cpuLimit": 1, "memoryRequest": "128Mi", "memoryLimit": "1Gi"},
}


def test_the_quota_and_the_defaults_are_created_admit_the_workloads_and_a_second_run_writes_nothing(
    kube: Kube,
) -> None:
    inp = _input(SETTING)
    first = run(kube, inp)
    ns = inp.pipeline_namespace
    assert {f"ResourceQuota/{EXECUTORS_NAME}", f"LimitRange/{EXECUTORS_NAME}"} <= set(first.applied_objects)
    quota = kube.read_object("v1", "ResourceQuota", EXECUTORS_NAME, ns)
    assert quota["spec"]["hard"] == {"limits.memory": "8Gi", "pods": "20", "requests.cpu": "4"}
    limits = kube.read_object("v1", "LimitRange", EXECUTORS_NAME, ns)["spec"]["limits"][0]
    assert limits["defaultRequest"] == {"cpu": "500m", "memory": "128Mi"}
    assert limits["default"] == {"cpu": "1", "memory": "1Gi"}
    # The registry and the object store run under the quota: their pods got the defaults and were admitted.
    pods = kube.list_objects("v1", "Pod", namespace=ns)
    assert pods and all(
        c["resources"]["requests"]["cpu"] == "500m" for p in pods for c in p["spec"]["containers"]
    )

    writes = kube.total_writes
    again = run(kube, inp)
    assert again.writes == 0 and kube.total_writes == writes, again.applied_objects


def test_a_quota_no_longer_asked_for_is_removed_and_then_costs_nothing(kube: Kube) -> None:
    inp = _input(SETTING)
    run(kube, inp)
    unset = inp.model_copy(update={"resource_quota": {}, "default_requests": {}, "default_limits": {}})
    removed = run(kube, unset)
    assert {f"ResourceQuota/{EXECUTORS_NAME} (deleted)", f"LimitRange/{EXECUTORS_NAME} (deleted)"} <= set(
        removed.applied_objects
    )
    assert kube.find_object("v1", "ResourceQuota", EXECUTORS_NAME, inp.pipeline_namespace) is None
    assert run(kube, unset).writes == 0
