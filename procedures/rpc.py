"""Oracle RPC: the primary and backup Ethereum endpoints side by side, and switching the API between them.

A node can respond to eth_blockNumber and still be useless to the oracle: when its newest block is
older than STALE_BLOCK_AGE_SECONDS it has stopped following the chain, and the run flags it.
Switching sets ETHEREUM_RPC_URL on the API's container, which rolls out new pods.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.clients.ethereum_rpc import EthereumRpc
from bot.clients.kubernetes import Deployment, PatchType
from bot.clients.kubernetes.env import EnvSetting, read_env, set_env_patch
from bot.durations import format_duration
from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.catalog import Command
from bot.engine.context import NotConfigured, StepContext, StepSkipped
from bot.engine.procedure import Level, Parallel, Procedure, Risk, Step, StepResult
from bot.errors import Refused, TargetError
from procedures.deployments import cluster_or_refuse
from procedures.investigate_common import StepFunction, endpoint_host
from procedures.rollout import PATCH_STEP_TIMEOUT_SECONDS, follow_rollout, lock_target

SECTION = "Incident Response Procedures"
STEP_TIMEOUT_SECONDS = 15.0
# Mainnet produces a block every 12 s; ten missed blocks means the node has fallen behind.
STALE_BLOCK_AGE_SECONDS = 120.0
RPC_VARIABLE = "ETHEREUM_RPC_URL"
ENDPOINT_ANNOTATION = "meridian-bot/ethereum-rpc-endpoint"


async def check_endpoint(rpc: EthereumRpc, *, now: datetime | None = None) -> StepResult:
    """Read the head block of one endpoint: its number, its age and whether it is stale."""
    block = await rpc.latest_block()
    age = max((now or datetime.now(UTC)) - block.timestamp, timedelta(0))
    age_seconds = age.total_seconds()
    is_stale = age_seconds > STALE_BLOCK_AGE_SECONDS
    data = {"reachable": True, "block": block.number, "age_seconds": age_seconds, "stale": is_stale}
    summary = f"block {block.number:,} · {format_duration(age)} old"
    if is_stale:
        return StepResult(
            summary=f"stale: {summary}, over {STALE_BLOCK_AGE_SECONDS:g} s: the node answers but no longer follows the chain",
            level=Level.CRITICAL,
            data=data,
        )
    return StepResult(summary=f"ok · {summary}", data=data)


def _endpoint_step(attribute: str, variable: str) -> StepFunction:
    async def check(ctx: StepContext) -> StepResult:
        rpc = getattr(ctx.targets, attribute)
        if rpc is None:
            raise NotConfigured(f"not configured (set {variable})")
        try:
            return await check_endpoint(rpc)
        except TargetError as error:
            # A provider that rate limits returns HTTP 429 or JSON-RPC error -32005 (limit exceeded).
            rate_limited = "HTTP 429" in error.message or "-32005" in error.message
            return StepResult(
                summary=f"down: {error.user_message}",
                level=Level.CRITICAL,
                data={"reachable": False, "error": error.user_message, "rate_limited": rate_limited},
            )

    return check


check_primary = _endpoint_step("rpc_primary", "ETHEREUM_RPC_URL")
check_backup = _endpoint_step("rpc_backup", "ETHEREUM_BACKUP_RPC_URL")


def endpoint_steps(prefix: str = "") -> tuple[Step, Step]:
    return (
        Step(f"{prefix}primary", "Primary RPC (ETHEREUM_RPC_URL)", check_primary, timeout=STEP_TIMEOUT_SECONDS),
        Step(f"{prefix}backup", "Backup RPC (ETHEREUM_BACKUP_RPC_URL)", check_backup, timeout=STEP_TIMEOUT_SECONDS),
    )


RPC_STATUS = Procedure(
    name="rpc-status",
    title="Oracle RPC status",
    summary="Compare the primary and backup Ethereum RPC endpoints: block number and latest block age",
    risk=Risk.READ,
    section=SECTION,
    stages=(Parallel(endpoint_steps()),),
)


# /meridian rpc switch-to-backup and switch-to-primary


def _endpoint_urls(ctx: StepContext, endpoint: str) -> tuple[str, str]:
    """Return the URL the switch sets and the other one, or refuse when one is not configured."""
    settings = ctx.settings
    primary = settings.ethereum_rpc_url.get_secret_value() if settings.ethereum_rpc_url else None
    backup = settings.ethereum_backup_rpc_url.get_secret_value() if settings.ethereum_backup_rpc_url else None
    if primary is None or backup is None:
        missing = "ETHEREUM_RPC_URL" if primary is None else "ETHEREUM_BACKUP_RPC_URL"
        raise Refused(f"{missing} is not set, so the bot does not know the endpoint to switch to.", hint=f"Set {missing} in the bot's settings.")
    return (backup, primary) if endpoint == "backup" else (primary, backup)


def _current_endpoint(setting: EnvSetting, *, target_url: str, other: str) -> str:
    if setting.value == target_url:
        return "the target endpoint"
    if setting.value == other:
        return "the other endpoint"
    if setting.source is None:
        return "unset"
    if setting.source == "value":
        return "another URL"
    return setting.source


def _identity(deployment: Deployment, setting: EnvSetting) -> dict[str, Any]:
    # The variable's value may hold an API key, so the identity binds to its digest.
    current = setting.value if setting.value is not None else (setting.source or "")
    return {
        "deployment_uid": deployment.uid,
        "revision": deployment.revision,
        "container": setting.container,
        "current_value_sha256": hashlib.sha256(current.encode()).hexdigest(),
    }


async def _switch_state(ctx: StepContext, endpoint: str) -> tuple[Deployment, EnvSetting, str, str]:
    cluster = cluster_or_refuse(ctx)
    target_url, other = _endpoint_urls(ctx, endpoint)
    deployment = await cluster.read_deployment()
    if deployment.paused:
        raise Refused(f"{deployment.namespace}/{deployment.name} is paused, so a new ETHEREUM_RPC_URL would not roll out.", hint="Resume the deployment first.")
    setting = read_env(deployment, RPC_VARIABLE)
    if setting.value == target_url:
        raise StepSkipped(f"{deployment.namespace}/{deployment.name} already uses the {endpoint} endpoint ({endpoint_host(target_url)}), so there is nothing to change")
    return deployment, setting, target_url, other


def _switch_read(endpoint: str) -> StepFunction:
    async def read(ctx: StepContext) -> StepResult:
        deployment, setting, target_url, other = await _switch_state(ctx, endpoint)
        target_check = ctx.results.get(endpoint, {})
        if target_check.get("reachable") is False or target_check.get("stale"):
            raise Refused(
                f"The {endpoint} endpoint is not healthy (see its step above), so switching to it would not help.",
                hint="Check the endpoint with `/meridian rpc status`, or fix the provider first.",
            )
        return StepResult(
            summary=f"container {setting.container}: {RPC_VARIABLE} is {_current_endpoint(setting, target_url=target_url, other=other)} now → {endpoint} ({endpoint_host(target_url)})",
            data={"revision": deployment.revision},
        )

    return read


def _switch_plan(endpoint: str) -> Callable[[StepContext], Awaitable[Plan]]:
    async def plan(ctx: StepContext) -> Plan:
        deployment, setting, target_url, other = await _switch_state(ctx, endpoint)
        name = f"{deployment.namespace}/{deployment.name}"
        preview = [
            f"Deployment {name}, container {setting.container}:",
            f"  {RPC_VARIABLE}: {_current_endpoint(setting, target_url=target_url, other=other)} → the {endpoint} endpoint ({endpoint_host(target_url)})",
            f"The change rolls out new pods one by one ({deployment.replicas} replicas).",
        ]
        if setting.source not in (None, "value"):
            preview.append(f"The variable now comes from {setting.source}; the switch replaces that reference with the URL itself.")
        return Plan(
            summary=f"Switch {name} to the {endpoint} Ethereum RPC endpoint",
            targets=(lock_target(cluster_or_refuse(ctx)),),
            identity=_identity(deployment, setting),
            preview="\n".join(preview),
        )

    return plan


def _switch_action(endpoint: str) -> StepFunction:
    async def switch(ctx: StepContext) -> StepResult:
        assert ctx.plan is not None
        cluster = cluster_or_refuse(ctx)
        deployment, setting, target_url, _ = await _switch_state(ctx, endpoint)
        if _identity(deployment, setting) != dict(ctx.plan.identity):
            raise Refused("The deployment changed after the plan was approved, so nothing was changed.", hint="Start a new run to review the current plan.")
        await ctx.progress(f"setting {RPC_VARIABLE} to the {endpoint} endpoint")
        patch = set_env_patch(deployment, setting, value=target_url, annotations={ENDPOINT_ANNOTATION: endpoint})
        patched = await cluster.patch_deployment(patch, patch_type=PatchType.JSON)
        return StepResult(
            summary=f"{RPC_VARIABLE} set to the {endpoint} endpoint ({endpoint_host(target_url)}) · generation {patched.generation}",
            data={"generation": patched.generation},
        )

    return switch


async def follow_switch(ctx: StepContext) -> StepResult:
    return await follow_rollout(ctx, generation=int(ctx.results["switch"]["generation"]))


def _switch_procedure(endpoint: str) -> Procedure:
    check = check_backup if endpoint == "backup" else check_primary
    variable = "ETHEREUM_BACKUP_RPC_URL" if endpoint == "backup" else "ETHEREUM_RPC_URL"
    return Procedure(
        name=f"rpc-switch-to-{endpoint}",
        title=f"Switch to the {endpoint} RPC",
        summary=f"Point the API's ETHEREUM_RPC_URL at the {endpoint} endpoint ({variable}) and follow the rollout",
        risk=Risk.HIGH,
        section=SECTION,
        stages=(
            Step(endpoint, f"Check the {endpoint} endpoint", check, timeout=STEP_TIMEOUT_SECONDS),
            Step("read", "Read the deployment", _switch_read(endpoint), timeout=PATCH_STEP_TIMEOUT_SECONDS),
            ApprovalGate(plan=_switch_plan(endpoint)),
            Step("switch", f"Set {RPC_VARIABLE}", _switch_action(endpoint), timeout=PATCH_STEP_TIMEOUT_SECONDS),
            Step("rollout", "Follow the rollout", follow_switch),
        ),
    )


SWITCH_TO_BACKUP = _switch_procedure("backup")
SWITCH_TO_PRIMARY = _switch_procedure("primary")

COMMANDS = (
    Command(words=("rpc", "status"), procedure=RPC_STATUS, examples=("/meridian rpc status",)),
    Command(words=("rpc", "switch-to-backup"), procedure=SWITCH_TO_BACKUP, examples=("/meridian rpc switch-to-backup",)),
    Command(words=("rpc", "switch-to-primary"), procedure=SWITCH_TO_PRIMARY, examples=("/meridian rpc switch-to-primary",)),
)
