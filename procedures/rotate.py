"""Secret Rotation: JWT_SECRET, SESSION_TOKEN_SALT and API_KEY_SALT of the Meridian API.

Each rotation reads the API's Secret and deployment, asks two approvers, writes a new value
generated with `secrets`, restarts the deployment so every pod reads it, follows the rollout
and then watches /health and the logs for authentication errors.

API_KEY_SALT invalidates every agent's API key, so agent operators get notice first: the first
request posts the notice and records its time on the Secret (an annotation), and the rotation
is refused until API_KEY_SALT_NOTICE has passed, unless an admin overrides it with a reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.clients.kubernetes.secrets import annotation_time
from bot.durations import format_duration
from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.arguments import Option
from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.policy import Role
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult
from bot.errors import PermissionDenied, Refused
from procedures.deployments import cluster_or_refuse
from procedures.rotate_common import (
    BASE64URL_32,
    HEX_32,
    SECTION,
    STEP_TIMEOUT_SECONDS,
    ValueFormat,
    follow_restart,
    read_api_secret,
    require_keys,
    restart_deployment,
    rotation_locks,
    secret_identity,
    watch_after_rotation,
    write_values,
)

NOTICE_ANNOTATION = "meridian-bot/api-key-salt-notice-posted-at"


@dataclass(frozen=True)
class Rotation:
    """One rotatable value: its key in the Secret, its command word and the runbook's impact."""

    key: str
    command: str
    value_format: ValueFormat
    impact: str
    needs_notice: bool = False


JWT_SECRET = Rotation(
    key="JWT_SECRET",
    command="jwt-secret",
    value_format=BASE64URL_32,
    impact="All active sessions are invalidated: every JWT signed with the old secret is rejected, so users sign in again.",
)
SESSION_TOKEN_SALT = Rotation(
    key="SESSION_TOKEN_SALT",
    command="session-token-salt",
    value_format=HEX_32,
    impact="All stored session tokens become invalid, so every user must re-authenticate.",
)
API_KEY_SALT = Rotation(
    key="API_KEY_SALT",
    command="api-key-salt",
    value_format=HEX_32,
    impact="All agent API keys become invalid; agents must regenerate their API keys.",
    needs_notice=True,
)


def notice_text(*, posted_at: datetime, period: timedelta) -> str:
    earliest = (posted_at + period).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Notice to agent operators: API_KEY_SALT of the Meridian API will be rotated no earlier than {earliest}. "
        "From then on every agent API key is rejected, and each agent must regenerate its API key."
    )


async def check_notice(ctx: StepContext) -> StepResult:
    """Post the operator notice, or check that its period has passed or an admin overrode it."""
    secret = await read_api_secret(ctx)
    period = ctx.settings.api_key_salt_notice
    now = datetime.now(UTC)
    posted_at = annotation_time(secret, NOTICE_ANNOTATION)
    reason = ctx.args.get("override_notice")

    if reason is not None:
        requester_is_admin = ctx.policy is not None and await ctx.policy.has(ctx.run.requester, Role.ADMIN)
        if not requester_is_admin:
            raise PermissionDenied("Only an admin can override the notice period of API_KEY_SALT.", role="admin")
        posted = f"notice posted {format_duration(now - posted_at)} ago" if posted_at else "no notice posted"
        return StepResult(
            summary=f"notice period overridden by admin {ctx.run.requester} ({posted}): {reason}",
            level=Level.WARNING,
            data={"overridden": True},
        )

    if posted_at is None:
        if ctx.run.dry_run:
            return StepResult(summary="dry run: would post the notice to agent operators and refuse until it has run its course", level=Level.INFO)
        text = notice_text(posted_at=now, period=period)
        await cluster_or_refuse(ctx).patch_secret(
            secret.name, values={}, resource_version=secret.resource_version, annotations={NOTICE_ANNOTATION: now.isoformat()}
        )
        incident = ctx.targets.backups.incident
        if incident is not None:
            await incident.post(text)
        ctx.log.info("Posted the API_KEY_SALT notice; rotation possible from %s", (now + period).isoformat())
        raise Refused(
            f"{text} The notice was posted now"
            + (" in the incident channel" if incident is not None else "")
            + ", so nothing was rotated.",
            hint=f"Pass it on to the agent operators, then run `/meridian rotate api-key-salt` again after {format_duration(period)}.",
        )

    waited = now - posted_at
    if waited < period:
        earliest = (posted_at + period).strftime("%Y-%m-%d %H:%M UTC")
        raise Refused(
            f"The notice to agent operators was posted {format_duration(waited)} ago; API_KEY_SALT can be rotated from {earliest}, so nothing was rotated.",
            hint='An admin can override the notice period: `/meridian rotate api-key-salt --override-notice "REASON"`.',
        )
    return StepResult(summary=f"notice posted {format_duration(waited)} ago, longer than the {format_duration(period)} notice period")


