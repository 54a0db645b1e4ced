"""What the engine returns: builds, their stages and steps, gates, a pipeline's jobs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from activities.jenkins.status import StepState


class BuildRef(BaseModel):
    """A triggered build: the queue item while it waits, the build number once it started."""

    queue_id: int | None = None
    number: int | None = None
    #: The queue item was cancelled before a build started.
    cancelled: bool = False


class StepStatus(BaseModel):
    """One step: the nested ``step-<stage>-<step>`` stage of the run."""

    stage_index: int
    step_index: int
    name: str
    node_id: str
    status: str
    state: StepState
    start_millis: int | None = None
    end_millis: int | None = None
    error: str | None = None


class StageStatus(BaseModel):
    """One user stage (index 0 is the clone stage) and its steps."""

    index: int
    name: str
    node_id: str | None
    status: str
    state: StepState
    start_millis: int | None = None
    end_millis: int | None = None
    error: str | None = None
    steps: list[StepStatus] = Field(default_factory=list)


class PendingInput(BaseModel):
    """An ``input`` step waiting (a gate): its id as Jenkins reports it (capitalised) and its URLs."""

    id: str
    message: str = ""
    proceed_url: str
    abort_url: str


class PipelineJob(BaseModel):
    """A job of one pipeline run (``<namespace>-<pipeline>-<run>``) and whether Jenkins still works on it."""

    name: str
    run: int
    #: No build yet, a build queued, or the last build still building.
    active: bool


class BuildStatus(BaseModel):
    """A build as the workflow needs it."""

    job: str
    number: int
    building: bool
    result: str | None
    #: wfapi run status (``IN_PROGRESS``, ``PAUSED_PENDING_INPUT``, ``SUCCESS``...), or derived from result.
    status: str
    state: StepState
    start_millis: int | None = None
    end_millis: int | None = None
    stages: list[StageStatus] = Field(default_factory=list)
    pending_inputs: list[PendingInput] = Field(default_factory=list)


CredentialKind = Literal["usernamePassword", "string"]


__all__ = [
    "BuildRef",
    "BuildStatus",
    "CredentialKind",
    "PendingInput",
    "PipelineJob",
    "StageStatus",
    "StepStatus",
]
