"""worker.bridge against the real apiserver and Temporal dev server.

A tiny stand-in workflow is registered under the name ``PipelineExecutionWorkflow`` in an in-process
worker on a unique task queue: as the real one, it writes its own ``status.workflow`` first; then it runs
until cancelled and records the signals it gets (query ``signals``). The real workflow is covered by the
end-to-end tests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from kubernetes import client as k8s
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client, Interceptor, OutboundInterceptor, WorkflowExecutionStatus
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.kube import Kube
from crds.execution import PipelineExecution, PipelineExecutionSpec, WorkflowRef
from crds.messages import EXECUTION_WORKFLOW, ControlInput, ExecutionWorkflowInput, execution_workflow_id
from crds.meta import ObjectMeta
from worker.bridge import (
    CANCELLED_BY_ANNOTATION,
    SA_BRANCH,
    SA_NAMESPACE,
    SA_PHASE,
    SA_PIPELINE,
    SA_RUN,
    TASK_QUEUE_ANNOTATION,
    Bridge,
)
from worker.settings import WorkerSettings

pytestmark = pytest.mark.integration


class LinkInput(BaseModel):
    namespace: str
    name: str
    ref: WorkflowRef


def link_activity(kube: Kube) -> Callable[[LinkInput], None]:
    @activity.defn(name="standin.link")
    def link(inp: LinkInput) -> None:
        kube.patch_status(
            PipelineExecution,
            inp.namespace,
            inp.name,
            {"workflow": inp.ref.model_dump(mode="json", by_alias=True)},
        )

    return link


@workflow.defn(name=EXECUTION_WORKFLOW)
class StandInExecutionWorkflow:
    """Writes its status.workflow, then runs until cancelled; records every control signal as
    ``name:reason:user``."""

    def __init__(self) -> None:
        self._signals: list[str] = []

    @workflow.run
    async def run(self, inp: ExecutionWorkflowInput) -> str:
        info = workflow.info()
        ref = WorkflowRef.of(inp.ui_base_url, info.namespace, info.workflow_id, info.first_execution_run_id)
        await workflow.execute_activity(
            "standin.link",
            LinkInput(namespace=inp.execution.namespace, name=inp.execution.name, ref=ref),
            start_to_close_timeout=timedelta(seconds=30),
        )
        await workflow.wait_condition(lambda: False)
        return inp.execution.name

    def _record(self, name: str, inp: ControlInput) -> None:
        self._signals.append(f"{name}:{inp.reason}:{inp.user}")

    @workflow.signal(name="pause")
    def pause(self, inp: ControlInput | None = None) -> None:
        self._record("pause", inp or ControlInput())

    @workflow.signal(name="resume")
    def resume(self, inp: ControlInput | None = None) -> None:
        self._record("resume", inp or ControlInput())

    @workflow.signal(name="cancel")
    def cancel(self, inp: ControlInput | None = None) -> None:
        self._record("cancel", inp or ControlInput())

    @workflow.query(name="signals")
    def signals(self) -> list[str]:
        return list(self._signals)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail naming ``what``."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture
async def task_queue(temporal_client: Client, kube: Kube) -> AsyncIterator[str]:
    queue = f"bridge-test-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(4) as pool:
        worker = Worker(
            temporal_client,
            task_queue=queue,
            workflows=[StandInExecutionWorkflow],
            activities=[link_activity(kube)],
            activity_executor=pool,
            workflow_runner=UnsandboxedWorkflowRunner(),
        )
        async with worker:
            yield queue


@pytest.fixture
def settings(stack_env: dict[str, str], namespace: str, task_queue: str) -> WorkerSettings:
    return WorkerSettings.load(
        **stack_env, CUBEPAAS_TASK_QUEUE=task_queue, CUBEPAAS_WATCH_NAMESPACES=namespace
    )


class Bridges:
    """Starts bridges as tasks and stops them all at the end of a test."""

    def __init__(self, kube: Kube, client: Client, settings: WorkerSettings) -> None:
        self.kube, self.client, self.settings = kube, client, settings
        self.running: list[tuple[Bridge, asyncio.Task[None]]] = []

    async def start(self) -> Bridge:
        bridge = Bridge(self.kube, self.client, self.settings)
        task = asyncio.create_task(bridge.run())
        self.running.append((bridge, task))
        await eventually(lambda: _value(bridge.ready), "the bridge to list and watch")
        return bridge

    async def stop(self, bridge: Bridge) -> None:
        for entry in list(self.running):
            if entry[0] is bridge:
                bridge.stop()
                await asyncio.wait_for(entry[1], 15)
                self.running.remove(entry)

    async def stop_all(self) -> None:
        for bridge, _ in list(self.running):
            await self.stop(bridge)


async def _value(value: Any) -> Any:
    return value


@pytest.fixture
async def bridges(kube: Kube, temporal_client: Client, settings: WorkerSettings) -> AsyncIterator[Bridges]:
    group = Bridges(kube, temporal_client, settings)
    yield group
    await group.stop_all()


def _execution(
    kube: Kube, namespace: str, task_queue: str, name: str = "app-1", **spec: Any
) -> PipelineExecution:
    """An execution routed to this test's task queue (other bridges on the shared stack leave it alone)."""
    return kube.create(
        PipelineExecution(
            metadata=ObjectMeta(
                name=name, namespace=namespace, annotations={TASK_QUEUE_ANNOTATION: task_queue}
            ),
            spec=PipelineExecutionSpec(pipelineName="app", run=1, branch="main", **spec),
        )
    )


