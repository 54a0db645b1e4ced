"""The executor quota of one project: at most ``capacity`` executions past the gate at once.

Why a workflow: every grant and release is a signal to one long-lived workflow per project
(id ``quota/<project>``), and Temporal delivers a workflow's signals one at a time and durably. So
concurrent starts cannot race (there is no read-modify-write on shared state), and a worker restart
loses nothing: the holders and the waiting line are the workflow's own state, rebuilt by replay.

- ``acquire`` (sent with signal-with-start by the ``devops.quota.acquire`` activity) puts an execution
  in line; the line is ordered by arrival in the project, whatever the pipeline: when the
  PipelineExecution was created, then (runs of one pipeline created within the same second) its run
  number. Sending it again is harmless: a holder is granted again, a waiting one keeps its place.
- When a slot is free the quota workflow signals ``slot_granted`` to the execution. If that execution
  is gone (completed or terminated), the signal fails and the slot is given to the next in line.
- ``release`` gives the slot back (an execution sends it when it ends, however it ends; a cancelled
  one that was still waiting leaves the line the same way).
- Waiting executions are told how many are ahead of them (``queue_position``), for their status.
- While executions wait and the quota is full, it asks every 20 seconds (an activity) which holders no
  longer run — a terminated workflow runs no cleanup — and frees their slots.
- The workflow continues as new when Temporal suggests it, carrying holders and the line, and ends
  itself after an hour with nobody holding or waiting (the next acquire starts it again).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from crds.messages import (
        QUOTA_WORKFLOW,
        Activity,
        Query,
        QueuePosition,
        QuotaHolders,
        QuotaRelease,
        QuotaRequest,
        QuotaState,
        QuotaWorkflowInput,
        Signal,
        SlotGranted,
    )

IDLE_END = timedelta(hours=1)
HOLDER_CHECK = timedelta(seconds=20)
#: Requests recorded before they carried a creation time have waited longest: they go first.
_LONG_AGO = datetime.min.replace(tzinfo=UTC)


def arrival(req: QuotaRequest) -> tuple[datetime, int]:
    """A request's place in the project's line: its run's creation time, then its run number.

    Not the run number alone: that is per Pipeline, so pipeline B's run 1 would pass pipeline A's
    run 40 that has waited longer. Python's sort is stable: equal keys keep the order they came in.
    """
    return (req.created or _LONG_AGO, req.run)


@workflow.defn(name=QUOTA_WORKFLOW)
class ExecutorQuotaWorkflow:
    @workflow.init
    def __init__(self, inp: QuotaWorkflowInput) -> None:
        # State comes from the input here, not in run(): the acquire signal of a signal-with-start is
        # handled before run() begins, and must not be overwritten by it.
        self._project = inp.project_namespace
        self._capacity = inp.capacity
        self._holders: list[str] = list(inp.holders)
        self._waiting: list[QuotaRequest] = sorted(inp.waiting, key=arrival)
        self._told: dict[str, int] = {}
        self._dirty = True

    @workflow.run
    async def run(self, inp: QuotaWorkflowInput) -> None:
        while True:
            await self._grant()
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    QuotaWorkflowInput(
                        project_namespace=self._project,
                        capacity=self._capacity,
                        holders=self._holders,
                        waiting=self._waiting,
                    )
                )
            # While runs wait for a full quota, look now and then for holders that ended without releasing
            # (a terminated workflow runs no cleanup); otherwise sleep until a signal or the idle end.
            stuck = bool(self._waiting) and not self._has_room()
            try:
                await workflow.wait_condition(
                    lambda: self._dirty, timeout=HOLDER_CHECK if stuck else IDLE_END
                )
            except TimeoutError:
                if stuck:
                    await self._drop_gone_holders()
                elif not self._holders and not self._waiting:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    if not self._dirty:
                        workflow.logger.info("quota of %s idle, ending", self._project)
                        return

    async def _drop_gone_holders(self) -> None:
        gone: QuotaHolders = await workflow.execute_activity(
            Activity.QUOTA_GONE_HOLDERS,
            QuotaHolders(workflow_ids=list(self._holders)),
            result_type=QuotaHolders,
            start_to_close_timeout=timedelta(minutes=1),
            summary=f"check {len(self._holders)} holders of {self._project}",
        )
        for wid in gone.workflow_ids:
            if wid in self._holders:
                workflow.logger.warning("execution %s ended without releasing its slot; freeing it", wid)
                self._holders.remove(wid)
                self._dirty = True

    def _has_room(self) -> bool:
        return self._capacity <= 0 or len(self._holders) < self._capacity

    async def _grant(self) -> None:
        while self._dirty:
            self._dirty = False
            while self._waiting and self._has_room():
                req = self._waiting.pop(0)
                self._holders.append(req.workflow_id)
                self._told.pop(req.workflow_id, None)
                if not await self._signal(
                    req.workflow_id, Signal.SLOT_GRANTED, SlotGranted(project_namespace=self._project)
                ):
                    self._holders.remove(req.workflow_id)
            for ahead, req in enumerate(self._waiting):
                if self._told.get(req.workflow_id) != ahead:
                    self._told[req.workflow_id] = ahead
                    if not await self._signal(
                        req.workflow_id, Signal.QUEUE_POSITION, QueuePosition(ahead=ahead)
                    ):
                        self._waiting = [w for w in self._waiting if w.workflow_id != req.workflow_id]
                        self._dirty = True

    async def _signal(self, workflow_id: str, name: str, arg: SlotGranted | QueuePosition) -> bool:
        """Signal an execution; False when it no longer runs (its place is then given away)."""
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal(name, arg)
        except FailureError as err:
            workflow.logger.warning("execution %s is gone (%s); dropping it from the quota", workflow_id, err)
            return False
        return True

    @workflow.signal(name=Signal.QUOTA_ACQUIRE)
    def acquire(self, req: QuotaRequest) -> None:
        if req.capacity != self._capacity:
            # The PipelineSetting was edited: the newest request carries the current capacity.
            self._capacity = req.capacity
        if req.workflow_id in self._holders:
            # A retried acquire: grant again (the first grant may have raced the caller's restart).
            self._holders.remove(req.workflow_id)
            self._waiting.insert(0, req)
        elif not any(w.workflow_id == req.workflow_id for w in self._waiting):
            self._waiting.append(req)
            self._waiting.sort(key=arrival)
        self._dirty = True

    @workflow.signal(name=Signal.QUOTA_RELEASE)
    def release(self, rel: QuotaRelease) -> None:
        if rel.workflow_id in self._holders:
            self._holders.remove(rel.workflow_id)
        self._waiting = [w for w in self._waiting if w.workflow_id != rel.workflow_id]
        self._told.pop(rel.workflow_id, None)
        self._dirty = True

    @workflow.query(name=Query.QUOTA)
    def state(self) -> QuotaState:
        return QuotaState(capacity=self._capacity, holders=list(self._holders), waiting=list(self._waiting))
