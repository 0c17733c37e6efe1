"""Emergency Procedures: Production Down and Security Breach Suspected, each as one run card.

Pages in these flows run before the approval gate, so on-call and the security lead are
reached while the approvers decide. A page that fails shows as a critical finding on the card
instead of failing the step, because the rest of the emergency response must not wait for
PagerDuty; the card and the log say that nobody was paged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.clients.kubernetes import PatchType
from bot.clients.kubernetes.rollout import RESTARTED_AT_ANNOTATION, revision_history
from bot.durations import format_duration
from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.arguments import Option
from bot.engine.catalog import Command
from bot.engine.context import StepContext, StepSkipped
from bot.engine.procedure import Level, Parallel, Procedure, Risk, Step, StepResult
from bot.errors import BotError
from procedures import database_truncate, health
from procedures.database import read_audit_logs
from procedures.database_common import database
from procedures.deployments import cluster_or_refuse, list_pods, show_rollout_history
from procedures.people import find_contact, send_page
from procedures.rollout import follow_rollout, plan_rollback, roll_back
from procedures.rotate_common import (
    BASE64URL_32,
    HEX_32,
    STEP_TIMEOUT_SECONDS,
    read_api_secret,
    require_keys,
    rotation_locks,
    secret_identity,
    write_values,
)

SECTION = "Emergency Procedures"
DEFAULT_RECENT_ROLLOUT = timedelta(hours=1)
BREACH_LOG_LEVEL = "debug"
BREACH_KEYS = {"JWT_SECRET": BASE64URL_32, "SESSION_TOKEN_SALT": HEX_32, "API_KEY_SALT": HEX_32}


async def page_or_report(ctx: StepContext, *, purpose: str, summary: str, details: dict[str, Any] | None = None) -> StepResult:
    """Page through PagerDuty; a failure becomes a critical finding so the flow goes on."""
    if ctx.run.dry_run:
        return StepResult(summary=f"dry run: would page ({purpose}): {summary}", level=Level.INFO)
    try:
        return await send_page(ctx, purpose=purpose, summary=summary, severity="critical", details=details)
    except BotError as error:
        ctx.log.warning("Page for %s failed: %s", purpose, error.user_message)
        return StepResult(
            summary=f"page FAILED, nobody was paged: {error.user_message} Call them now (`/meridian oncall`).",
            level=Level.CRITICAL,
        )


# /meridian emergency production-down


def _recent_window(ctx: StepContext) -> timedelta:
    seconds = ctx.args.get("recent")
    return timedelta(seconds=seconds) if seconds else DEFAULT_RECENT_ROLLOUT


async def _last_rollout_age(ctx: StepContext) -> tuple[int | None, timedelta | None]:
    """Return the current revision and how long ago its ReplicaSet was created."""
    cluster = cluster_or_refuse(ctx)
    deployment = await cluster.read_deployment()
    history = revision_history(deployment, await cluster.list_replicasets(deployment))
    current = next((revision for revision in history if revision.is_current), None)
    if current is None or current.replicaset.created_at is None:
        return deployment.revision, None
    return current.number, datetime.now(UTC) - current.replicaset.created_at


async def check_recent_rollout(ctx: StepContext) -> StepResult:
    revision, age = await _last_rollout_age(ctx)
    window = _recent_window(ctx)
    if age is None:
        return StepResult(summary=f"revision {revision}: its start time is unknown", level=Level.WARNING, data={"recent": False})
    if age <= window:
        return StepResult(
            summary=f"revision {revision} rolled out {format_duration(age)} ago: a recent deployment, so the runbook says roll back now (Approve below)",
            level=Level.CRITICAL,
            data={"recent": True},
        )
    return StepResult(summary=f"revision {revision} rolled out {format_duration(age)} ago, before the last {format_duration(window)}", data={"recent": False})


async def page_production_down(ctx: StepContext) -> StepResult:
    return await page_or_report(ctx, purpose="production-down", summary="EMERGENCY: Meridian production is down")


async def plan_production_rollback(ctx: StepContext) -> Plan:
    revision, age = await _last_rollout_age(ctx)
    window = _recent_window(ctx)
    if age is None or age > window:
        raise StepSkipped(
            f"no rollout in the last {format_duration(window)} (revision {revision}), so no rollback is offered. "
            "Check the load balancer and `/meridian logs`; `/meridian restart` clears exhausted connection pools."
        )
    return await plan_rollback(ctx)


async def follow_rollback(ctx: StepContext) -> StepResult:
    return await follow_rollout(ctx, generation=int(ctx.results["rollback"]["generation"]))


PRODUCTION_DOWN = Procedure(
    name="emergency-production-down",
    title="EMERGENCY: Production down",
    summary="The first five minutes: pods, recent rollouts, /health, page on-call, and a rollback when a rollout was recent",
    risk=Risk.HIGH,
    section=SECTION,
    stages=(
        Parallel(
            (
                Step("pods", "Pod health", list_pods, timeout=STEP_TIMEOUT_SECONDS),
                Step("history", "Rollout history", show_rollout_history, timeout=STEP_TIMEOUT_SECONDS),
                Step("health", "API /health", health.check_api, timeout=STEP_TIMEOUT_SECONDS),
            )
        ),
        Step("recent", "Recent deployment?", check_recent_rollout, timeout=STEP_TIMEOUT_SECONDS),
        Step("page", "Page on-call", page_production_down, timeout=STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_production_rollback, title="Approval of the rollback"),
        Step("rollback", "Roll back to the previous revision", roll_back, timeout=STEP_TIMEOUT_SECONDS),
        Step("rollout", "Follow the rollback", follow_rollback),
    ),
)


# /meridian emergency security-breach


def _breach_env_patch(ctx: StepContext) -> dict[str, Any]:
    """Raise the log level variable and restart in one patch, so the pods also read the new secrets."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    container = _api_container(ctx)
    return {
        "spec": {
            "template": {
                "metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}},
                "spec": {"containers": [{"name": container, "env": [{"name": ctx.settings.api_log_level_var, "value": BREACH_LOG_LEVEL}]}]},
            }
        }
    }


