"""Health Checks & Monitoring: the API, the database, the Ethereum RPC and the frontend at once."""

from __future__ import annotations

from bot.engine.catalog import Command
from bot.engine.context import NotConfigured, StepContext, StepSkipped
from bot.engine.procedure import Level, Parallel, Procedure, Risk, Step, StepResult
from bot.errors import TargetError
from procedures.rpc import check_endpoint

# Each client has its own timeout; this bounds a step in case a client does not.
STEP_TIMEOUT_SECONDS = 15.0


def _not_configured(variable: str) -> StepSkipped:
    return NotConfigured(f"not configured (set {variable})")


def _unreachable(error: TargetError) -> StepResult:
    return StepResult(summary=f"down: {error.user_message}", level=Level.CRITICAL)


async def check_api(ctx: StepContext) -> StepResult:
    api = ctx.targets.meridian_api
    if api is None:
        raise _not_configured("MERIDIAN_API_URL")
    try:
        health = await api.health()
    except TargetError as error:
        return _unreachable(error)

    if not health.is_healthy:
        reason = health.error or f"status {health.status!r}"
        return StepResult(
            summary=f"{health.status}: {reason} (HTTP {health.http_status}, {_ms(health.latency_seconds)})",
            level=Level.CRITICAL,
        )

    facts = [f"version {health.version or 'unknown'}"]
    if health.oracle_enabled is not None:
        facts.append("oracle enabled" if health.oracle_enabled else "oracle disabled")
    if health.baskets_count is not None:
        facts.append(f"{health.baskets_count} baskets")
    level = Level.WARNING if health.oracle_enabled is False else Level.OK
    return StepResult(summary=f"ok · {' · '.join(facts)} · {_ms(health.latency_seconds)}", level=level)


async def check_database(ctx: StepContext) -> StepResult:
    database = ctx.targets.database
    if database is None:
        raise _not_configured("DATABASE_URL")
    try:
        ping = await database.ping()
    except TargetError as error:
        return _unreachable(error)
    return StepResult(summary=f"ok · PostgreSQL {ping.server_version} · {_ms(ping.latency_seconds)}")


async def check_rpc(ctx: StepContext) -> StepResult:
    rpc = ctx.targets.rpc_primary
    if rpc is None:
        raise _not_configured("ETHEREUM_RPC_URL")
    try:
        # The newest block's age tells a node that answers but no longer follows the chain.
        return await check_endpoint(rpc)
    except TargetError as error:
        return _unreachable(error)


async def check_frontend(ctx: StepContext) -> StepResult:
    frontend = ctx.targets.frontend
    if frontend is None:
        raise _not_configured("MERIDIAN_FRONTEND_URL")
    try:
        health = await frontend.health()
    except TargetError as error:
        return _unreachable(error)
    if not health.is_healthy:
        return StepResult(
            summary=f"{health.status} (HTTP {health.http_status}, {_ms(health.latency_seconds)})",
            level=Level.CRITICAL,
        )
    return StepResult(summary=f"ok · {_ms(health.latency_seconds)}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


HEALTH = Procedure(
    name="health",
    title="Health check",
    summary="Check the API, database, Ethereum RPC and frontend in parallel",
    risk=Risk.READ,
    section="Health Checks & Monitoring",
    stages=(
        Parallel(
            (
                Step("api", "API /health", check_api, timeout=STEP_TIMEOUT_SECONDS),
                Step("database", "Database", check_database, timeout=STEP_TIMEOUT_SECONDS),
                Step("rpc", "Ethereum RPC", check_rpc, timeout=STEP_TIMEOUT_SECONDS),
                Step("frontend", "Frontend /api/health", check_frontend, timeout=STEP_TIMEOUT_SECONDS),
            )
        ),
    ),
)

COMMANDS = (Command(words=("health",), procedure=HEALTH, examples=("/meridian health",)),)
