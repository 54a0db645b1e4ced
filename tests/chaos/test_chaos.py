"""Faults on the real stack mid-build: every run ends, none is built twice (``make chaos``).

Each test runs one scenario of :mod:`devstack.chaos` with its own worker process(es); ``make bench``
prints the same scenarios' figures (including the worst resume time after a worker SIGKILL, which is
measured there and never asserted here). The phase each run ends in is asserted where it is known: an
apiserver or object-store outage delays a run but does not change how it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.chaos import Chaos, ChaosResult
from devstack.stack import Stack

#: A run whose worker died inside an activity without a heartbeat timeout waits for its start-to-close
#: timeout (the bootstrap's is 15 min) before Temporal retries it: slow, not lost.
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(3000)]

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "chaos"


@pytest.fixture(scope="module")
def chaos(
    stack: Stack, stack_env: dict[str, str], kube: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chaos]:
    scenarios = Chaos(stack, stack_env, kube, tmp_path_factory.mktemp("chaos-repos"), OUTPUT)
    try:
        yield scenarios
    finally:
        scenarios.close()


def no_run_lost_or_built_twice(result: ChaosResult) -> None:
    print(f"{result.scenario}: {result.summary()}")
    assert result.lost == 0, result.notes
    assert result.duplicates == 0, result.notes


@pytest.mark.parametrize("component", ["kube-apiserver", "minio"])
def test_an_apiserver_or_object_store_outage_mid_build_delays_the_runs_which_still_succeed(
    chaos: Chaos, component: str
) -> None:
    result = chaos.component_outage(component)
    no_run_lost_or_built_twice(result)
    assert result.phases == {"Success": result.runs}, result.notes


def test_a_jenkins_restart_mid_build_ends_every_run_and_builds_nothing_twice(chaos: Chaos) -> None:
    result = chaos.component_outage("jenkins")
    no_run_lost_or_built_twice(result)


def test_a_worker_sigkilled_during_a_burst_of_twenty_runs_loses_none_when_a_new_worker_starts(
    chaos: Chaos,
) -> None:
    result = chaos.worker_killed_in_burst(runs=20)
    no_run_lost_or_built_twice(result)
    assert result.phases == {"Success": 20}, result.notes


def test_two_workers_at_once_run_each_execution_once(chaos: Chaos) -> None:
    result = chaos.two_workers(runs=6)
    no_run_lost_or_built_twice(result)
    assert result.phases == {"Success": 6}, result.notes
    assert not result.notes


def test_a_cr_deleted_mid_build_cancels_its_workflow_and_stops_its_build(chaos: Chaos) -> None:
    result = chaos.cr_deleted_mid_build()
    no_run_lost_or_built_twice(result)
    assert result.phases["build ABORTED"] == 1, result.phases
    assert sum(v for k, v in result.phases.items() if k.startswith("workflow ")) == 1, result.phases
