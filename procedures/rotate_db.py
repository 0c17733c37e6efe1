"""Database Credentials Rotation: a new login role for the Meridian API, then the old one's login removed.

The API's privileges belong to a NOLOGIN group role (API_DATABASE_GROUP_ROLE). A rotation
creates a new LOGIN role in that group with a generated password, writes DATABASE_URL with it
into the API's Secret, rolls the deployment, checks /health and the new login, and only then
removes the old role's LOGIN. Until that last step the old role keeps working, so a failure
midway never locks the API out; the failing step says what is left to do.

The bot's own database role (its DATABASE_URL) is a different role and is never changed.
The new password lives only in this process between the step that creates the role and the
step that writes the Secret: it is never stored with the run, so a run interrupted between the
two leaves an unused role that the failure message names.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bot.clients.secrets_db_roles import (
    MAX_ROLE_NAME_LENGTH,
    ApiRoles,
    RoleFacts,
    url_user,
    url_with_credentials,
)
from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.catalog import Command
from bot.engine.context import NotConfigured, StepContext
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult
from bot.errors import BotError, Refused, TargetRejected
from procedures.deployments import cluster_or_refuse
from procedures.rotate_common import (
    HEX_32,
    SECTION,
    STEP_TIMEOUT_SECONDS,
    ensure_same_objects,
    follow_restart,
    generate_value,
    read_api_secret,
    require_keys,
    restart_deployment,
    rotation_locks,
    secret_identity,
)

URL_KEY = "DATABASE_URL"
# Bounds each connection and statement of the role changes, in seconds.
DATABASE_TIMEOUT_SECONDS = 10.0
# Passwords of roles created and not yet written into the Secret, by run id; never persisted.
_NEW_PASSWORDS: dict[str, str] = {}


def _roles(ctx: StepContext) -> ApiRoles:
    if ctx.settings.database_url is None:
        raise NotConfigured("not configured (set DATABASE_URL, the bot's own database role)")
    return ApiRoles(dsn=ctx.settings.database_url, timeout=DATABASE_TIMEOUT_SECONDS)


def _check_roles(facts: RoleFacts) -> None:
    """Refuse a rotation that would change the wrong role or could not finish."""
    group, old = facts.group_role, facts.old_role
    if old == facts.bot_role:
        raise Refused(
            f"The API's DATABASE_URL uses {old}, the bot's own database role, so it is not rotated.",
            hint="Give the API a login role of its own in the group role, separate from the bot's.",
        )
    if not facts.group_exists:
        raise Refused(f"The group role {group} does not exist.", hint="Create it (NOLOGIN) with the API's privileges, or set API_DATABASE_GROUP_ROLE.")
    if facts.group_can_login:
        raise Refused(f"The group role {group} can log in, so it is not a NOLOGIN group role.", hint=f"ALTER ROLE {group} NOLOGIN, then ask again.")
    if not facts.old_role_exists or not facts.old_role_can_login:
        raise Refused(f"The API's current role {old} does not exist or cannot log in, so the API is already broken or DATABASE_URL is stale.")
    if not facts.old_role_in_group:
        raise Refused(
            f"The API's current role {old} is not a member of {group}, so a new member of {group} might lack its privileges.",
            hint=f"GRANT {group} TO {old}, and move the privileges granted to {old} itself onto {group}.",
        )
    if not facts.bot_can_create_roles:
        raise Refused(f"The bot's role {facts.bot_role} lacks CREATEROLE, so it cannot create the new login role.")


async def _current(ctx: StepContext) -> tuple[RoleFacts, str]:
    secret = await read_api_secret(ctx)
    require_keys(secret, (URL_KEY,))
    old_role = url_user(secret.values[URL_KEY])
    facts = await _roles(ctx).inspect(group_role=ctx.settings.api_database_group_role, old_role=old_role)
    return facts, secret.values[URL_KEY]


def _new_role_name(group: str, now: datetime) -> str:
    return f"{group}_{now:%Y%m%d_%H%M%S}"[:MAX_ROLE_NAME_LENGTH]


async def read_roles(ctx: StepContext) -> StepResult:
    facts, _ = await _current(ctx)
    _check_roles(facts)
    level = Level.OK
    summary = f"API role {facts.old_role} in group {facts.group_role} · bot role {facts.bot_role} stays as it is"
    if facts.direct_grants_of_old_role:
        level = Level.WARNING
        summary += f" · {facts.direct_grants_of_old_role} table privileges are granted to {facts.old_role} itself and do not carry over"
    return StepResult(summary=summary, level=level, data={"old_role": facts.old_role})


async def plan_db_rotation(ctx: StepContext) -> Plan:
    facts, _ = await _current(ctx)
    _check_roles(facts)
    secret = await read_api_secret(ctx)
    deployment = await cluster_or_refuse(ctx).read_deployment()
    new_role = _new_role_name(facts.group_role, datetime.now(UTC))
    preview = [
        f"1. CREATE ROLE {new_role} LOGIN IN ROLE {facts.group_role}, with a generated password ({HEX_32.describe()}).",
        f"2. Write DATABASE_URL with {new_role} into Secret {secret.namespace}/{secret.name}.",
        f"3. Restart {deployment.namespace}/{deployment.name} and follow the rollout.",
        f"4. Check /health and a login as {new_role}.",
        f"5. ALTER ROLE {facts.old_role} NOLOGIN ({facts.old_role_sessions} of its sessions are open now; they end with the old pods).",
        f"The bot's own role {facts.bot_role} is not changed. Until step 5 the old role keeps working.",
    ]
    return Plan(
        summary=f"Rotate the API's database login from {facts.old_role} to a new role in {facts.group_role}",
        targets=(*rotation_locks(ctx), f"role:{facts.group_role}"),
        identity={**secret_identity(secret, deployment), "old_role": facts.old_role, "group_role": facts.group_role},
        preview="\n".join(preview),
        facts={"new_role": new_role},
    )


def _remaining(ctx: StepContext, failed_step: str) -> str:
    """Say what a person must still do after `failed_step` failed, given what the run did."""
    assert ctx.plan is not None
    old = ctx.plan.identity["old_role"]
    new = ctx.plan.facts["new_role"]
    secret = ctx.settings.kube_secret_name
    if failed_step == "create":
        return f"Nothing changed: {old} still logs in and the API still uses it."
    if failed_step == "secret":
        return (
            f"{old} still logs in and the API still uses it. The new role {new} exists but is unused: "
            f"drop it (`DROP ROLE {new};`) before starting a new run."
        )
    finish = f"then check /health and remove the old login (`ALTER ROLE {old} NOLOGIN;`)"
    if failed_step in ("restart", "rollout"):
        return (
            f"{old} still logs in. DATABASE_URL in {secret} already names {new}, but pods may still run with {old}: "
            f"finish the rollout (`/meridian rollout status`, `/meridian restart`), {finish}."
        )
    if failed_step == "verify":
        return f"{old} still logs in. DATABASE_URL names {new} and the rollout completed: find why the check failed, {finish}."
    return f"Everything else is done: the API uses {new}. Remove the old login by hand (`ALTER ROLE {old} NOLOGIN;`)."


def _says_what_remains(name: str) -> Callable[[Callable[[StepContext], Awaitable[StepResult]]], Callable[[StepContext], Awaitable[StepResult]]]:
    """Add to a failing step's message what is left to do, so no one guesses the state of the roles."""

    def decorate(step: Callable[[StepContext], Awaitable[StepResult]]) -> Callable[[StepContext], Awaitable[StepResult]]:
        @functools.wraps(step)
        async def run(ctx: StepContext) -> StepResult:
            try:
                return await step(ctx)
            except BotError as error:
                raise BotError(error.message, hint=f"What remains: {_remaining(ctx, name)}") from error

        return run

    return decorate