def _api_container(ctx: StepContext) -> str:
    return str(ctx.results["inspect"]["container"])


async def inspect_breach(ctx: StepContext) -> StepResult:
    secret = await read_api_secret(ctx)
    require_keys(secret, tuple(BREACH_KEYS))
    deployment = await cluster_or_refuse(ctx).read_deployment()
    inspection = await database(ctx).inspect_truncate(database_truncate.SESSIONS_TABLE)
    cascade = inspection.plain_truncate_fails
    database_truncate.check_truncatable(inspection, cascade=cascade)
    container = deployment.images[0][0] if deployment.images else "api"
    return StepResult(
        summary=f"{', '.join(BREACH_KEYS)} in {secret.name} · {inspection.table.rows} sessions · container {container} of {deployment.name}",
        data={"container": container, "cascade": cascade},
    )


async def page_security_lead(ctx: StepContext) -> StepResult:
    lead = find_contact(ctx, "Security Lead")
    details = {"security_lead": lead.contact if lead else "not configured"}
    return await page_or_report(ctx, purpose="security-breach", summary="EMERGENCY: security breach suspected at Meridian; security lead requested", details=details)


async def plan_breach(ctx: StepContext) -> Plan:
    secret = await read_api_secret(ctx)
    require_keys(secret, tuple(BREACH_KEYS))
    deployment = await cluster_or_refuse(ctx).read_deployment()
    inspection = await database(ctx).inspect_truncate(database_truncate.SESSIONS_TABLE)
    cascade = inspection.plain_truncate_fails
    database_truncate.check_truncatable(inspection, cascade=cascade)
    emptied = [inspection.table, *(inspection.cascade_tables if cascade else ())]
    emptied_text = ", ".join(f"{table.name} ({table.rows} rows now)" for table in emptied)
    preview = [
        f"1. Rotate JWT_SECRET, SESSION_TOKEN_SALT and API_KEY_SALT in {secret.namespace}/{secret.name} (32 random bytes each, never shown).",
        "   Every session and every agent API key stops working; the agent operators' notice period does not apply in a breach.",
        f"2. Invalidate all sessions: TRUNCATE {emptied_text}.",
        f"3. Set {ctx.settings.api_log_level_var}={BREACH_LOG_LEVEL} on {deployment.namespace}/{deployment.name} and restart it, so the pods log more and read the new secrets.",
        "4. Follow the rollout.",
        "5. Show the audit_logs entries of the last 24 hours.",
        "A failing step stops the steps after it; the card shows what was done.",
    ]
    return Plan(
        summary=f"Security breach response for {deployment.namespace}/{deployment.name}",
        targets=(*rotation_locks(ctx), *(f"table:{table.name}" for table in emptied)),
        identity={**secret_identity(secret, deployment), "sessions": inspection.identity()},
        preview="\n".join(preview),
        facts={"inspection": inspection.to_json(), "cascade": cascade},
    )


