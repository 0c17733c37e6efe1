"""Rate limiting (INC-004): the API's x-ratelimit headers, the 429s in its logs, and a temporary increase.

The increase sets RATE_LIMIT_VARIABLE on the API's container and records the previous entry
and the time it should end in deployment annotations. When that time passes, the health
monitor reminds the incident channel, and `/meridian ratelimit restore` (with its own approval)
puts the previous entry back. The bot never changes the service without an approval, so it
does not restore the limit on its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.clients.kubernetes import Deployment, PatchType
from bot.clients.kubernetes.env import (
    EnvSetting,
    annotations_patch,
    read_env,
    set_env_patch,
)
from bot.clients.log_analysis import rate_limit_activity
from bot.durations import format_duration
from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.arguments import Argument, Option
from bot.engine.catalog import Command
from bot.engine.context import NotConfigured, StepContext, StepSkipped
from bot.engine.procedure import Level, Parallel, Procedure, Risk, Step, StepResult
from bot.errors import Refused, UsageError
from procedures.deployments import cluster_or_refuse, cluster_or_skip
from procedures.investigate_common import all_records, read_recent_logs, tolerant
from procedures.rollout import PATCH_STEP_TIMEOUT_SECONDS, follow_rollout, lock_target

SECTION = "Incident Response Procedures"
STEP_TIMEOUT_SECONDS = 30.0
# TODO: make the variable a setting. The runbook keeps the API's rate limits in routes.rs, so
# this name works only once the API reads its limit (requests per minute per client) from it.
RATE_LIMIT_VARIABLE = "RATE_LIMIT_PER_MINUTE"
PREVIOUS_ANNOTATION = "meridian-bot/rate-limit-previous"
UNTIL_ANNOTATION = "meridian-bot/rate-limit-until"
DEFAULT_INCREASE_SECONDS = 3_600.0
MAX_INCREASE_SECONDS = 86_400.0
# A busiest client address with at least this share of the 429s looks like an attack, not a spike.
ATTACK_SHARE = 0.5
TOP_CLIENTS_SHOWN = 10


# /meridian ratelimit


async def read_headers(ctx: StepContext) -> StepResult:
    api = ctx.targets.meridian_api
    if api is None:
        raise NotConfigured("not configured (set MERIDIAN_API_URL)")
    headers = await api.rate_limit_headers()
    facts = [
        f"limit {_value(headers.limit)}",
        f"remaining {_value(headers.remaining)}",
        f"reset {_value(headers.reset)}",
    ]
    data = {
        "limit": headers.limit,
        "remaining": headers.remaining,
        "reset": headers.reset,
        "http_status": headers.http_status,
        "rate_limited": headers.is_rate_limited,
    }
    if headers.limit is None and headers.remaining is None:
        return StepResult(summary=f"no x-ratelimit headers on GET {headers.path} (HTTP {headers.http_status})", level=Level.WARNING, data=data)
    summary = f"GET {headers.path}: HTTP {headers.http_status} · " + " · ".join(facts)
    if headers.retry_after:
        summary += f" · Retry-After {headers.retry_after}"
    return StepResult(summary=summary, level=Level.CRITICAL if headers.is_rate_limited else Level.OK, data=data)


async def read_rejections(ctx: StepContext) -> StepResult:
    cluster = cluster_or_skip(ctx)
    logs = await read_recent_logs(ctx, cluster)
    activity = rate_limit_activity(all_records(logs), top=TOP_CLIENTS_SHOWN)
    data: dict[str, Any] = {
        "rejected": activity.rejected,
        "per_minute": activity.per_minute,
        "top_clients": [list(pair) for pair in activity.top_clients],
        "top_share": activity.top_share,
        "unattributed": activity.unattributed,
    }
    if not activity.rejected:
        return StepResult(summary=f"no 429 answers in the logs of {len(logs)} pods in the last hour", data=data)

    rate = f"{activity.per_minute:.1f} a minute" if activity.per_minute is not None else "rate unknown (lines without time)"
    summary = f"{activity.rejected} answers 429 in the last hour ({rate})"
    if activity.top_clients:
        address, count = activity.top_clients[0]
        summary += f" · busiest client {address}: {count} ({activity.top_share:.0%})"
    rows = [f"{address:<40} {count}" for address, count in activity.top_clients]
    if activity.unattributed:
        rows.append(f"{'(no client address in the line)':<40} {activity.unattributed}")
    return StepResult(
        summary=summary,
        level=Level.WARNING,
        detail="Client addresses that received 429, busiest first:\n" + "\n".join(rows),
        detail_title="Rate-limited clients",
        data=data,
    )


def _value(number: int | None) -> str:
    return "-" if number is None else f"{number:,}"


def rate_limit_steps() -> tuple[Step, Step]:
    return (
        Step("headers", "x-ratelimit headers", tolerant(read_headers), timeout=STEP_TIMEOUT_SECONDS),
        Step("rejections", "429 answers in the logs", tolerant(read_rejections), timeout=STEP_TIMEOUT_SECONDS),
    )


RATELIMIT = Procedure(
    name="ratelimit",
    title="Rate limits",
    summary="Show the API's x-ratelimit headers and the recent rate of 429 answers in its logs",
    risk=Risk.READ,
    section=SECTION,
    stages=(Parallel(rate_limit_steps()),),
)


# /meridian ratelimit raise LIMIT [--for DURATION] and /meridian ratelimit restore


def _entry_json(setting: EnvSetting, deployment: Deployment) -> str:
    """Serialize the variable's current env entry as JSON ("null" when unset), to restore it later."""
    if setting.env_index is None:
        return "null"
    container = deployment.template["spec"]["containers"][setting.container_index]
    return json.dumps(container["env"][setting.env_index], sort_keys=True, separators=(",", ":"))