def _read_step(rotation: Rotation) -> Callable[[StepContext], Awaitable[StepResult]]:
    async def read_rotation(ctx: StepContext) -> StepResult:
        secret = await read_api_secret(ctx)
        require_keys(secret, (rotation.key,))
        deployment = await cluster_or_refuse(ctx).read_deployment()
        return StepResult(
            summary=f"{secret.namespace}/{secret.name} holds {rotation.key} · {deployment.namespace}/{deployment.name} has {deployment.replicas} replicas",
        )

    return read_rotation


def _plan(rotation: Rotation) -> Callable[[StepContext], Awaitable[Plan]]:
    async def plan_rotation(ctx: StepContext) -> Plan:
        secret = await read_api_secret(ctx)
        require_keys(secret, (rotation.key,))
        deployment = await cluster_or_refuse(ctx).read_deployment()
        preview = [
            f"Impact: {rotation.impact}",
            f"1. Write a new {rotation.key} into Secret {secret.namespace}/{secret.name}: {rotation.value_format.describe()}, from Python's `secrets` module.",
            f"2. Restart {deployment.namespace}/{deployment.name} ({deployment.replicas} pods, rolling) so every pod reads it, and follow the rollout.",
            f"3. Watch /health and the pods' logs for authentication errors for {format_duration(ctx.settings.rotation_watch)}.",
            "The value is never shown: not here, in the logs or in the audit log.",
        ]
        reason = ctx.args.get("override_notice")
        if reason is not None:
            preview.append(f"The agent operators' notice period is overridden by admin {ctx.run.requester}: {reason}")
        return Plan(
            summary=f"Rotate {rotation.key} of {deployment.namespace}/{deployment.name}",
            targets=rotation_locks(ctx),
            identity=secret_identity(secret, deployment),
            preview="\n".join(preview),
        )

    return plan_rotation


def _write_step(rotation: Rotation) -> Callable[[StepContext], Awaitable[StepResult]]:
    async def write_value(ctx: StepContext) -> StepResult:
        # A successful rotation ends the notice, so the next rotation needs a new one.
        annotations = {NOTICE_ANNOTATION: None} if rotation.needs_notice else None
        return await write_values(ctx, formats={rotation.key: rotation.value_format}, annotations=annotations)

    return write_value


def rotation_procedure(rotation: Rotation) -> Procedure:
    notice = (Step("notice", "Check the agent operators' notice", check_notice, timeout=STEP_TIMEOUT_SECONDS),) if rotation.needs_notice else ()
    return Procedure(
        name=f"rotate-{rotation.command}",
        title=f"Rotate {rotation.key}",
        summary=f"Generate a new {rotation.key}, write it into the API's Secret and roll the deployment (two approvers)",
        risk=Risk.CRITICAL,
        section=SECTION,
        stages=(
            Step("read", "Read the Secret and the deployment", _read_step(rotation), timeout=STEP_TIMEOUT_SECONDS),
            *notice,
            ApprovalGate(plan=_plan(rotation)),
            Step("write", f"Write the new {rotation.key}", _write_step(rotation), timeout=STEP_TIMEOUT_SECONDS),
            Step("restart", "Trigger the rolling restart", restart_deployment, timeout=STEP_TIMEOUT_SECONDS),
            Step("rollout", "Follow the rollout", follow_restart),
            Step("watch", "Watch /health and the logs for authentication errors", watch_after_rotation),
        ),
    )


ROTATE_JWT_SECRET = rotation_procedure(JWT_SECRET)
ROTATE_SESSION_TOKEN_SALT = rotation_procedure(SESSION_TOKEN_SALT)
ROTATE_API_KEY_SALT = rotation_procedure(API_KEY_SALT)

COMMANDS = (
    Command(words=("rotate", "jwt-secret"), procedure=ROTATE_JWT_SECRET, examples=("/meridian rotate jwt-secret",)),
    Command(
        words=("rotate", "session-token-salt"),
        procedure=ROTATE_SESSION_TOKEN_SALT,
        examples=("/meridian rotate session-token-salt",),
    ),
    Command(
        words=("rotate", "api-key-salt"),
        procedure=ROTATE_API_KEY_SALT,
        options=(
            Option(
                "--override-notice",
                "text",
                "admins only: rotate before the agent operators' notice period has passed, for this stated reason",
                metavar="REASON",
            ),
        ),
        examples=("/meridian rotate api-key-salt", '/meridian rotate api-key-salt --override-notice "key leaked in a public repo"'),
    ),
)