async def rotate_breach_secrets(ctx: StepContext) -> StepResult:
    return await write_values(ctx, formats=dict(BREACH_KEYS))


async def invalidate_sessions(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    approved = database_truncate.TruncateInspection.from_json(dict(ctx.plan.facts["inspection"]))
    outcome = await database(ctx).truncate(
        approved, cascade=bool(ctx.plan.facts["cascade"]), lock_timeout=database_truncate.TRUNCATE_LOCK_TIMEOUT_SECONDS
    )
    removed = ", ".join(f"{rows:,} rows from {name}" for name, rows in outcome.rows_removed.items())
    return StepResult(summary=f"removed {removed}", data={"rows_removed": outcome.rows_removed})


async def raise_log_level(ctx: StepContext) -> StepResult:
    cluster = cluster_or_refuse(ctx)
    await ctx.progress(f"setting {ctx.settings.api_log_level_var}={BREACH_LOG_LEVEL} and restarting")
    patched = await cluster.patch_deployment(_breach_env_patch(ctx), patch_type=PatchType.STRATEGIC_MERGE)
    return StepResult(
        summary=f"{ctx.settings.api_log_level_var}={BREACH_LOG_LEVEL} on container {_api_container(ctx)}; restart requested (generation {patched.generation})",
        data={"generation": patched.generation},
    )


async def follow_breach_rollout(ctx: StepContext) -> StepResult:
    return await follow_rollout(ctx, generation=int(ctx.results["logging"]["generation"]))


SECURITY_BREACH = Procedure(
    name="emergency-security-breach",
    title="EMERGENCY: Security breach suspected",
    summary="Page the security lead, then after two approvals rotate JWT_SECRET and both salts, TRUNCATE sessions, raise log verbosity and show audit_logs",
    risk=Risk.CRITICAL,
    section=SECTION,
    stages=(
        Step("page", "Page the security lead", page_security_lead, timeout=STEP_TIMEOUT_SECONDS),
        Step("inspect", "Read the Secret, the deployment and sessions", inspect_breach, timeout=STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_breach, title="Approval of the breach plan"),
        Step("rotate", "Rotate JWT_SECRET, SESSION_TOKEN_SALT, API_KEY_SALT", rotate_breach_secrets, timeout=STEP_TIMEOUT_SECONDS),
        Step("sessions", "Invalidate all sessions (TRUNCATE)", invalidate_sessions, timeout=STEP_TIMEOUT_SECONDS),
        Step("logging", "Raise log verbosity and restart", raise_log_level, timeout=STEP_TIMEOUT_SECONDS),
        Step("rollout", "Follow the rollout", follow_breach_rollout),
        Step("audit", "Recent audit_logs", read_audit_logs, timeout=STEP_TIMEOUT_SECONDS),
    ),
)

COMMANDS = (
    Command(
        words=("emergency", "production-down"),
        procedure=PRODUCTION_DOWN,
        options=(Option("--recent", "duration", "how recent a rollout must be for a rollback to be offered (default 1h)", metavar="DURATION"),),
        examples=("/meridian emergency production-down", "/meridian emergency production-down --recent 3h"),
    ),
    Command(words=("emergency", "security-breach"), procedure=SECURITY_BREACH, examples=("/meridian emergency security-breach",)),
)
