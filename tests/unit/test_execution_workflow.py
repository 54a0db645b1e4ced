"""PipelineExecutionWorkflow on Temporal's time-skipping test server, with stub activities.

Every branch of the workflow: the phases in order, gates, pause, approval, cancel in each phase,
Temporal's own cancellation, continue-as-new, an error in every phase ending the run through the one
finish path, and an abort that Jenkins did on its own.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from workflow_harness import World, eventually, permanent, running, snapshot, start, step

from activities.errors import DataPlaneUnavailableError, to_application_error
from crds.execution import PipelineExecutionStatus
from crds.messages import (
    Activity,
    BuildSnapshot,
    ControlInput,
    ExecutionRef,
    ExecutionWorkflowInput,
    GateDecisionInput,
    Signal,
    StatusQueryResult,
)
from crds.reasons import ConditionStatus, ConditionType, ExecutionPhase, Reason, StageState
from workflows import progress
from workflows.execution import (
    PROVISIONING_SHOWN_AFTER,
    SA_BRANCH,
    SA_NAMESPACE,
    SA_PHASE,
    SA_PIPELINE,
    SA_RUN,
    SA_TRIGGER,
    PipelineExecutionWorkflow,
)
from workflows.options import HEARTBEAT, LOCAL

pytestmark = pytest.mark.unit

Handle = WorkflowHandle[Any, PipelineExecutionStatus]


async def query(handle: Handle) -> StatusQueryResult:
    return await handle.query(PipelineExecutionWorkflow.status)


def gates(world: World) -> list[tuple[int, bool]]:
    return [(g.stage, g.proceed) for g in world.called(Activity.JENKINS_GATE)]


def reason(status: PipelineExecutionStatus, type_: ConditionType = ConditionType.SUCCEEDED) -> str | None:
    cond = status.condition(type_)
    return cond.reason if cond else None


async def test_a_build_that_succeeds_ends_the_run_success_after_storing_every_log_and_cleaning_up(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World()
    async with running(dev_env, world) as queue:
        status = await (await start(dev_env, queue)).result()
    assert status.phase == ExecutionPhase.SUCCESS and reason(status) == Reason.BUILD_SUCCEEDED
    assert [(c.stage, c.step) for c in world.called(Activity.STORE_STEP_LOG)] == [(0, 0), (1, 0), (2, 0)]
    assert [s.steps[0].log_object for s in status.stages] == ["logs/0/0.log", "logs/1/0.log", "logs/2/0.log"]
    assert gates(world) == [(1, True), (2, True)]
    assert len(world.called(Activity.CLEANUP)) == 1 and len(world.called(Activity.UPDATE_PIPELINE)) == 1
    assert world.written()[-1].phase == ExecutionPhase.SUCCESS
    # The load writes nothing: the next phase's status follows within moments. Nor does a bootstrap done in
    # moments, nor the trigger: the follow activity writes Building with its first look at the build (this
    # build shows none: every look finds it at a gate the activity proceeds, or ended).
    writes = [c.status.phase for c in world.called(Activity.WRITE_STATUS)]
    assert writes == [ExecutionPhase.SUCCESS]


async def _succeeded(dev_env: WorkflowEnvironment, world: World) -> PipelineExecutionStatus:
    """Run one execution in ``world`` to its end, which is Success."""
    async with running(dev_env, world) as queue:
        status = await (await start(dev_env, queue)).result()
    assert status.phase == ExecutionPhase.SUCCESS, status.message
    return status


async def test_the_prepare_starts_the_build_itself_and_no_trigger_activity_runs(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World()
    status = await _succeeded(dev_env, world)
    (prepared,) = world.called(Activity.JENKINS_PREPARE)
    assert prepared.trigger_execution_id == progress.execution_id(prepared.context)
    assert not world.called(Activity.JENKINS_TRIGGER) and world.started == ["app-1"]
    assert status.jenkins is not None and (status.jenkins.job, status.jenkins.build) == ("app-1", 1)
    (cleanup,) = world.called(Activity.CLEANUP)
    assert cleanup.target.job == "app-1" and cleanup.credential_ids == ["git"]


async def test_a_prepare_that_could_not_start_the_build_leaves_it_to_the_trigger_and_the_job_is_cleaned_up(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(prepare_triggers=False)
    await _succeeded(dev_env, world)
    (prepared,) = world.called(Activity.JENKINS_PREPARE)
    (trigger,) = world.called(Activity.JENKINS_TRIGGER)
    assert trigger.target.job == "app-1"
    assert trigger.execution_id == prepared.trigger_execution_id == progress.execution_id(prepared.context)
    assert world.started == ["app-1"]
    (cleanup,) = world.called(Activity.CLEANUP)
    assert cleanup.target.job == "app-1" and cleanup.credential_ids == ["git"]


#: From the cleanup on: the finish, then its steps (the finish stub calls their stubs, in the real
#: activity's order; a finish that failed is followed by the same steps as activities of their own).
FINISH_STEPS = [
    Activity.CLEANUP,
    Activity.FINISH,
    Activity.UPDATE_PIPELINE,
    Activity.WRITE_STATUS,
    Activity.RUN_FINISHED,
]


def _finish_calls(world: World) -> list[Activity]:
    """The activities called from the cleanup on."""
    names = [name for name, _ in world.calls]
    return names[names.index(Activity.CLEANUP) :]


async def test_the_pipeline_status_the_terminal_status_and_the_history_limit_are_one_local_activity(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World()
    await _succeeded(dev_env, world)
    assert _finish_calls(world) == FINISH_STEPS
    (finish,) = world.called(Activity.FINISH)
    assert finish.write.status.phase == ExecutionPhase.SUCCESS and finish.pipeline.state == "Success"
    assert finish.history is not None and finish.history.context.execution.name == "app-1"


async def test_a_finish_that_fails_does_its_steps_one_by_one_and_the_run_still_ends(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(fail={Activity.FINISH: permanent("finish broke")})
    async with running(dev_env, world) as queue:
        status = await (await start(dev_env, queue)).result()
    assert status.phase == ExecutionPhase.SUCCESS and status.message == "Succeeded"
    assert _finish_calls(world) == FINISH_STEPS
    assert world.written()[-1].phase == ExecutionPhase.SUCCESS


async def test_the_building_status_is_written_by_the_follow_activity_as_it_first_sees_the_build(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(verified=True)
    world.builds["app-1"] = [
        snapshot(step(0, 0, "Building")),
        snapshot(step(0, 0, "Success"), step(1, 0, "Success"), step(2, 0, "Success"), result="SUCCESS"),
    ]
    async with running(dev_env, world) as queue:
        status = await (await start(dev_env, queue)).result()
    assert status.phase == ExecutionPhase.SUCCESS
    assert [c.status.phase for c in world.called(Activity.WRITE_STATUS)] == [ExecutionPhase.SUCCESS]
    first = world.written()[0]
    assert first.phase == ExecutionPhase.BUILDING and first.jenkins is not None
    assert first.stages[0].steps[0].state == StageState.BUILDING, "with what the first look saw"


async def test_a_namespace_this_worker_verified_a_moment_ago_is_neither_bootstrapped_nor_written_again(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(verified=True)
    async with running(dev_env, world) as queue:
        status = await (await start(dev_env, queue)).result()
    assert status.phase == ExecutionPhase.SUCCESS
    assert (
        world.called(Activity.BOOTSTRAP_NAMESPACE) == []
        and world.called(Activity.RECONCILE_ROLEBINDINGS) == []
    )
    assert ExecutionPhase.PROVISIONING not in [w.phase for w in world.written()]
    provisioned = status.condition(ConditionType.PROVISIONED)
    assert provisioned is not None and provisioned.message.endswith("verified 12s ago")


async def test_a_run_whose_provisioning_takes_a_while_says_so_in_its_status_before_it_is_done(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(block={Activity.BOOTSTRAP_NAMESPACE})
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await eventually(
            lambda: [w.phase for w in world.written()] == [ExecutionPhase.PROVISIONING],
            f"the Provisioning status, {PROVISIONING_SHOWN_AFTER} into the bootstrap",
        )
        assert (
            Activity.BOOTSTRAP_NAMESPACE in world.reached
            and world.called(Activity.RECONCILE_ROLEBINDINGS) == []
        )
        world.release.set()
        status = await handle.result()
    assert status.phase == ExecutionPhase.SUCCESS
    assert [w.phase for w in world.written()] == [ExecutionPhase.PROVISIONING, ExecutionPhase.SUCCESS]


async def test_every_activity_that_is_not_local_is_scheduled_with_a_heartbeat_timeout_of_seconds(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World()
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await handle.result()
    scheduled = [
        e.activity_task_scheduled_event_attributes
        async for e in handle.fetch_history_events()
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    names = {a.activity_type.name for a in scheduled}
    assert {Activity.JENKINS_FOLLOW_THROUGH, Activity.BOOTSTRAP_NAMESPACE} <= names
    assert not names & LOCAL, "a local activity has no heartbeat: its workflow task's timeout stands in"
    for a in scheduled:
        assert timedelta(0) < a.heartbeat_timeout.ToTimedelta() <= HEARTBEAT, a.activity_type.name


async def test_a_failed_step_fails_the_run_naming_the_step_and_still_cleans_up(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(
        builds={
            "app-1": [
                snapshot(step(0, 0, "Success"), gates=[1]),
                snapshot(step(0, 0, "Success"), step(1, 0, "Failed"), result="FAILURE"),
            ]
        }
    )
    async with running(dev_env, world) as queue:
        status = await (await start(dev_env, queue)).result()
    assert status.phase == ExecutionPhase.FAILED and reason(status) == Reason.STEP_FAILED
    assert status.message == "Step 'Run script (alpine)' of stage 'Build' failed"
    assert status.stages[2].state == StageState.SKIPPED
    assert len(world.called(Activity.CLEANUP)) == 1


async def test_an_approval_stage_waits_for_the_approve_update_then_runs(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(approval=True)
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await eventually(lambda: _waiting(handle), "stage 2 waits for approval")
        assert gates(world) == [(1, True)]
        assert (await query(handle)).status.pending_gate == 2
        assert await handle.execute_update(PipelineExecutionWorkflow.approve_stage, GateDecisionInput()) == 2
        status = await handle.result()
    assert status.phase == ExecutionPhase.SUCCESS and status.pending_gate is None
    assert gates(world) == [(1, True), (2, True)]
    assert any(w.message == "Waiting for approval of stage 'Deploy'" for w in world.written())


async def _waiting(handle: Handle) -> bool:
    return (await query(handle)).waiting_for_approval


async def test_approving_when_no_stage_waits_is_refused_with_a_reason(dev_env: WorkflowEnvironment) -> None:
    world = World(default_build=list)
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await eventually(lambda: "app-1" in world.idle, "the build runs")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(PipelineExecutionWorkflow.approve_stage, GateDecisionInput(stage=2))
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == "NotWaitingForApproval"
        await handle.signal(Signal.CANCEL, ControlInput(reason="done"))
        await handle.result()


async def test_a_rejected_stage_aborts_its_gate_and_ends_the_run_denied(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(
        approval=True,
        builds={
            "app-1": [
                snapshot(step(0, 0, "Success"), gates=[1]),
                snapshot(step(0, 0, "Success"), step(1, 0, "Success"), gates=[2]),
                snapshot(step(0, 0, "Success"), step(1, 0, "Success"), result="ABORTED"),
            ]
        },
    )
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await eventually(lambda: _waiting(handle), "stage 2 waits for approval")
        await handle.execute_update(PipelineExecutionWorkflow.reject_stage, GateDecisionInput(reason="no"))
        status = await handle.result()
    assert status.phase == ExecutionPhase.DENIED and reason(status) == Reason.APPROVAL_DENIED
    assert gates(world) == [(1, True), (2, False)]
    assert status.stages[2].steps[0].state == StageState.SKIPPED


async def test_a_pause_while_waiting_for_approval_still_holds_the_stage_once_approved(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(approval=True)
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await eventually(lambda: _waiting(handle), "stage 2 waits for approval")
        await handle.signal(Signal.PAUSE, ControlInput(reason="inspect"))
        await handle.execute_update(PipelineExecutionWorkflow.approve_stage, GateDecisionInput(stage=2))
        await eventually(lambda: _phase_is(handle, ExecutionPhase.PAUSED), "the run shows Paused")
        assert gates(world) == [(1, True)]
        assert (await query(handle)).pending_gate == 2
        # What the follow activity asks before it proceeds a gate itself.
        controls = await handle.query(PipelineExecutionWorkflow.controls)
        assert controls.paused and not controls.cancel_requested
        await handle.signal(Signal.RESUME, ControlInput())
        status = await handle.result()
    assert status.phase == ExecutionPhase.SUCCESS and not status.paused
    assert gates(world) == [(1, True), (2, True)]


async def _phase_is(handle: Handle, phase: ExecutionPhase) -> bool:
    return (await query(handle)).phase == phase


async def test_a_pause_holds_the_next_stage_until_resumed(dev_env: WorkflowEnvironment) -> None:
    world = World()
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await handle.signal(Signal.PAUSE, ControlInput(reason="inspect"))
        await eventually(lambda: _phase_is(handle, ExecutionPhase.PAUSED), "the run shows Paused")
        assert gates(world) == [] and (await query(handle)).pending_gate == 1
        await eventually(lambda: any(w.paused for w in world.written()), "Paused is written to the CR")
        await handle.signal(Signal.RESUME, ControlInput())
        status = await handle.result()
    assert status.phase == ExecutionPhase.SUCCESS and gates(world) == [(1, True), (2, True)]


@pytest.mark.parametrize(
    ("phase_activity", "build_started"),
    [
        (Activity.LOAD_EXECUTION, False),
        (Activity.BOOTSTRAP_NAMESPACE, False),
        # Local activities: a signal reaches the workflow when its workflow task ends, which is after
        # the trigger's (the chain load .. trigger is one task): the build started is stopped.
        (Activity.JENKINS_PREPARE, True),
        # The trigger activity runs when the prepare could not start the build itself.
        (Activity.JENKINS_TRIGGER, True),
        (Activity.JENKINS_FOLLOW_THROUGH, True),
    ],
)
async def test_a_cancel_in_any_phase_ends_the_run_aborted_stopping_a_started_build_and_cleaning_up(
    dev_env: WorkflowEnvironment, phase_activity: Activity, build_started: bool
) -> None:
    world = World(block={phase_activity}, prepare_triggers=phase_activity != Activity.JENKINS_TRIGGER)
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await eventually(lambda: phase_activity in world.reached, f"{phase_activity} runs")
        await handle.signal(Signal.CANCEL, ControlInput(reason="no longer needed", user="alice"))
        if phase_activity == Activity.JENKINS_FOLLOW_THROUGH:
            # The workflow gives up on a follow call at once; it ends only after the cancel (the test
            # server, unlike Temporal's, fails a cancel request for an activity that just completed).
            await eventually(lambda: world.called(Activity.JENKINS_STOP), "the build is stopped")
        world.release.set()
        status = await handle.result()
    assert status.phase == ExecutionPhase.ABORTED and reason(status) == Reason.CANCELLED
    assert status.message == "Aborted: no longer needed"
    assert bool(world.called(Activity.JENKINS_STOP)) == build_started
    job_made = phase_activity not in (Activity.LOAD_EXECUTION, Activity.BOOTSTRAP_NAMESPACE)
    assert len(world.called(Activity.CLEANUP)) == (1 if job_made else 0)
    assert len(world.called(Activity.UPDATE_PIPELINE)) == 1
    assert world.written()[-1].phase == ExecutionPhase.ABORTED


async def test_a_cancel_while_following_keeps_the_logs_of_started_steps(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(builds={"app-1": [snapshot(step(0, 0, "Success"), step(1, 0, "Building"))]})
    world.after_stop = snapshot(step(0, 0, "Success"), step(1, 0, "Aborted"), result="ABORTED")
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await eventually(lambda: "app-1" in world.idle, "step 1 runs")
        await handle.signal(Signal.CANCEL, ControlInput(reason="stop it"))
        status = await handle.result()
    assert status.phase == ExecutionPhase.ABORTED and reason(status) == Reason.CANCELLED
    # The clone step's log was stored by the follow the cancel interrupted, and again (the same object)
    # after the stop: what that follow did is not known to the workflow.
    assert sorted({(c.stage, c.step) for c in world.called(Activity.STORE_STEP_LOG)}) == [(0, 0), (1, 0)]
    assert status.stages[1].steps[0].state == StageState.ABORTED
    assert status.stages[2].steps[0].state == StageState.SKIPPED


async def test_temporals_own_cancellation_stops_the_build_cleans_up_and_ends_the_workflow_cancelled(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(default_build=list)
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await eventually(lambda: "app-1" in world.idle, "the build runs")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as ended:
            await handle.result()
    assert isinstance(ended.value.cause, CancelledError)
    last = world.written()[-1]
    assert last.phase == ExecutionPhase.ABORTED and last.message == "Aborted: cancelled through Temporal"
    assert len(world.called(Activity.JENKINS_STOP)) == 1 and len(world.called(Activity.CLEANUP)) == 1


@pytest.mark.parametrize("busy", [Activity.STORE_STEP_LOG, Activity.JENKINS_GATE])
async def test_temporals_cancellation_during_an_activity_of_the_build_still_stops_the_build(
    dev_env: WorkflowEnvironment, busy: Activity
) -> None:
    # A deleted CR cancels the workflow at whatever it is doing; during an activity the SDK reports
    # that activity's cancellation, which once ended the run Failed with its build left running.
    world = World(block={busy})
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await eventually(lambda: busy in world.reached, f"{busy} runs")
        await handle.cancel()
        await eventually(lambda: world.called(Activity.JENKINS_STOP), "the build is stopped")
        world.release.set()
        with pytest.raises(WorkflowFailureError) as ended:
            await handle.result()
    assert isinstance(ended.value.cause, CancelledError)
    last = world.written()[-1]
    assert last.phase == ExecutionPhase.ABORTED and last.message == "Aborted: cancelled through Temporal"
    assert len(world.called(Activity.JENKINS_STOP)) == 1 and len(world.called(Activity.CLEANUP)) == 1


async def test_temporals_cancellation_while_a_cancel_stops_the_build_lets_the_stop_finish(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(default_build=list, block={Activity.JENKINS_STOP})
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await eventually(lambda: "app-1" in world.idle, "the build runs")
        await handle.signal(Signal.CANCEL, ControlInput(reason="no longer needed"))
        await eventually(lambda: Activity.JENKINS_STOP in world.reached, "the stop runs")
        await handle.cancel()
        world.release.set()
        with pytest.raises(WorkflowFailureError) as ended:
            await handle.result()
    assert isinstance(ended.value.cause, CancelledError)
    finals = [f for f in world.called(Activity.JENKINS_FOLLOW) if f.known is None]
    assert finals, "the build's final state is read after the stop"
    last = world.written()[-1]
    assert last.phase == ExecutionPhase.ABORTED and last.message == "Aborted: no longer needed"
    assert len(world.called(Activity.CLEANUP)) == 1


async def test_temporals_cancellation_after_the_build_ended_neither_skips_the_cleanup_nor_the_status(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(block={Activity.CLEANUP})
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await eventually(lambda: Activity.CLEANUP in world.reached, "the cleanup runs")
        await handle.cancel()
        world.release.set()
        status = await handle.result()
    assert status.phase == ExecutionPhase.SUCCESS and status.message == "Succeeded"
    last = world.written()[-1]
    assert last.phase == ExecutionPhase.SUCCESS and last.message == "Succeeded"


def data_plane_down() -> ApplicationError:
    """What the bootstrap raises while the project's data plane does not answer (activities.kube)."""
    return to_application_error(
        DataPlaneUnavailableError(
            "data-plane cluster dp1: list namespaces: MaxRetryError: connection refused",
            reason=Reason.DATA_PLANE_UNAVAILABLE,
        )
    )


