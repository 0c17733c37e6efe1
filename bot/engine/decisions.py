"""Approve, deny and cancel: every rule is enforced here, whatever the buttons showed."""

from __future__ import annotations

import logging
from enum import StrEnum

from bot.engine.context import StepSkipped
from bot.engine.policy import Role
from bot.engine.procedure import Procedure
from bot.engine.run import Run, RunState, StepState, utcnow
from bot.engine.runner import BOT_ACTOR, Engine
from bot.errors import BotError, PermissionDenied, Refused
from bot.observability import context

logger = logging.getLogger(__name__)


class Decision(StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    CANCEL = "cancel"


async def decide(engine: Engine, *, run_id: str, user: str, decision: Decision, digest: str | None) -> str:
    """Apply one person's decision on a run and return what to tell them.

    Raises PermissionDenied or Refused with the reason when the decision is not allowed.
    """
    context.run_id.set(run_id)
    run = await engine.store.get_run(run_id)
    if run is None:
        raise Refused(f"There is no run `{run_id}`.", hint="`/meridian runs` lists the active runs.")
    procedure = engine.procedure_for(run)

    if decision is Decision.CANCEL:
        try:
            return await cancel(engine, run, procedure, user=user)
        except BotError as error:
            await engine.audit(run, actor=user, action="cancel_rejected", outcome=error.message)
            raise
    if run.state is not RunState.WAITING:
        raise Refused(f"Run `{run.id}` is {run.state.value.replace('_', ' ')}, so there is nothing to {decision.value}.")
    if await _expire_if_due(engine, run, procedure):
        raise Refused(f"The approval request of run `{run.id}` has expired.", hint="The requester can start a new run.")

    try:
        if decision is Decision.DENY:
            return await _deny(engine, run, procedure, user=user)
        return await _approve(engine, run, procedure, user=user, digest=digest)
    except BotError as error:
        await engine.audit(run, actor=user, action=f"{decision.value}_rejected", outcome=error.message)
        raise


async def _approve(engine: Engine, run: Run, procedure: Procedure, *, user: str, digest: str | None) -> str:
    await engine.policy.require(user, Role.APPROVER, action="approve runs")
    requester_is_approver = user == run.requester
    if requester_is_approver:
        raise Refused("You requested this run, so you cannot approve it.", hint="Another approver must.")

    assert run.plan is not None
    approved_digest = run.plan["digest"]
    card_is_stale = digest is not None and digest != approved_digest
    if card_is_stale:
        raise Refused("This button belongs to an older plan of the run.", hint="Approve from the current run card.")

    # The identity of what the run acts on is read again: an approval binds to that plan only.
    gate = procedure.gate
    assert gate is not None
    try:
        _, current_digest = await engine.read_plan(run, procedure, gate)
    except StepSkipped as skipped:
        current_digest = f"nothing to do: {skipped.reason}"
    except BotError as error:
        raise Refused(f"I could not read the plan again to check it: {error.user_message}") from error
    if current_digest != approved_digest:
        await _void(engine, run, procedure, user=user)
        raise Refused(
            "The plan changed since it was requested, so its approvals are void and the run is ended.",
            hint="The requester can start a new run to review the new plan.",
        )

    if not await engine.store.add_approval(run.id, user, approved_digest):
        return f"You have already approved run `{run.id}`; each approver counts once."
    await engine.audit(run, actor=user, action="approved", detail={"digest": approved_digest})
    engine.metrics.approvals.labels(procedure=run.procedure, decision="approve").inc()
    logger.info("Run %s approved by %s", run.id, user)

    approvers = sorted({approval.approver for approval in await engine.store.list_approvals(run.id) if approval.digest == approved_digest})
    run.approvals = approvers
    needed = procedure.risk.approvals_needed
    if len(approvers) < needed:
        if not await engine.store.save_run(run, expected=[RunState.WAITING]):
            return f"Approved. Run `{run.id}` is already on its way."
        await engine.view.deliver_card(run, procedure)
        return f"Approved. Run `{run.id}` needs {needed - len(approvers)} more approval from another approver."

    # Exactly one of the approvers who complete the count moves the run on.
    gate_record = run.step(gate.name)
    gate_record.state = StepState.DONE
    gate_record.summary = f"approved ({len(approvers)} of {needed})"
    gate_record.finished_at = utcnow()
    run.state = RunState.RUNNING
    run.expires_at = None
    run.next_stage = procedure.stages.index(gate) + 1
    won = await engine.store.save_run(
        run,
        expected=[RunState.WAITING],
        owner=engine.replica_id,
        lease_expires=engine.clock() + engine.timing.lease_seconds,
        expires_at=None,
    )
    if not won:
        return f"Approved. Run `{run.id}` is already on its way."
    await engine.audit(run, actor=BOT_ACTOR, action="started", detail={"approvers": approvers})
    await engine.view.announce(run, procedure, "approved")
    engine.execute_later(run, procedure)
    return f"Approved. Run `{run.id}` is starting."


async def _deny(engine: Engine, run: Run, procedure: Procedure, *, user: str) -> str:
    await engine.policy.require(user, Role.APPROVER, action="deny runs")
    gate = procedure.gate
    assert gate is not None
    record = run.step(gate.name)
    record.state = StepState.FAILED
    record.summary = "denied"
    record.finished_at = utcnow()
    _skip_rest(run, "skipped because the run was denied")
    run.decided_by = user
    engine.metrics.approvals.labels(procedure=run.procedure, decision="deny").inc()
    if not await engine.finish(run, procedure, RunState.DENIED, outcome="denied", actor=user):
        raise Refused(f"Run `{run.id}` is {run.state.value.replace('_', ' ')}; it can no longer be denied.")
    return f"Denied. Run `{run.id}` has ended."


async def cancel(engine: Engine, run: Run, procedure: Procedure, *, user: str) -> str:
    """Cancel a waiting run, or stop a running one before its next step (never mid-step)."""
    user_is_requester = user == run.requester
    if not user_is_requester and not await engine.policy.has(user, Role.ADMIN):
        raise PermissionDenied(
            f"Only the requester or an admin can cancel run `{run.id}`.",
            role=Role.ADMIN.label,
            hint="An admin can add you to ADMINS.",
        )
    if run.state.is_final:
        raise Refused(f"Run `{run.id}` is already {run.state.value.replace('_', ' ')}.")

    run.decided_by = user
    if run.state is RunState.WAITING:
        gate = procedure.gate
        if gate is not None:
            record = run.step(gate.name)
            record.state = StepState.SKIPPED
            record.summary = "cancelled before approval"
        _skip_rest(run, "skipped because the run was cancelled")
        if not await engine.finish(run, procedure, RunState.CANCELLED, outcome="cancelled", actor=user):
            raise Refused(f"Run `{run.id}` changed state meanwhile; it is {run.state.value.replace('_', ' ')}.")
        return f"Cancelled run `{run.id}`."

    # A running run: the replica executing it stops before its next step.
    run.state = RunState.CANCELLED
    if not await engine.store.save_run(run, expected=[RunState.RUNNING]):
        raise Refused(f"Run `{run.id}` changed state meanwhile; nothing was cancelled.")
    await engine.audit(run, actor=user, action="cancelled", outcome="stops before its next step")
    await engine.view.deliver_card(run, procedure)
    await engine.view.announce(run, procedure, "cancelled")
    return f"Run `{run.id}` stops before its next step; the step in progress finishes first."


async def _void(engine: Engine, run: Run, procedure: Procedure, *, user: str) -> None:
    gate = procedure.gate
    assert gate is not None
    record = run.step(gate.name)
    record.state = StepState.FAILED
    record.summary = "void: the plan changed after it was requested"
    _skip_rest(run, "skipped because the plan changed")
    run.error = "The plan changed after it was requested, so its approvals no longer hold. Start a new run."
    await engine.finish(run, procedure, RunState.VOIDED, outcome="plan changed", actor=BOT_ACTOR)
    logger.info("Run %s voided: the plan changed (noticed when %s clicked)", run.id, user)


async def _expire_if_due(engine: Engine, run: Run, procedure: Procedure) -> bool:
    expires = await engine.store.run_expiry(run.id)
    if expires is None or engine.clock() < expires:
        return False
    await expire(engine, run, procedure)
    return True


async def expire(engine: Engine, run: Run, procedure: Procedure) -> bool:
    """End a waiting run whose approval time is over; return whether this call ended it."""
    gate = procedure.gate
    if gate is not None:
        record = run.step(gate.name)
        record.state = StepState.FAILED
        record.summary = f"expired: not approved within {_minutes(engine)}"
        record.finished_at = utcnow()
    _skip_rest(run, "skipped because the approval request expired")
    return await engine.finish(run, procedure, RunState.EXPIRED, outcome="approval expired", actor=BOT_ACTOR)


def _minutes(engine: Engine) -> str:
    from bot.durations import format_duration

    return format_duration(engine.settings.approval_ttl)


def _skip_rest(run: Run, reason: str) -> None:
    for record in run.steps:
        if record.state in (StepState.PENDING, StepState.WAITING):
            record.state = StepState.SKIPPED
            record.summary = reason