def _identity(deployment: Deployment, setting: EnvSetting) -> dict[str, Any]:
    return {
        "deployment_uid": deployment.uid,
        "revision": deployment.revision,
        "container": setting.container,
        "current_entry": _entry_json(setting, deployment),
    }


def _increase_seconds(ctx: StepContext) -> float:
    seconds = float(ctx.args.get("for") or DEFAULT_INCREASE_SECONDS)
    if seconds > MAX_INCREASE_SECONDS:
        raise UsageError(f"--for: at most {format_duration(timedelta(seconds=MAX_INCREASE_SECONDS))}.", hint="A lasting change belongs in the API's configuration.")
    return seconds


async def _raise_state(ctx: StepContext) -> tuple[Deployment, EnvSetting]:
    cluster = cluster_or_refuse(ctx)
    deployment = await cluster.read_deployment()
    if deployment.paused:
        raise Refused(f"{deployment.namespace}/{deployment.name} is paused, so a new limit would not roll out.", hint="Resume the deployment first.")
    setting = read_env(deployment, RATE_LIMIT_VARIABLE)
    if UNTIL_ANNOTATION in deployment.annotations:
        raise Refused(
            f"A temporary rate-limit increase is already in place (until {deployment.annotations[UNTIL_ANNOTATION]}).",
            hint="Restore it first with `/meridian ratelimit restore`, then raise it again.",
        )
    return deployment, setting


async def read_raise(ctx: StepContext) -> StepResult:
    deployment, setting = await _raise_state(ctx)
    requested = int(ctx.args["limit"])
    current_limit = ctx.results.get("headers", {}).get("limit")
    if isinstance(current_limit, int) and requested <= current_limit:
        raise Refused(f"The API's limit is {current_limit} now (x-ratelimit-limit), so {requested} is no increase.", hint="Ask for a higher limit.")
    current = setting.value if setting.source == "value" else (setting.source or "unset")
    return StepResult(
        summary=f"container {setting.container}: {RATE_LIMIT_VARIABLE} is {current} → {requested} for {format_duration(timedelta(seconds=_increase_seconds(ctx)))}",
        data={"revision": deployment.revision},
    )