async def _count(client: Client, workflow_id: str) -> int:
    return len([w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")])


async def _workflow_written(kube: Kube, namespace: str, name: str) -> Any:
    pe = await asyncio.to_thread(kube.get, PipelineExecution, namespace, name)
    return pe.status.workflow if pe.status and pe.status.workflow and pe.status.workflow.run_id else None


async def test_an_execution_gets_exactly_one_workflow_with_two_bridges_and_after_a_restart(
    kube: Kube, namespace: str, task_queue: str, temporal_client: Client, bridges: Bridges
) -> None:
    first, second = await asyncio.gather(bridges.start(), bridges.start())
    pe = _execution(kube, namespace, task_queue)
    workflow_id = execution_workflow_id(namespace, pe.name, pe.metadata.uid or "")

    ref = await eventually(lambda: _workflow_written(kube, namespace, pe.name), "status.workflow")
    await eventually(
        lambda: _value(
            first.stats["started"] + first.stats["existing"]
            == 1
            == second.stats["started"] + second.stats["existing"]
        ),
        "both bridges to handle the execution",
    )
    assert first.stats["started"] + second.stats["started"] >= 1
    await eventually(lambda: _count(temporal_client, workflow_id), "the workflow to be listed")
    assert await _count(temporal_client, workflow_id) == 1

    await bridges.stop_all()
    third = await bridges.start()
    await eventually(
        lambda: _value(third.stats["existing"] == 1), "the restarted bridge to reuse the workflow"
    )
    assert third.stats["started"] == 0
    assert await _count(temporal_client, workflow_id) == 1
    assert (await _workflow_written(kube, namespace, pe.name)).run_id == ref.run_id

    # Once the workflow is closed, a restarted bridge starts nothing (REJECT_DUPLICATE is a no-op).
    await temporal_client.get_workflow_handle(workflow_id).terminate("test: close it")
    await bridges.stop_all()
    fourth = await bridges.start()
    await eventually(lambda: _value(fourth.stats["closed"] == 1), "the bridge to see the closed workflow")
    assert fourth.stats["started"] == fourth.stats["existing"] == 0
    assert await _count(temporal_client, workflow_id) == 1


async def test_the_workflow_carries_search_attributes_a_summary_and_its_ui_link_is_written_to_the_status(
    kube: Kube,
    namespace: str,
    task_queue: str,
    temporal_client: Client,
    bridges: Bridges,
    settings: WorkerSettings,
) -> None:
    await bridges.start()
    pe = _execution(kube, namespace, task_queue, triggered_by="webhook")
    workflow_id = execution_workflow_id(namespace, pe.name, pe.metadata.uid or "")

    ref = await eventually(lambda: _workflow_written(kube, namespace, pe.name), "status.workflow")

    description = await temporal_client.get_workflow_handle(workflow_id).describe()
    assert (ref.id, ref.run_id, ref.namespace) == (
        workflow_id,
        description.run_id,
        settings.temporal_namespace,
    )
    assert ref.ui_url == (
        f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/"
        f"{quote(workflow_id, safe='')}/{description.run_id}/history"
    )
    assert settings.temporal_ui_url.startswith("http://")
    attributes = description.typed_search_attributes
    assert attributes.get(SA_PIPELINE) == "app"
    assert attributes.get(SA_NAMESPACE) == namespace
    assert attributes.get(SA_BRANCH) == "main"
    assert attributes.get(SA_RUN) == 1
    assert attributes.get(SA_PHASE) == "Waiting"
    assert await description.static_summary() == "app #1 on main (webhook)"
    details = await description.static_details()
    assert details is not None
    assert f"`{namespace}/{pe.name}`" in details
    assert f"kubectl -n {namespace} get pipelineexecution {pe.name}" in details


async def test_deleting_the_execution_cancels_its_workflow(
    kube: Kube, namespace: str, task_queue: str, temporal_client: Client, bridges: Bridges
) -> None:
    bridge = await bridges.start()
    pe = _execution(kube, namespace, task_queue)
    workflow_id = execution_workflow_id(namespace, pe.name, pe.metadata.uid or "")
    await eventually(lambda: _workflow_written(kube, namespace, pe.name), "status.workflow")

    kube.delete(PipelineExecution, namespace, pe.name)

    async def status() -> Any:
        described = await temporal_client.get_workflow_handle(workflow_id).describe()
        return described.status == WorkflowExecutionStatus.CANCELED

    await eventually(status, "the workflow to be cancelled")
    assert bridge.stats["cancel"] == 1


async def test_paused_and_cancelled_changes_are_forwarded_as_signals_once_each(
    kube: Kube, namespace: str, task_queue: str, temporal_client: Client, bridges: Bridges
) -> None:
    bridge = await bridges.start()
    pe = _execution(kube, namespace, task_queue)
    workflow_id = execution_workflow_id(namespace, pe.name, pe.metadata.uid or "")
    handle = temporal_client.get_workflow_handle(workflow_id)
    await eventually(lambda: _workflow_written(kube, namespace, pe.name), "status.workflow")

    async def signals(count: int) -> Any:
        got: list[str] = await handle.query("signals", result_type=list[str])
        return got if len(got) >= count else None

    kube.patch(PipelineExecution, namespace, pe.name, {"spec": {"paused": True}})
    assert await eventually(lambda: signals(1), "pause") == ["pause:spec.paused set:"]

    # Changes of other fields send nothing.
    kube.patch(PipelineExecution, namespace, pe.name, {"metadata": {"labels": {"touched": "yes"}}})
    kube.patch(PipelineExecution, namespace, pe.name, {"spec": {"paused": True}})
    kube.patch(PipelineExecution, namespace, pe.name, {"spec": {"paused": False}})
    assert await eventually(lambda: signals(2), "resume") == [
        "pause:spec.paused set:",
        "resume:spec.paused cleared:",
    ]

    kube.patch(
        PipelineExecution,
        namespace,
        pe.name,
        {"metadata": {"annotations": {CANCELLED_BY_ANNOTATION: "alice"}}, "spec": {"cancelled": True}},
    )
    got = await eventually(lambda: signals(3), "cancel")
    assert got[2] == "cancel:spec.cancelled set:alice"
    kube.patch(PipelineExecution, namespace, pe.name, {"metadata": {"labels": {"touched": "again"}}})
    await asyncio.sleep(1.0)
    assert len(await handle.query("signals", result_type=list[str])) == 3
    assert (bridge.stats["signal:pause"], bridge.stats["signal:resume"], bridge.stats["signal:cancel"]) == (
        1,
        1,
        1,
    )


async def test_a_terminal_execution_gets_no_workflow(
    kube: Kube, namespace: str, task_queue: str, temporal_client: Client, bridges: Bridges
) -> None:
    pe = _execution(kube, namespace, task_queue)
    kube.patch_status(PipelineExecution, namespace, pe.name, {"phase": "Success"})
    bridge = await bridges.start()
    await asyncio.sleep(1.0)
    workflow_id = execution_workflow_id(namespace, pe.name, pe.metadata.uid or "")
    assert await _count(temporal_client, workflow_id) == 0
    assert bridge.stats["started"] == 0


async def test_an_execution_routed_to_another_task_queue_is_left_to_that_queues_bridge(
    kube: Kube, namespace: str, task_queue: str, temporal_client: Client, bridges: Bridges
) -> None:
    bridge = await bridges.start()
    other = _execution(kube, namespace, f"{task_queue}-other", name="app-2")
    mine = _execution(kube, namespace, task_queue, name="app-1")
    await eventually(lambda: _workflow_written(kube, namespace, mine.name), "status.workflow of app-1")
    other_id = execution_workflow_id(namespace, other.name, other.metadata.uid or "")
    assert await _count(temporal_client, other_id) == 0
    assert await _workflow_written(kube, namespace, other.name) is None
    assert bridge.stats["started"] == 1


class CountingInterceptor(Interceptor):
    """Counts the Temporal calls a client makes, by kind."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _CountingOutbound(next, self.calls)


class _CountingOutbound(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, calls: Counter[str]) -> None:
        super().__init__(next)
        self.calls = calls

    async def start_workflow(self, input: Any) -> Any:
        self.calls["start_workflow"] += 1
        return await super().start_workflow(input)

    async def describe_workflow(self, input: Any) -> Any:
        self.calls["describe_workflow"] += 1
        return await super().describe_workflow(input)

    async def signal_workflow(self, input: Any) -> None:
        self.calls["signal_workflow"] += 1
        await super().signal_workflow(input)

    async def cancel_workflow(self, input: Any) -> None:
        self.calls["cancel_workflow"] += 1
        await super().cancel_workflow(input)

    async def terminate_workflow(self, input: Any) -> None:
        self.calls["terminate_workflow"] += 1
        await super().terminate_workflow(input)


def _finished(
    kube: Kube, namespace: str, names: list[str], queue: str, *, route_to: str | None = None
) -> None:
    """Finished executions: created for ``queue``, given a terminal status, then routed to ``route_to``."""

    def one(name: str) -> None:
        _execution(kube, namespace, queue, name=name)
        kube.patch_status(PipelineExecution, namespace, name, {"phase": "Success", "message": "done"})
        if route_to is not None:
            kube.patch(
                PipelineExecution,
                namespace,
                name,
                {"metadata": {"annotations": {TASK_QUEUE_ANNOTATION: route_to}}},
            )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))


async def test_finished_executions_are_listed_in_pages_and_cost_no_temporal_call_no_write_and_no_entry(
    kube: Kube, namespace: str, task_queue: str, temporal_client: Client, settings: WorkerSettings
) -> None:
    await asyncio.to_thread(_finished, kube, namespace, [f"done-{i}" for i in range(250)], task_queue)
    # The bridge's own clients, so that only its requests are counted.
    lists: list[dict[str, list[str]]] = []
    api = k8s.ApiClient(kube.api_client.configuration)
    call_api = api.call_api

    def counting_call_api(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        parsed = urlsplit(url)
        query = parse_qs(parsed.query)
        listing = method == "GET" and query.get("watch", [""])[0].lower() != "true"
        if listing and parsed.path.endswith(f"/namespaces/{namespace}/pipelineexecutions"):
            lists.append(query)
        return call_api(method, url, *args, **kwargs)

    api.call_api = counting_call_api  # type: ignore[method-assign]
    bridge_kube = Kube(api)
    counter = CountingInterceptor()
    counting_client = Client(
        temporal_client.service_client,
        namespace=temporal_client.namespace,
        data_converter=temporal_client.data_converter,
        interceptors=[counter],
    )
    bridge = Bridge(bridge_kube, counting_client, settings, list_page_size=100)
    task = asyncio.create_task(bridge.run())
    try:
        await eventually(lambda: _value(bridge.ready), "the bridge to list and watch")
        assert [q.get("limit") for q in lists[:3]] == [["100"]] * 3
        assert [bool(q.get("continue")) for q in lists[:3]] == [False, True, True]
        assert bridge.stats["list_pages"] == 3

        # Finished while the bridge watches: they reach it already finished (routed to it last).
        await asyncio.to_thread(
            _finished,
            kube,
            namespace,
            [f"later-{i}" for i in range(20)],
            f"{task_queue}-x",
            route_to=task_queue,
        )
        for name in ("done-0", "done-1", "later-0"):
            kube.delete(PipelineExecution, namespace, name)
        # Events of one namespace arrive in order: once the new run has its workflow, the bridge has
        # handled every event of the finished ones.
        new = _execution(kube, namespace, task_queue, name="new-1")
        await eventually(
            lambda: _workflow_written(kube, namespace, new.name), "status.workflow of the new run"
        )
        assert counter.calls == Counter(start_workflow=1)
        assert sum(bridge_kube.writes.values()) == 0  # the new run's workflow writes its own link
        assert bridge.tracking == 1

        # A run that finishes is forgotten.
        kube.patch_status(PipelineExecution, namespace, new.name, {"phase": "Success"})
        await eventually(lambda: _value(bridge.tracking == 0), "the finished run to be forgotten")
        assert counter.calls == Counter(start_workflow=1)
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 15)
        api.close()  # type: ignore[no-untyped-call]
