"""EMERGENCY: Smart Contract Issue: read `paused()` and pause the contract.

With PAUSER_KEY set, two approvers approve and the bot signs and sends `pause()`, waits for
the receipt and reads `paused()` again. Without a key, the exact transaction goes to the run's
thread and the incident channel, for the team's multisig to propose.
"""

from __future__ import annotations

from bot.clients.contract import PausableContract, pauser_address, require_success
from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.catalog import Command
from bot.engine.context import NotConfigured, StepContext, StepSkipped
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult
from bot.errors import Refused
from bot.slack.mrkdwn import escape
from procedures.emergency import SECTION

STEP_TIMEOUT_SECONDS = 30.0


def contract(ctx: StepContext) -> PausableContract:
    if not ctx.settings.contract_address:
        raise NotConfigured("not configured (set CONTRACT_ADDRESS)")
    if ctx.targets.rpc_primary is None:
        raise NotConfigured("not configured (set ETHEREUM_RPC_URL)")
    return PausableContract(rpc=ctx.targets.rpc_primary, address=ctx.settings.contract_address)


async def read_paused_state(ctx: StepContext) -> StepResult:
    pausable = contract(ctx)
    paused = await pausable.paused()
    call = await pausable.pause_call(chain_id=ctx.settings.chain_id)
    has_key = ctx.settings.pauser_key is not None
    if paused:
        return StepResult(summary=f"{pausable.address} is already paused (paused() is true)", level=Level.INFO, data={"paused": True})

    detail = f"The pause() transaction:\n{call.describe()}"
    if has_key:
        sender = pauser_address(ctx.settings.pauser_key.get_secret_value())  # type: ignore[union-attr]
        summary = f"{pausable.address} is NOT paused · the bot can send pause() from {sender} after two approvals"
    else:
        summary = f"{pausable.address} is NOT paused · no PAUSER_KEY: the multisig must send pause(); the transaction is in the thread"
        incident = ctx.targets.backups.incident
        if incident is not None and not ctx.run.dry_run:
            await incident.post(f"Smart-contract emergency: propose this pause() transaction from the multisig now.\n```{escape(call.describe())}```")
    return StepResult(summary=summary, level=Level.CRITICAL, detail=detail, detail_title="pause() transaction", data={"paused": False})


async def plan_pause(ctx: StepContext) -> Plan:
    pausable = contract(ctx)
    if await pausable.paused():
        raise StepSkipped(f"{pausable.address} is already paused, so there is nothing to send")
    if ctx.settings.pauser_key is None:
        raise StepSkipped(
            "no PAUSER_KEY is configured, so the bot cannot send pause(); "
            "propose the transaction in the thread from the team's multisig"
        )
    call = await pausable.pause_call(chain_id=ctx.settings.chain_id)
    sender = pauser_address(ctx.settings.pauser_key.get_secret_value())
    return Plan(
        summary=f"Send pause() to {pausable.address} from {sender}",
        targets=(f"contract:{call.chain_id}/{pausable.address}",),
        identity={"contract": pausable.address, "chain_id": call.chain_id, "sender": sender, "paused": False},
        preview=f"Sign and send from {sender}:\n{call.describe()}\nThen wait for the receipt and read paused() again.",
        facts={"chain_id": call.chain_id},
    )


async def send_pause(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None and ctx.settings.pauser_key is not None
    pausable = contract(ctx)
    if await pausable.paused():
        return StepResult(summary="already paused by someone else; nothing was sent", level=Level.INFO, data={"sent": False})
    call = await pausable.pause_call(chain_id=int(ctx.plan.facts["chain_id"]))
    await ctx.progress("signing and sending pause()")
    transaction_hash = await pausable.send_pause(key=ctx.settings.pauser_key.get_secret_value(), call=call)
    await ctx.progress(f"waiting for the receipt of {transaction_hash}")
    receipt = await pausable.wait_for_receipt(transaction_hash)
    require_success(receipt)
    return StepResult(
        summary=f"pause() mined in block {receipt.block_number} (transaction {receipt.transaction_hash}, gas used {receipt.gas_used})",
        data={"sent": True, "transaction_hash": receipt.transaction_hash, "block": receipt.block_number},
    )


async def confirm_paused(ctx: StepContext) -> StepResult:
    pausable = contract(ctx)
    if not await pausable.paused():
        raise Refused(f"paused() on {pausable.address} is still false after the transaction.", hint="Check the transaction and the contract's pauser.")
    return StepResult(summary=f"paused() on {pausable.address} is true")


SMART_CONTRACT = Procedure(
    name="emergency-smart-contract",
    title="EMERGENCY: Smart contract issue",
    summary="Show whether the contract is paused and pause it (PAUSER_KEY, two approvers) or post the transaction for the multisig",
    risk=Risk.CRITICAL,
    section=SECTION,
    stages=(
        Step("state", "Read paused()", read_paused_state, timeout=STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_pause, title="Approval of pause()"),
        Step("pause", "Send pause() and wait for the receipt", send_pause, timeout=180.0),
        Step("confirm", "Read paused() again", confirm_paused, timeout=STEP_TIMEOUT_SECONDS),
    ),
)

COMMANDS = (Command(words=("emergency", "smart-contract"), procedure=SMART_CONTRACT, examples=("/meridian emergency smart-contract",)),)
