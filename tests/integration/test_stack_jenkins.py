"""jenkins-lite as a stack component: reachable through python-jenkins, and restartable."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.stack import Stack

pytestmark = pytest.mark.integration


def test_jenkins_lite_answers_python_jenkins_with_the_stack_credentials(jenkins_client: Any) -> None:
    assert jenkins_client.get_version()
    assert isinstance(jenkins_client.get_jobs(), list)


def test_jenkins_lite_restart_brings_it_back_on_the_same_url(stack: Stack, jenkins_client: Any) -> None:
    before = stack.status_of("jenkins")
    stack.jenkins_lite_restart()
    after = stack.status_of("jenkins")
    assert after.healthy and after.url == before.url and after.pid != before.pid
    assert jenkins_client.get_version()
