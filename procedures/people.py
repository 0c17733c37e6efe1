"""Contact Information: the emergency contact table and paging on-call through PagerDuty.

A page is a PagerDuty Events API v2 trigger whose dedup key names the run, so a repeated
delivery of the same run's page updates one alert instead of opening another. A page that
PagerDuty does not accept fails its step: a failed page is never reported as sent.
"""

from __future__ import annotations

from typing import Any

from bot.clients.pagerduty import Severity
from bot.config import OncallContact
from bot.engine.arguments import Argument, Option
from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult
from bot.errors import Refused, UsageError

SECTION = "Contact Information"
SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning", "info")
PAGE_TIMEOUT_SECONDS = 15.0


def contact_table(contacts: list[OncallContact]) -> str:
    headers = ["Role", "Contact", "Escalation", "Slack"]
    rows = [[c.role, c.contact, c.escalation, c.slack or "-"] for c in contacts]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in [headers, *rows])


def find_contact(ctx: StepContext, role: str) -> OncallContact | None:
    return next((c for c in ctx.settings.oncall_contacts if c.role.lower() == role.lower()), None)


def run_link(ctx: StepContext) -> str:
    """Return the run card's Slack permalink when SLACK_WORKSPACE_URL is set, else where to find it."""
    run = ctx.run
    if ctx.settings.slack_workspace_url and run.message_ts:
        base = ctx.settings.slack_workspace_url.rstrip("/")
        return f"{base}/archives/{run.channel_id}/p{run.message_ts.replace('.', '')}"
    return f"run {run.id}, card in Slack channel {run.channel_id} (message {run.message_ts or 'not posted'})"


def dedup_key(ctx: StepContext, purpose: str) -> str:
    return f"meridian-bot/{ctx.run.id}/{purpose}"


async def send_page(ctx: StepContext, *, purpose: str, summary: str, severity: Severity, details: dict[str, Any] | None = None) -> StepResult:
    """Trigger a PagerDuty alert for this run; raise when PagerDuty is not configured or refuses it."""
    pagerduty = ctx.targets.backups.pagerduty
    if pagerduty is None:
        raise Refused("PagerDuty is not configured, so nobody was paged.", hint="Set PAGERDUTY_ROUTING_KEY, and page by phone meanwhile (`/meridian oncall`).")
    key = dedup_key(ctx, purpose)
    link = run_link(ctx)
    await pagerduty.trigger(
        dedup_key=key,
        summary=summary,
        severity=severity,
        details={"run_id": ctx.run.id, "run_link": link, "requested_by": ctx.run.requester, **(details or {})},
    )
    ctx.log.info("Paged %s through PagerDuty (dedup key %s, severity %s)", purpose, key, severity)
    return StepResult(summary=f"PagerDuty accepted the {severity} page (dedup key {key})", data={"dedup_key": key})


# /meridian oncall


async def show_contacts(ctx: StepContext) -> StepResult:
    contacts = ctx.settings.oncall_contacts
    unset = [c.role for c in contacts if c.contact == "not configured"]
    summary = f"{len(contacts)} contacts"
    if unset:
        summary += f"; not configured: {', '.join(unset)} (set ONCALL_CONTACTS)"
    if ctx.targets.backups.pagerduty is None:
        summary += " · PagerDuty is not configured (PAGERDUTY_ROUTING_KEY)"
    return StepResult(
        summary=summary,
        level=Level.WARNING if unset else Level.OK,
        detail=contact_table(contacts),
        detail_title="Emergency contacts",
        data={"roles": [c.role for c in contacts]},
    )


ONCALL = Procedure(
    name="oncall",
    title="On-call contacts",
    summary="Show the emergency contact table (ONCALL_CONTACTS)",
    risk=Risk.READ,
    section=SECTION,
    stages=(Step("contacts", "Emergency contacts", show_contacts, timeout=5.0),),
)


# /meridian page MESSAGE


async def page_oncall(ctx: StepContext) -> StepResult:
    severity = ctx.args.get("severity") or "critical"
    if severity not in SEVERITIES:
        raise UsageError(f"`{severity}` is not a PagerDuty severity.", hint=f"Use one of {', '.join(SEVERITIES)}.")
    message = str(ctx.args["message"]).strip()
    if not message:
        raise UsageError("The page needs a message.", hint='Usage: `/meridian page "API down since 10:02"`')
    if ctx.run.dry_run:
        return StepResult(summary=f"dry run: would page on-call ({severity}): {message}", level=Level.INFO)
    return await send_page(ctx, purpose="page", summary=message, severity=severity)  # type: ignore[arg-type]


PAGE = Procedure(
    name="page",
    title="Page on-call",
    summary="Page the on-call engineer through PagerDuty with a message and a link to this run",
    risk=Risk.WRITE,
    section=SECTION,
    stages=(Step("page", "Send the PagerDuty trigger", page_oncall, timeout=PAGE_TIMEOUT_SECONDS),),
)

COMMANDS = (
    Command(words=("oncall",), procedure=ONCALL, examples=("/meridian oncall",)),
    Command(
        words=("page",),
        procedure=PAGE,
        arguments=(Argument("MESSAGE", "text", "what is wrong, such as: API down since 10:02", rest=True),),
        options=(Option("--severity", "text", "PagerDuty severity: critical (default), error, warning or info", metavar="LEVEL"),),
        examples=("/meridian page API down since 10:02", "/meridian page --severity warning RPC lagging"),
    ),
)