@_says_what_remains("create")
async def create_role(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    facts, _ = await _current(ctx)
    _check_roles(facts)
    if facts.old_role != ctx.plan.identity["old_role"]:
        raise Refused(f"DATABASE_URL now uses {facts.old_role}, not the approved {ctx.plan.identity['old_role']}, so nothing was changed.")
    new_role = str(ctx.plan.facts["new_role"])
    password = generate_value(HEX_32)
    await ctx.progress(f"creating {new_role}")
    await _roles(ctx).create_login_role(name=new_role, password=password, group_role=facts.group_role)
    _NEW_PASSWORDS[ctx.run.id] = password
    return StepResult(summary=f"created login role {new_role} in {facts.group_role}", data={"new_role": new_role})


@_says_what_remains("secret")
async def write_database_url(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    new_role = str(ctx.plan.facts["new_role"])
    password = _NEW_PASSWORDS.pop(ctx.run.id, None)
    if password is None:
        raise Refused(f"The password of {new_role} is no longer in the bot's memory (the bot restarted), so DATABASE_URL was not changed.")
    cluster = cluster_or_refuse(ctx)
    secret = await read_api_secret(ctx)
    deployment = await cluster.read_deployment()
    ensure_same_objects(ctx, secret, deployment)
    if url_user(secret.values[URL_KEY]) != ctx.plan.identity["old_role"]:
        raise Refused("DATABASE_URL changed after the plan was approved, so it was not overwritten.")

    new_url = url_with_credentials(secret.values[URL_KEY], user=new_role, password=password)
    await cluster.patch_secret(secret.name, values={URL_KEY: new_url}, resource_version=secret.resource_version)
    return StepResult(summary=f"DATABASE_URL in {secret.namespace}/{secret.name} now names {new_role}")


restart_step = _says_what_remains("restart")(restart_deployment)
follow_step = _says_what_remains("rollout")(follow_restart)


@_says_what_remains("verify")
async def verify(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    api = ctx.targets.meridian_api
    if api is None:
        raise Refused("MERIDIAN_API_URL is not set, so /health cannot confirm that the API works with the new role.")
    health = await api.health()
    if not health.is_healthy:
        raise TargetRejected("meridian-api", f"/health answered {health.status}: {health.error or 'no error given'}.")
    secret = await read_api_secret(ctx)
    user = await _roles(ctx).check_login(secret.values[URL_KEY], group_role=str(ctx.plan.identity["group_role"]))
    return StepResult(summary=f"/health ok · {user} logs in as a member of {ctx.plan.identity['group_role']}")


@_says_what_remains("revoke")
async def revoke_old_login(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    old = str(ctx.plan.identity["old_role"])
    facts, _ = await _current(ctx)
    sessions = await _roles(ctx).disable_login(role=old, never=facts.bot_role)
    level = Level.WARNING if sessions else Level.OK
    still = f" · {sessions} of its sessions are still open; they end when those clients disconnect" if sessions else ""
    return StepResult(summary=f"{old} can no longer log in{still}", level=level)


ROTATE_DB_CREDENTIALS = Procedure(
    name="rotate-db-credentials",
    title="Rotate the API's database credentials",
    summary="Create a new login role in the API's group role, switch DATABASE_URL to it and remove the old login (two approvers)",
    risk=Risk.CRITICAL,
    section=SECTION,
    stages=(
        Step("read", "Read DATABASE_URL and the roles", read_roles, timeout=STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_db_rotation),
        Step("create", "Create the new login role", create_role, timeout=STEP_TIMEOUT_SECONDS),
        Step("secret", "Update DATABASE_URL in the Secret", write_database_url, timeout=STEP_TIMEOUT_SECONDS),
        Step("restart", "Trigger the rolling restart", restart_step, timeout=STEP_TIMEOUT_SECONDS),
        Step("rollout", "Follow the rollout", follow_step),
        Step("verify", "Check /health and the new login", verify, timeout=STEP_TIMEOUT_SECONDS),
        Step("revoke", "Remove the old role's login", revoke_old_login, timeout=STEP_TIMEOUT_SECONDS),
    ),
)

COMMANDS = (
    Command(words=("rotate", "db-credentials"), procedure=ROTATE_DB_CREDENTIALS, examples=("/meridian rotate db-credentials",)),
)