async def plan_raise(ctx: StepContext) -> Plan:
    deployment, setting = await _raise_state(ctx)
    requested = int(ctx.args["limit"])
    duration = timedelta(seconds=_increase_seconds(ctx))
    name = f"{deployment.namespace}/{deployment.name}"
    current = setting.value if setting.source == "value" else (setting.source or "unset")
    preview = [
        f"Deployment {name}, container {setting.container}:",
        f"  {RATE_LIMIT_VARIABLE}: {current} → {requested}",
        f"For {format_duration(duration)}: then the health monitor reminds the incident channel to run `/meridian ratelimit restore`.",
        f"The change rolls out new pods one by one ({deployment.replicas} replicas).",
    ]
    return Plan(
        summary=f"Raise the API's rate limit of {name} to {requested} for {format_duration(duration)}",
        targets=(lock_target(cluster_or_refuse(ctx)),),
        identity=_identity(deployment, setting),
        preview="\n".join(preview),
    )


async def raise_limit(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    cluster = cluster_or_refuse(ctx)
    deployment, setting = await _raise_state(ctx)
    _ensure_unchanged(ctx, _identity(deployment, setting))
    requested = int(ctx.args["limit"])
    until = datetime.now(UTC) + timedelta(seconds=_increase_seconds(ctx))
    annotations = {PREVIOUS_ANNOTATION: _entry_json(setting, deployment), UNTIL_ANNOTATION: until.strftime("%Y-%m-%dT%H:%M:%SZ")}
    await ctx.progress(f"setting {RATE_LIMIT_VARIABLE} to {requested}")
    patched = await cluster.patch_deployment(
        set_env_patch(deployment, setting, value=str(requested), annotations=annotations), patch_type=PatchType.JSON
    )
    return StepResult(
        summary=f"{RATE_LIMIT_VARIABLE} set to {requested} until {until.strftime('%H:%M UTC')} · generation {patched.generation}",
        data={"generation": patched.generation},
    )


def _ensure_unchanged(ctx: StepContext, identity: Mapping[str, Any]) -> None:
    assert ctx.plan is not None
    if dict(ctx.plan.identity) != dict(identity):
        raise Refused("The deployment changed after the plan was approved, so nothing was changed.", hint="Start a new run to review the current plan.")


async def follow_change(ctx: StepContext) -> StepResult:
    return await follow_rollout(ctx, generation=int(ctx.results["change"]["generation"]))


RATELIMIT_RAISE = Procedure(
    name="ratelimit-raise",
    title="Temporary rate-limit increase",
    summary=f"Raise the API's rate limit ({RATE_LIMIT_VARIABLE}) for a while, for a legitimate traffic spike",
    risk=Risk.HIGH,
    section=SECTION,
    stages=(
        Step("headers", "x-ratelimit headers", tolerant(read_headers), timeout=STEP_TIMEOUT_SECONDS),
        Step("read", "Read the deployment", read_raise, timeout=PATCH_STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_raise),
        Step("change", f"Set {RATE_LIMIT_VARIABLE}", raise_limit, timeout=PATCH_STEP_TIMEOUT_SECONDS),
        Step("rollout", "Follow the rollout", follow_change),
    ),
)


def previous_entry(deployment: Deployment) -> dict[str, Any] | None:
    """Return the env entry the increase replaced (None when the variable was unset).

    Raises Refused when the deployment records no increase or an unreadable one.
    """
    recorded = deployment.annotations.get(PREVIOUS_ANNOTATION)
    if recorded is None:
        raise StepSkipped(f"{deployment.namespace}/{deployment.name} has no temporary rate-limit increase to restore")
    try:
        entry = json.loads(recorded)
    except ValueError as error:
        raise Refused(f"The annotation {PREVIOUS_ANNOTATION} is not valid JSON, so the previous limit is unknown.", hint=f"Set {RATE_LIMIT_VARIABLE} by hand.") from error
    if entry is not None and not (isinstance(entry, dict) and entry.get("name") == RATE_LIMIT_VARIABLE):
        raise Refused(f"The annotation {PREVIOUS_ANNOTATION} does not hold a {RATE_LIMIT_VARIABLE} entry.", hint=f"Set {RATE_LIMIT_VARIABLE} by hand.")
    return entry


def restore_patch(deployment: Deployment, setting: EnvSetting, entry: dict[str, Any] | None) -> list[dict[str, Any]]:
    path = f"/spec/template/spec/containers/{setting.container_index}"
    operations: list[dict[str, Any]] = [{"op": "test", "path": f"{path}/name", "value": setting.container}]
    if setting.env_index is not None:
        env_path = f"{path}/env/{setting.env_index}"
        operations.append({"op": "test", "path": f"{env_path}/name", "value": RATE_LIMIT_VARIABLE})
        operations.append({"op": "remove", "path": env_path} if entry is None else {"op": "replace", "path": env_path, "value": entry})
    elif entry is not None:
        operations.append({"op": "add", "path": f"{path}/env/-", "value": entry})
    return operations + annotations_patch(deployment, remove=[PREVIOUS_ANNOTATION, UNTIL_ANNOTATION])


async def _restore_state(ctx: StepContext) -> tuple[Deployment, EnvSetting, dict[str, Any] | None]:
    cluster = cluster_or_refuse(ctx)
    deployment = await cluster.read_deployment()
    entry = previous_entry(deployment)
    return deployment, read_env(deployment, RATE_LIMIT_VARIABLE), entry


def _entry_text(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "unset"
    return str(entry["value"]) if "value" in entry else "valueFrom " + json.dumps(entry.get("valueFrom"))


async def read_restore(ctx: StepContext) -> StepResult:
    deployment, setting, entry = await _restore_state(ctx)
    current = setting.value if setting.source == "value" else (setting.source or "unset")
    return StepResult(
        summary=f"{RATE_LIMIT_VARIABLE} is {current} (until {deployment.annotations.get(UNTIL_ANNOTATION, '?')}) → {_entry_text(entry)}",
        data={"revision": deployment.revision},
    )


async def plan_restore(ctx: StepContext) -> Plan:
    deployment, setting, entry = await _restore_state(ctx)
    name = f"{deployment.namespace}/{deployment.name}"
    current = setting.value if setting.source == "value" else (setting.source or "unset")
    return Plan(
        summary=f"Restore the API's rate limit of {name}",
        targets=(lock_target(cluster_or_refuse(ctx)),),
        identity=_identity(deployment, setting),
        preview=f"Deployment {name}, container {setting.container}:\n  {RATE_LIMIT_VARIABLE}: {current} → {_entry_text(entry)}\nThe change rolls out new pods one by one.",
    )


async def restore_limit(ctx: StepContext) -> StepResult:
    cluster = cluster_or_refuse(ctx)
    deployment, setting, entry = await _restore_state(ctx)
    _ensure_unchanged(ctx, _identity(deployment, setting))
    await ctx.progress(f"restoring {RATE_LIMIT_VARIABLE}")
    patched = await cluster.patch_deployment(restore_patch(deployment, setting, entry), patch_type=PatchType.JSON)
    return StepResult(summary=f"{RATE_LIMIT_VARIABLE} restored to {_entry_text(entry)} · generation {patched.generation}", data={"generation": patched.generation})


RATELIMIT_RESTORE = Procedure(
    name="ratelimit-restore",
    title="Restore the rate limit",
    summary="End a temporary rate-limit increase: put the previous limit back",
    risk=Risk.HIGH,
    section=SECTION,
    stages=(
        Step("read", "Read the deployment", read_restore, timeout=PATCH_STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_restore),
        Step("change", f"Restore {RATE_LIMIT_VARIABLE}", restore_limit, timeout=PATCH_STEP_TIMEOUT_SECONDS),
        Step("rollout", "Follow the rollout", follow_change),
    ),
)


def increase_expiry(deployment: Deployment) -> datetime | None:
    """When the temporary increase on the deployment ends, or None when there is none (or it is unreadable)."""
    text = deployment.annotations.get(UNTIL_ANNOTATION)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


COMMANDS = (
    Command(words=("ratelimit",), procedure=RATELIMIT, examples=("/meridian ratelimit",)),
    Command(
        words=("ratelimit", "raise"),
        procedure=RATELIMIT_RAISE,
        arguments=(Argument("LIMIT", "count", "the new limit in requests per minute per client"),),
        options=(Option("--for", "duration", "how long the increase lasts, such as 2h (default 1h, at most 24h)", metavar="DURATION"),),
        examples=("/meridian ratelimit raise 200", "/meridian ratelimit raise 300 --for 2h"),
    ),
    Command(words=("ratelimit", "restore"), procedure=RATELIMIT_RESTORE, examples=("/meridian ratelimit restore",)),
)
