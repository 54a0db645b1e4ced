"""The worker runs every workflow the product defines (a workflow left out hangs whoever starts it)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import workflows
from worker.main import workflow_classes

pytestmark = pytest.mark.unit


def _defined_workflows() -> set[type]:
    found: set[type] = set()
    for info in pkgutil.iter_modules(workflows.__path__):
        module = importlib.import_module(f"workflows.{info.name}")
        for value in vars(module).values():
            ours = isinstance(value, type) and value.__module__ == module.__name__
            if ours and getattr(value, "__temporal_workflow_definition", None) is not None:
                found.add(value)
    return found


def test_every_workflow_defined_in_the_workflows_package_is_registered_on_the_worker() -> None:
    defined = _defined_workflows()
    assert len(defined) >= 5  # execution, quota, retention, scheduled run, SCM poll
    assert defined == set(workflow_classes())