async def test_a_run_whose_data_plane_does_not_answer_waits_saying_so_and_goes_on_when_it_does(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(
        fail={Activity.BOOTSTRAP_NAMESPACE: data_plane_down()},
        fail_on_call={Activity.BOOTSTRAP_NAMESPACE: 1},
    )
    async with running(dev_env, world) as queue:
        status = await (await start(dev_env, queue)).result()
    assert status.phase == ExecutionPhase.SUCCESS
    assert len(world.called(Activity.BOOTSTRAP_NAMESPACE)) == 2
    said = [w.message for w in world.written()]
    assert "Waiting for data-plane cluster dp1: list namespaces: MaxRetryError: connection refused" in said


async def test_a_run_waiting_for_its_data_plane_can_be_cancelled_and_starts_nothing(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(fail={Activity.BOOTSTRAP_NAMESPACE: data_plane_down()})
    async with running(dev_env, world) as queue:
        handle = await start(dev_env, queue)
        await eventually(
            lambda: any((w.message or "").startswith("Waiting for data-plane") for w in world.written()),
            "the run says it waits",
        )
        await handle.signal(Signal.CANCEL, ControlInput(reason="dp1 is gone for good"))
        status = await handle.result()
    assert status.phase == ExecutionPhase.ABORTED and status.message == "Aborted: dp1 is gone for good"
    assert not world.called(Activity.RECONCILE_ROLEBINDINGS) and not world.called(Activity.JENKINS_PREPARE)


async def test_a_data_plane_outage_during_the_build_shows_in_the_status_until_it_ends(
    dev_env: WorkflowEnvironment,
) -> None:
    down = "data-plane cluster dp1: list pods in p: connection refused"
    world = World(
        builds={
            "app-1": [
                snapshot(step(0, 0, "Success"), gates=[1]),
                BuildSnapshot(
                    number=1, steps=[step(0, 0, "Success"), step(1, 0, "Building")], data_plane_waiting=down
                ),
                snapshot(step(0, 0, "Success"), step(1, 0, "Building")),
                snapshot(step(0, 0, "Success"), step(1, 0, "Success"), gates=[2]),
                snapshot(
                    step(0, 0, "Success"), step(1, 0, "Success"), step(2, 0, "Success"), result="SUCCESS"
                ),
            ]
        }
    )
    async with running(dev_env, world) as queue:
        status = await (await start(dev_env, queue)).result()
    said = [w.message for w in world.written()]
    at = said.index(f"Waiting for {down}")
    assert said[at + 1] == "Building" and status.phase == ExecutionPhase.SUCCESS


async def test_a_run_that_continues_as_new_carries_its_whole_state_and_does_nothing_twice(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(approval=True)
    async with running(dev_env, world) as queue:
        first = await start(dev_env, queue, history_limit=8)
        # Not bound to the first run: signals, updates and queries reach whichever run is current.
        handle = dev_env.client.get_workflow_handle(first.id, result_type=PipelineExecutionStatus)
        await eventually(lambda: _waiting(handle), "stage 2 waits for approval")
        await handle.signal(Signal.PAUSE, ControlInput())
        await handle.execute_update(PipelineExecutionWorkflow.approve_stage, GateDecisionInput())
        await eventually(lambda: _phase_is(handle, ExecutionPhase.PAUSED), "the run shows Paused")
        await handle.signal(Signal.RESUME, ControlInput())
        status = await handle.result()
        latest = dev_env.client.get_workflow_handle(first.id)
        events = [e async for e in latest.fetch_history_events()]
        started = events[0].workflow_execution_started_event_attributes
    (inp,) = await dev_env.client.data_converter.decode(started.input.payloads, [ExecutionWorkflowInput])
    assert inp.carried is not None and inp.carried.generation > 2
    assert inp.carried.approved == [2] and inp.carried.context is not None
    assert status.phase == ExecutionPhase.SUCCESS
    logs = [(c.stage, c.step) for c in world.called(Activity.STORE_STEP_LOG)]
    assert logs == [(0, 0), (1, 0), (2, 0)]
    assert gates(world) == [(1, True), (2, True)]
    assert world.started == ["app-1"]
    assert len({w.started for w in world.written()}) == 1


FAILURES = [
    # activity, fail on its nth call, the condition that fails, the reason, whether a job was made
    (Activity.LOAD_EXECUTION, None, ConditionType.INITIALIZED, Reason.CONFIG_INVALID, False),
    (Activity.BOOTSTRAP_NAMESPACE, None, ConditionType.PROVISIONED, Reason.JENKINS_NOT_READY, False),
    (Activity.RECONCILE_ROLEBINDINGS, None, ConditionType.PROVISIONED, Reason.JENKINS_NOT_READY, False),
    (Activity.JENKINS_PREPARE, None, ConditionType.BUILT, Reason.BUILD_FAILED, False),
    (Activity.JENKINS_TRIGGER, None, ConditionType.BUILT, Reason.BUILD_FAILED, True),
    (Activity.JENKINS_FOLLOW_THROUGH, None, ConditionType.BUILT, Reason.BUILD_FAILED, True),
    (Activity.JENKINS_GATE, 2, ConditionType.BUILT, Reason.BUILD_FAILED, True),
    (Activity.STORE_STEP_LOG, 2, ConditionType.BUILT, Reason.BUILD_FAILED, True),
    # The first write is the Provisioning status of a bootstrap that takes a while (the test holds it).
    (Activity.WRITE_STATUS, 1, ConditionType.PROVISIONED, Reason.JENKINS_NOT_READY, False),
]


@pytest.mark.parametrize(("failing", "nth", "condition", "expected", "job_made"), FAILURES)
async def test_a_permanent_error_in_any_phase_ends_the_run_failed_through_the_finish_path(
    dev_env: WorkflowEnvironment,
    failing: Activity,
    nth: int | None,
    condition: ConditionType,
    expected: Reason,
    job_made: bool,
) -> None:
    world = World(
        fail={failing: permanent(f"{failing} broke")},
        fail_on_call={failing: nth} if nth else {},
        block={Activity.BOOTSTRAP_NAMESPACE} if failing == Activity.WRITE_STATUS else set(),
    )
    async with running(dev_env, world) as queue:
        status = await (await start(dev_env, queue)).result()
    assert status.phase == ExecutionPhase.FAILED
    assert status.message == f"{failing} broke"
    failed = status.condition(condition)
    assert failed is not None and failed.status == ConditionStatus.FALSE and failed.reason == expected
    assert reason(status) == expected
    assert len(world.called(Activity.CLEANUP)) == (1 if job_made else 0)
    loaded = failing != Activity.LOAD_EXECUTION
    assert len(world.called(Activity.UPDATE_PIPELINE)) == (1 if loaded else 0)
    assert world.written()[-1].phase == ExecutionPhase.FAILED
    assert all(s.state != StageState.BUILDING for stage in status.stages for s in stage.steps)


async def test_an_error_naming_a_reason_ends_the_run_with_that_reason(dev_env: WorkflowEnvironment) -> None:
    missing = permanent("build app-1 #1 does not exist in Jenkins", Reason.JENKINS_NOT_FOUND)
    world = World(fail={Activity.JENKINS_FOLLOW_THROUGH: missing})
    async with running(dev_env, world) as queue:
        status = await (await start(dev_env, queue)).result()
    assert status.phase == ExecutionPhase.FAILED and reason(status) == Reason.JENKINS_NOT_FOUND
    assert status.message is not None and "deleted in Jenkins" in status.message


@pytest.mark.parametrize(
    ("failing", "step"),
    [(Activity.CLEANUP, "clean up app-1"), (Activity.UPDATE_PIPELINE, "Pipeline app status")],
)
async def test_a_failing_housekeeping_step_is_named_in_the_terminal_status_and_the_run_still_ends(
    dev_env: WorkflowEnvironment, failing: Activity, step: str
) -> None:
    world = World(fail={failing: permanent("Jenkins said no")})
    status = await _succeeded(dev_env, world)
    assert status.message == f"Succeeded ({step} failed: Jenkins said no)"
    assert world.written()[-1].message == status.message
    assert len(world.called(failing)) == 1


async def test_a_build_that_jenkins_aborted_on_its_own_is_no_cancel_and_quotes_the_console(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(
        builds={
            "app-1": [
                snapshot(step(0, 0, "Success"), gates=[1]),
                snapshot(step(0, 0, "Success"), step(1, 0, "Aborted"), result="ABORTED"),
            ]
        }
    )
    async with running(dev_env, world) as queue:
        status = await (await start(dev_env, queue)).result()
    assert status.phase == ExecutionPhase.ABORTED and reason(status) == Reason.ABORTED_IN_JENKINS
    assert status.message is not None and status.message.endswith(": Resuming build after Jenkins restart")
    assert world.called(Activity.JENKINS_STOP) == [] and len(world.called(Activity.JENKINS_CONSOLE_TAIL)) == 1


async def test_a_new_run_records_one_patch_and_upserts_only_the_search_attributes_that_changed(
    dev_env: WorkflowEnvironment,
) -> None:
    world = World(verified=True)
    async with running(dev_env, world) as queue:
        ref = ExecutionRef(namespace="proj-lean", name="app-1", uid=uuid.uuid4().hex)
        # As the bridge starts it: the CR's values, its branch not resolved yet, the phase Waiting.
        handle = await dev_env.client.start_workflow(
            PipelineExecutionWorkflow.run,
            ExecutionWorkflowInput(execution=ref),
            id=f"pe-lean-{ref.uid}",
            task_queue=queue,
            result_type=PipelineExecutionStatus,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SA_PIPELINE, "app"),
                    SearchAttributePair(SA_NAMESPACE, "proj-lean"),
                    SearchAttributePair(SA_BRANCH, ""),
                    SearchAttributePair(SA_TRIGGER, "user"),
                    SearchAttributePair(SA_RUN, 1),
                    SearchAttributePair(SA_PHASE, ExecutionPhase.WAITING.value),
                ]
            ),
        )
        status = await handle.result()
    assert status.phase == ExecutionPhase.SUCCESS
    events = [e async for e in handle.fetch_history_events()]
    patches = [
        e.marker_recorded_event_attributes.marker_name
        for e in events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    upserts = [
        sorted(e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
        for e in events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    assert len(patches) == 1, "one patch marker (quiet-provision), not one per change since coarse-run"
    # Core's TemporalChangeVersion for that patch, then ours: the branch (resolved to main) with the
    # first phase, and the last phase. The pipeline, namespace, trigger and run were right from the start.
    assert upserts == [["TemporalChangeVersion"], ["DevopsBranch", "DevopsPhase"], ["DevopsPhase"]]
    described = await handle.describe()
    attrs = described.typed_search_attributes
    assert (attrs.get(SA_BRANCH), attrs.get(SA_PHASE), attrs.get(SA_RUN)) == ("main", "Success", 1)
