"""The engine: starts runs, executes their stages in order, persists and shows every transition."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.audit import AuditEntry
from bot.engine.catalog import Catalog, Invocation
from bot.engine.context import NotConfigured, StepContext, StepSkipped
from bot.engine.policy import Policy, role_to_request
from bot.engine.procedure import Level, Parallel, Procedure, Risk, Step, StepResult
from bot.engine.run import Run, RunState, StepRecord, StepState, utcnow
from bot.engine.view import RunView
from bot.errors import BotError
from bot.observability import context
from bot.observability.metrics import BotMetrics
from bot.observability.redaction import redactor
from bot.store.base import Store

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.targets import Targets

logger = logging.getLogger(__name__)

BOT_ACTOR = "meridian-bot"


@dataclass(frozen=True)
class EngineTiming:
    """How long a replica's claim on an executing run lasts, and how often upkeep renews it (seconds).

    Each upkeep tick renews the leases, so `tick_seconds` must stay well below `lease_seconds`.
    """

    lease_seconds: float = 30.0
    tick_seconds: float = 5.0


class RunLogAdapter(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['run_id']} {self.extra['step']}] {msg}", kwargs


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        view: RunView,
        targets: Targets,
        settings: Settings,
        metrics: BotMetrics,
        policy: Policy,
        catalog: Catalog,
        replica_id: str | None = None,
        clock: Callable[[], float] = time.time,
        timing: EngineTiming = EngineTiming(),
    ) -> None:
        self.store = store
        self.view = view
        self.targets = targets
        self.settings = settings
        self.metrics = metrics
        self.policy = policy
        self.catalog = catalog
        self.replica_id = replica_id or f"replica-{secrets.token_hex(4)}"
        self.clock = clock
        self.timing = timing
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # Starting runs

    async def submit(self, invocation: Invocation, *, requester: str, channel_id: str, response_url: str | None) -> Run:
        """Check the requester's role, record a new run, post its card and start executing it."""
        procedure = invocation.procedure
        await self.policy.require(requester, role_to_request(procedure.risk), action=f"run `{invocation.command.name}`")

        run = Run.new(
            procedure,
            args=dict(invocation.args),
            requester=requester,
            channel_id=channel_id,
            correlation_id=context.correlation_id.get(),
            dry_run=invocation.dry_run,
        )
        context.run_id.set(run.id)
        await self.store.insert_run(run)
        # Owned from the start, so a crash before the first step still ends in "interrupted".
        await self.store.save_run(run, owner=self.replica_id, lease_expires=self._lease_until())
        await self.audit(run, actor=requester, action="requested", detail={"command": invocation.text})
        logger.info("Run %s of %s requested by %s in %s", run.id, procedure.name, requester, channel_id)

        try:
            await self.view.post_card(run, procedure, response_url=response_url)
        except BotError as error:
            run.error = error.user_message
            await self.finish(run, procedure, RunState.FAILED, outcome=f"card not posted: {error.message}")
            raise
        await self.store.save_run(run, owner=self.replica_id, lease_expires=self._lease_until())

        if invocation.dry_run and procedure.gate is None:
            await self.finish(run, procedure, RunState.COMPLETED, outcome="dry run: nothing was changed")
            return run

        self.execute_later(run, procedure)
        return run

    def procedure_for(self, run: Run) -> Procedure:
        for command in self.catalog.commands.values():
            if command.procedure is not None and command.procedure.name == run.procedure:
                return command.procedure
        raise LookupError(f"no procedure named {run.procedure}")

    def execute_later(self, run: Run, procedure: Procedure) -> None:
        """Execute `run` from its next stage in the background; this replica owns it meanwhile."""
        self._spawn(self._execute(run, procedure))

    # Waiting

    async def wait_idle(self) -> None:
        """Wait until no run is executing (runs waiting for approval do not count)."""
        await self._idle.wait()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Count a request being handled as work, so `wait_idle` also waits for it.

        A handler enters this before it acks; the run it starts is spawned only after the ack.
        """
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            self._update_idle()

    def _update_idle(self) -> None:
        if not self._tasks and not self._busy:
            self._idle.set()

    async def shutdown(self, *, grace_seconds: float = 0.0) -> None:
        """Stop executing runs, after giving them and requests in hand `grace_seconds` to finish.

        A run cancelled mid-step stays running in the store until its lease expires; then the
        leader marks it interrupted, so it is never re-run on its own.
        """
        if grace_seconds > 0:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=grace_seconds)
            except TimeoutError:
                logger.warning("%d runs still executing after %s s; stopping them", len(self._tasks), grace_seconds)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        self._idle.clear()

        def forget(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._update_idle()

        task.add_done_callback(forget)

    def _lease_until(self) -> float:
        return self.clock() + self.timing.lease_seconds

    # Executing

    async def _execute(self, run: Run, procedure: Procedure) -> None:
        context.run_id.set(run.id)
        context.correlation_id.set(run.correlation_id)
        logger.info("Run %s executing from stage %d", run.id, run.next_stage)

        for index in range(run.next_stage, len(procedure.stages)):
            if await self._was_cancelled(run):
                await self._stop_cancelled(run, procedure)
                return

            stage = procedure.stages[index]
            if isinstance(stage, ApprovalGate):
                # An approved run resumes after its gate (decisions set next_stage), so reaching
                # a gate here always means asking for approval.
                await self._reach_gate(run, procedure, stage)
                return

            steps = stage.steps if isinstance(stage, Parallel) else (stage,)
            await asyncio.gather(*(self._run_step(run, procedure, step) for step in steps))

            stage_failed = any(run.step(step.name).state is StepState.FAILED for step in steps)
            if stage_failed:
                self._skip_pending(run, "skipped because an earlier step failed")
                await self.finish(run, procedure, RunState.FAILED, outcome="failed")
                return

            run.next_stage = index + 1
            await self.store.save_run(run, expected=[RunState.RUNNING])

        await self.finish(run, procedure, RunState.COMPLETED, outcome=_outcome(run))

    async def _was_cancelled(self, run: Run) -> bool:
        stored = await self.store.get_run(run.id)
        return stored is not None and stored.state is RunState.CANCELLED

    async def _stop_cancelled(self, run: Run, procedure: Procedure) -> None:
        stored = await self.store.get_run(run.id)
        run.state = RunState.CANCELLED
        run.decided_by = stored.decided_by if stored else None
        self._skip_pending(run, "skipped because the run was cancelled")
        run.finished_at = utcnow()
        await self.store.save_run(run, owner=None, lease_expires=None)
        await self.store.release_locks(run.id)
        logger.info("Run %s stopped before its next step: it was cancelled", run.id)
        await self.view.deliver_card(run, procedure)

    def _skip_pending(self, run: Run, reason: str) -> None:
        for record in run.steps:
            if record.state in (StepState.PENDING, StepState.WAITING):
                record.state = StepState.SKIPPED
                record.summary = reason

    def step_context(self, run: Run, procedure: Procedure, record: StepRecord) -> StepContext:
        async def report_progress(summary: str) -> None:
            record.summary = redactor.scrub(summary)
            self.view.card_changed(run, procedure)

        return StepContext(
            run=run,
            step=record,
            args=run.args,
            targets=self.targets,
            settings=self.settings,
            log=RunLogAdapter(logger, {"run_id": run.id, "step": record.name}),
            results=run.outputs,
            report_progress=report_progress,
            plan=plan_from_run(run),
            policy=self.policy,
        )

    async def _run_step(self, run: Run, procedure: Procedure, step: Step) -> None:
        record = run.step(step.name)
        record.state = StepState.RUNNING
        record.started_at = utcnow()
        await self.store.save_run(run, expected=[RunState.RUNNING])
        self.view.card_changed(run, procedure)

        step_context = self.step_context(run, procedure, record)
        log = step_context.log
        try:
            outcome = await asyncio.wait_for(step.run(step_context), timeout=step.timeout)
        except StepSkipped as skipped:
            # A missing target fails a run that was meant to change something: it did nothing.
            run_meant_to_change = run.risk is not Risk.READ
            if isinstance(skipped, NotConfigured) and run_meant_to_change:
                record.state = StepState.FAILED
                record.level = Level.CRITICAL
            else:
                record.state = StepState.SKIPPED
            record.summary = skipped.reason
        except TimeoutError:
            record.state = StepState.FAILED
            record.level = Level.CRITICAL
            record.summary = f"timed out after {step.timeout:g} s"
            log.warning("Step timed out after %s s", step.timeout)
        except BotError as error:
            record.state = StepState.FAILED
            record.level = Level.CRITICAL
            record.summary = redactor.scrub(error.user_message)
            log.warning("Step failed: %s", error.user_message)
        except Exception:
            error_id = secrets.token_hex(4)
            record.state = StepState.FAILED
            record.level = Level.CRITICAL
            record.error_id = error_id
            record.summary = f"unexpected error (error id {error_id}); the bot's log has the details"
            log.exception("Step failed with an unexpected error, error id %s", error_id)
        else:
            result = _as_result(outcome)
            run.outputs[step.name] = dict(result.data)
            record.state = StepState.DONE
            record.level = result.level
            record.summary = redactor.scrub(result.summary)
            if result.detail:
                await self.view.post_detail(run, title=result.detail_title or step.title, text=result.detail)

        record.finished_at = utcnow()
        await self.store.save_run(run, expected=[RunState.RUNNING])
        self.view.card_changed(run, procedure)

    async def read_plan(self, run: Run, procedure: Procedure, gate: ApprovalGate) -> tuple[Plan, str]:
        """Read the plan afresh (the identity of what it acts on) and compute its digest."""
        plan = await gate.plan(self.step_context(run, procedure, run.step(gate.name)))
        return plan, plan.digest(procedure=procedure.name, args=run.args)

    async def _reach_gate(self, run: Run, procedure: Procedure, gate: ApprovalGate) -> None:
        record = run.step(gate.name)
        record.state = StepState.RUNNING
        record.started_at = utcnow()
        self.view.card_changed(run, procedure)
        try:
            plan, digest = await self.read_plan(run, procedure, gate)
        except NotConfigured as missing:
            record.state = StepState.FAILED
            record.summary = missing.reason
            record.finished_at = utcnow()
            self._skip_pending(run, "skipped because a target is not configured")
            await self.finish(run, procedure, RunState.FAILED, outcome=f"not configured: {missing.reason}")
            return
        except StepSkipped as skipped:
            # The plan found nothing to do (no recent rollout, already paused): a finding, not a failure.
            record.state = StepState.SKIPPED
            record.summary = redactor.scrub(f"nothing to approve: {skipped.reason}")
            record.finished_at = utcnow()
            self._skip_pending(run, "not needed: nothing to approve")
            await self.finish(run, procedure, RunState.COMPLETED, outcome="nothing to approve")
            return
        except BotError as error:
            record.state = StepState.FAILED
            record.summary = redactor.scrub(f"could not read the plan: {error.user_message}")
            record.finished_at = utcnow()
            self._skip_pending(run, "skipped because the plan could not be read")
            await self.finish(run, procedure, RunState.FAILED, outcome="plan not readable")
            return
        run.plan = plan.to_json(digest=digest)

        needed = procedure.risk.approvals_needed
        if run.dry_run:
            record.state = StepState.SKIPPED
            record.summary = f"dry run: would need {_approvals(needed)}"
            record.finished_at = utcnow()
            self._skip_pending(run, "dry run: not executed")
            await self.finish(run, procedure, RunState.COMPLETED, outcome="dry run: nothing was changed")
            return

        for target in plan.targets:
            holder = await self.store.acquire_lock(target, run.id)
            if holder is not None:
                await self.store.release_locks(run.id)
                record.state = StepState.FAILED
                record.summary = f"{target} is locked by run {holder}; one destructive run per target at a time"
                record.finished_at = utcnow()
                run.error = f"Run {holder} holds {target}. Wait for it to finish, or cancel it with `/meridian cancel {holder}`."
                self._skip_pending(run, "skipped because the target is locked")
                await self.finish(run, procedure, RunState.FAILED, outcome=f"target locked by {holder}")
                return

        expires = self.clock() + self.settings.approval_ttl.total_seconds()
        run.expires_at = datetime.fromtimestamp(expires, UTC)
        run.state = RunState.WAITING
        record.state = StepState.WAITING
        record.summary = f"waiting for {_approvals(needed)} from APPROVERS"
        stored = await self.store.save_run(
            run, expected=[RunState.RUNNING], owner=None, lease_expires=None, expires_at=expires
        )
        if not stored:
            logger.warning("Run %s changed state before reaching its approval gate", run.id)
            return
        await self.audit(run, actor=BOT_ACTOR, action="approval_requested", detail={"digest": digest, "plan": plan.summary})
        logger.info("Run %s waits for %s (digest %s)", run.id, _approvals(needed), digest[:12])
        await self.view.deliver_card(run, procedure)
        await self.view.announce(run, procedure, "requested")

    # Ending

    async def finish(self, run: Run, procedure: Procedure, state: RunState, *, outcome: str, actor: str | None = None) -> bool:
        """Move `run` to a final state once; return False when another transition won."""
        previous = run.state
        run.state = state
        run.finished_at = utcnow()
        stored = await self.store.save_run(
            run, expected=[previous], owner=None, lease_expires=None, expires_at=None
        )
        if not stored:
            logger.info("Run %s was not moved to %s: its state changed meanwhile", run.id, state.value)
            fresh = await self.store.get_run(run.id)
            if fresh is not None:
                run.state = fresh.state
            return False

        await self.store.release_locks(run.id)
        await self.audit(run, actor=actor or run.requester, action=_FINAL_ACTIONS.get(state, "finished"), outcome=outcome)
        self.metrics.runs.labels(procedure=run.procedure, state=state.value).inc()
        self.metrics.run_duration.labels(procedure=run.procedure).observe((run.finished_at - run.created_at).total_seconds())
        logger.info("Run %s ended: %s (%s)", run.id, state.value, outcome)
        await self.view.deliver_card(run, procedure)
        await self.view.announce(run, procedure, state.value)
        return True

    async def audit(
        self,
        run: Run,
        *,
        actor: str,
        action: str,
        outcome: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await self.store.append_audit(
            AuditEntry(
                actor=actor,
                action=action,
                run_id=run.id,
                procedure=run.procedure,
                channel_id=run.channel_id,
                outcome=outcome,
                detail=detail or {},
            )
        )


_FINAL_ACTIONS = {
    RunState.COMPLETED: "finished",
    RunState.FAILED: "failed",
    RunState.CANCELLED: "cancelled",
    RunState.DENIED: "denied",
    RunState.EXPIRED: "expired",
    RunState.INTERRUPTED: "interrupted",
    RunState.VOIDED: "voided",
}


def plan_from_run(run: Run) -> Plan | None:
    if run.plan is None:
        return None
    return Plan(
        summary=run.plan["summary"],
        targets=tuple(run.plan["targets"]),
        identity=run.plan["identity"],
        preview=run.plan["preview"],
        facts=run.plan.get("facts", {}),
    )


def _approvals(count: int) -> str:
    return "1 approval" if count == 1 else f"{count} approvals"


def _as_result(outcome: StepResult | str | None) -> StepResult:
    if isinstance(outcome, StepResult):
        return outcome
    return StepResult(summary=outcome or "done")


def _outcome(run: Run) -> str:
    levels = [record.level for record in run.steps if record.level is not None]
    problems = sum(level is Level.CRITICAL for level in levels)
    warnings = sum(level is Level.WARNING for level in levels)
    if problems or warnings:
        return f"completed with {problems} critical and {warnings} warning findings"
    return "completed"

