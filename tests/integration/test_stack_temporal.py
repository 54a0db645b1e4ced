"""The local Temporal dev server: workflows run, search attributes exist, history survives a restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():  # the sandbox re-imports this module: pass tooling through
    from devstack.components import SEARCH_ATTRIBUTES
    from devstack.stack import Stack

pytestmark = pytest.mark.integration


@activity.defn
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class ShoutWorkflow:
    @workflow.run
    async def run(self, text: str) -> str:
        loud = await workflow.execute_activity(shout, text, start_to_close_timeout=timedelta(seconds=30))
        return f"{loud}!"


async def _run_trivial_workflow(client: Client) -> str:
    task_queue = f"stacktest-{uuid.uuid4().hex}"
    workflow_id = f"stacktest-shout-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[ShoutWorkflow], activities=[shout]):
        result = await client.execute_workflow(
            ShoutWorkflow.run, "hello", id=workflow_id, task_queue=task_queue,
            execution_timeout=timedelta(seconds=60),
        )  # fmt: skip
    assert result == "HELLO!"
    return workflow_id


async def test_a_trivial_workflow_runs_on_an_in_process_worker(temporal_client: Client) -> None:
    workflow_id = await _run_trivial_workflow(temporal_client)
    described = await temporal_client.get_workflow_handle(workflow_id).describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED


async def test_the_custom_search_attributes_exist_with_their_types(temporal_client: Client) -> None:
    listed = await temporal_client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=temporal_client.namespace)
    )
    kinds = {
        "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    }
    expected = {name: kinds[kind] for name, kind in SEARCH_ATTRIBUTES.items()}
    assert expected["DevopsRun"] == IndexedValueType.INDEXED_VALUE_TYPE_INT
    assert {name: listed.custom_attributes.get(name) for name in expected} == expected


async def test_a_finished_workflows_history_survives_a_dev_server_restart(
    temporal_client: Client, stack: Stack
) -> None:
    workflow_id = await _run_trivial_workflow(temporal_client)
    before = [
        event.event_type
        for event in (await temporal_client.get_workflow_handle(workflow_id).fetch_history()).events
    ]
    old_pid = stack.status_of("temporal").pid

    await asyncio.to_thread(stack.restart_component, "temporal")

    assert stack.status_of("temporal").pid != old_pid
    deadline = time.monotonic() + 30
    while True:  # the session client reconnects on its own; give it a moment
        try:
            history = await temporal_client.get_workflow_handle(workflow_id).fetch_history()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    assert [event.event_type for event in history.events] == before
    described = await temporal_client.get_workflow_handle(workflow_id).describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED
