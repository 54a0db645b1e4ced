"""Jenkins access for activities: the engine (python-jenkins + the public REST API), the status table, the
complete log reader, the Pipeline job config and the Jenkinsfile generator.

Everything here is blocking: activities call it from a thread pool. Nothing here imports development tooling;
it works unchanged against a real Jenkins and against jenkins-lite.
"""

from __future__ import annotations

from activities.jenkins.client import (
    BuildRef,
    BuildStatus,
    JenkinsEngine,
    PendingInput,
    StageStatus,
    StepStatus,
    job_name,
)
from activities.jenkins.jenkinsfile import JenkinsfileInput, build_plan, render_jenkinsfile
from activities.jenkins.logs import ConsoleChunk, LogCursor, StepLogChunk
from activities.jenkins.status import StepState, map_result, map_status

__all__ = [
    "BuildRef",
    "BuildStatus",
    "ConsoleChunk",
    "JenkinsEngine",
    "JenkinsfileInput",
    "LogCursor",
    "PendingInput",
    "StageStatus",
    "StepLogChunk",
    "StepState",
    "StepStatus",
    "build_plan",
    "job_name",
    "map_result",
    "map_status",
    "render_jenkinsfile",
]
