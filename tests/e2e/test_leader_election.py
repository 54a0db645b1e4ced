"""Replicas: two worker processes on one task queue, one Lease; the bridge runs on the leader only.

The leader is SIGKILLed in the middle of a burst of runs (no release, no drain): the follower takes
the Lease once it has expired, its bridge starts the runs the dead leader never saw, Temporal hands
the dead worker's workflow and activity tasks to the survivor, and every run finishes with exactly
one Jenkins build.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from activities.kube import Kube
from crds.execution import PipelineExecution
from crds.reasons import ExecutionPhase
from worker.leader import LeaseStore
from worker.runs import create_run

pytestmark = pytest.mark.e2e

TASK_QUEUE_ANNOTATION = "devops.cubepaas.io/task-queue"
LEASE_SECONDS = 6
PIPELINE = """
stages:
- name: Work
  steps:
  - runScriptConfig: {image: alpine, shellScript: "for i in 1 2 3 4; do echo tick $i; sleep 1; done"}
"""


def metric(worker: Any, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in the worker's /metrics")


def holder(lease: LeaseStore) -> str | None:
    record = lease.read()
    return record.holder if record is not None else None


def started(kube: Kube, ns: str, name: str) -> bool:
    status = kube.get(PipelineExecution, ns, name).status
    return status is not None and status.workflow is not None


def builds_of(jenkins_client: Any, job: str) -> list[int]:
    return sorted(b["number"] for b in jenkins_client.get_job_info(job)["builds"])


def test_the_follower_takes_over_from_a_killed_leader_and_every_run_finishes_once(
    kube: Kube,
    kube_api_client: Any,
    project_namespace: Callable[..., str],
    pipeline_factory: Callable[..., Any],
    git_repo: Callable[..., tuple[str, str]],
    dedicated_worker: Callable[[str], Any],
    jenkins_client: Any,
    wait_until: Callable[..., Any],
) -> None:
    ns = project_namespace("leader", executor_quota=10, keep_jenkins_jobs=20)
    lease = LeaseStore(kube_api_client, ns, "workers")
    first, second = dedicated_worker(ns), dedicated_worker(ns)
    second.queue = second.env["CUBEPAAS_TASK_QUEUE"] = first.queue
    for worker, identity in ((first, "worker-a"), (second, "worker-b")):
        worker.env.update(
            CUBEPAAS_LEADER_ELECTION="true",
            CUBEPAAS_LEASE_NAMESPACE=ns,
            CUBEPAAS_LEASE_NAME="workers",
            CUBEPAAS_LEASE_DURATION=str(LEASE_SECONDS),
            CUBEPAAS_IDENTITY=identity,
        )
    first.start()  # ready as soon as it serves the task queue; the Lease follows
    wait_until(lambda: holder(lease) == "worker-a", 60, "worker-a to take the free lease")
    second.start()  # ready as a follower: /readyz does not wait for a bridge it must not run
    wait_until(lambda: metric(first, "cubepaas_worker_leader") == 1, 30, "worker-a to run the bridge")
    assert metric(second, "cubepaas_worker_leader") == 0
    assert metric(second, "cubepaas_bridge_watches_running") == 0

    url, sha = git_repo(PIPELINE)
    pipeline_factory(ns, "app", url)
    annotations = {TASK_QUEUE_ANNOTATION: first.queue}
    before = [create_run(kube_api_client, ns, "app", commit=sha, annotations=annotations) for _ in range(3)]
    wait_until(
        lambda: all(started(kube, ns, pe.name) for pe in before),
        60,
        "the leader's bridge to start the first runs",
    )
    first.kill()  # SIGKILL: no release, the lease must expire
    held = lease.read()  # the dead leader's last renewal
    assert held is not None and held.holder == "worker-a" and held.renew_time is not None
    after = [create_run(kube_api_client, ns, "app", commit=sha, annotations=annotations) for _ in range(3)]

    taken = wait_until(
        lambda: (r := lease.read()) is not None and r.holder == "worker-b" and r,
        LEASE_SECONDS * 4,
        "worker-b to take the lease",
    )
    # The follower needs the lease to stay unchanged for a whole duration on its own clock; it reads
    # every retry period (duration * 2/15), so it is leader within the duration plus two retries.
    assert taken.acquire_time is not None
    assert (taken.acquire_time - held.renew_time).total_seconds() <= LEASE_SECONDS * (1 + 4 / 15) + 1
    assert taken.transitions == held.transitions + 1

    runs = before + after
    finished = {}
    for pe in runs:
        finished[pe.name] = wait_until(
            lambda pe=pe: (
                (st := kube.get(PipelineExecution, ns, pe.name).status)
                and st.phase is not None
                and st.phase.is_terminal
                and st
            ),
            240,
            f"{pe.name} to finish",
        )
    assert {name: st.phase for name, st in finished.items()} == dict.fromkeys(
        finished, ExecutionPhase.SUCCESS
    )
    jobs = [st.jenkins.job for st in finished.values() if st.jenkins is not None]
    assert len(set(jobs)) == len(runs)
    assert {job: builds_of(jenkins_client, job) for job in jobs} == {job: [1] for job in jobs}
    assert metric(second, "cubepaas_worker_leader") == 1


def test_a_leader_stopped_with_sigterm_releases_the_lease_for_an_immediate_hand_over(
    kube_api_client: Any,
    project_namespace: Callable[..., str],
    dedicated_worker: Callable[[str], Any],
    wait_until: Callable[..., Any],
) -> None:
    ns = project_namespace("handover")
    lease = LeaseStore(kube_api_client, ns, "workers")
    leader = dedicated_worker(ns)
    leader.env.update(
        CUBEPAAS_LEADER_ELECTION="true",
        CUBEPAAS_LEASE_NAMESPACE=ns,
        CUBEPAAS_LEASE_NAME="workers",
        CUBEPAAS_LEASE_DURATION="60",  # far longer than the test: only a release lets anyone in
        CUBEPAAS_IDENTITY="leaving",
    )
    leader.start()
    wait_until(lambda: holder(lease) == "leaving", 60, "the first worker to take the free lease")
    leader.stop()  # SIGTERM: the bridge stops, then the lease is released
    assert leader.proc.returncode == 0
    released = lease.read()
    assert released is not None and released.holder is None
    follower = dedicated_worker(ns)
    follower.env.update(
        CUBEPAAS_LEADER_ELECTION="true",
        CUBEPAAS_LEASE_NAMESPACE=ns,
        CUBEPAAS_LEASE_NAME="workers",
        CUBEPAAS_LEASE_DURATION="60",
        CUBEPAAS_IDENTITY="arriving",
    )
    follower.start()
    # Well inside the 60 s the lease would otherwise hold: the release handed it over.
    wait_until(lambda: holder(lease) == "arriving", 50, "the hand-over")
