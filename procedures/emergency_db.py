"""EMERGENCY: Database Corruption: stop the API, snapshot RDS, start PITR, notify the incident channel.

The API pods stop first (scale to 0) so they write nothing more into a corrupted database.
The snapshot keeps the current state, corrupted or not, for later analysis. Point-in-time
recovery creates a new RDS instance as of the time the user gives. Pointing DATABASE_URL at
it and scaling the API up again stay with people, as separate steps.
"""

from __future__ import annotations

from bot.clients.kubernetes import Deployment
from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.arguments import Argument, Option
from bot.engine.catalog import Command
from bot.engine.context import NotConfigured, StepContext
from bot.engine.procedure import Procedure, Risk, Step, StepResult
from bot.errors import Refused
from bot.slack.mrkdwn import escape
from procedures.deployments import cluster_or_refuse
from procedures.emergency import SECTION
from procedures.rds import check_restore_time, plan_pitr, start_pitr, take_snapshot
from procedures.rollout import follow_rollout, lock_target

STEP_TIMEOUT_SECONDS = 30.0


async def read_deployment(ctx: StepContext) -> StepResult:
    deployment = await cluster_or_refuse(ctx).read_deployment()
    return StepResult(
        summary=f"{deployment.namespace}/{deployment.name}: {deployment.replicas} replicas, {deployment.available_replicas} available",
        data={"replicas": deployment.replicas},
    )


def _identity(deployment: Deployment) -> dict[str, object]:
    return {"deployment_uid": deployment.uid}


async def plan_db_corruption(ctx: StepContext) -> Plan:
    deployment = await cluster_or_refuse(ctx).read_deployment()
    pitr = await plan_pitr(ctx)
    instance = ctx.settings.rds_instance_id
    preview = [
        f"1. Scale {deployment.namespace}/{deployment.name} from {deployment.replicas} to 0 replicas: the Meridian API is DOWN until it is scaled up again.",
        f"2. Take a manual RDS snapshot of {instance} (the current, possibly corrupted state).",
        f"3. {pitr.summary}.",
        *(f"   {line}" for line in pitr.preview.splitlines()),
        "4. Post what was done to the incident channel.",
        f"Afterwards, by hand: point DATABASE_URL at the new instance and `/meridian scale {deployment.replicas}`.",
    ]
    return Plan(
        summary=f"Database corruption: stop the API, snapshot {instance}, {pitr.summary[0].lower()}{pitr.summary[1:]}",
        targets=(lock_target(cluster_or_refuse(ctx)), *pitr.targets),
        identity={**_identity(deployment), **pitr.identity},
        preview="\n".join(preview),
        facts={**pitr.facts, "replicas": deployment.replicas},
    )


async def stop_api(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    cluster = cluster_or_refuse(ctx)
    deployment = await cluster.read_deployment()
    if _identity(deployment) != {"deployment_uid": ctx.plan.identity["deployment_uid"]}:
        raise Refused("The deployment was replaced after the plan was approved, so nothing was changed.", hint="Start a new run.")
    await ctx.progress("scaling to 0 replicas")
    await cluster.scale_deployment(0)
    generation = (await cluster.read_deployment()).generation
    followed = await follow_rollout(ctx, generation=generation, wait_for_pods=True)
    return StepResult(summary=f"scaled to 0: no API pod runs ({followed.summary})")


async def notify(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    incident = ctx.targets.backups.incident
    if incident is None:
        raise NotConfigured("not configured (set INCIDENT_CHANNEL)")
    snapshot = ctx.results.get("snapshot", {}).get("snapshot", "?")
    target = ctx.plan.facts["target"]
    when = ctx.plan.facts["restore_time"] or "the latest restorable time"
    replicas = ctx.plan.facts["replicas"]
    text = (
        f"Database corruption response (run {ctx.run.id}): the Meridian API is stopped (0 replicas, was {replicas}); "
        f"snapshot {snapshot} taken; point-in-time recovery to {when} started as RDS instance {target}. "
        f"Next: point DATABASE_URL at {target} once it is available, then `/meridian scale {replicas}`."
    )
    await incident.post(escape(text))
    return StepResult(summary=f"posted to the incident channel {ctx.settings.incident_channel}")


DB_CORRUPTION = Procedure(
    name="emergency-db-corruption",
    title="EMERGENCY: Database corruption",
    summary="Stop the API (scale to 0), snapshot RDS, start point-in-time recovery to TIME and notify the incident channel",
    risk=Risk.CRITICAL,
    section=SECTION,
    stages=(
        Step("deployment", "Read the deployment", read_deployment, timeout=STEP_TIMEOUT_SECONDS),
        Step("window", "Check the restore time", check_restore_time, timeout=STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_db_corruption, title="Approval of the corruption response"),
        Step("stop", "Stop the API pods (scale to 0)", stop_api),
        Step("snapshot", "Take an RDS snapshot", take_snapshot),
        Step("pitr", "Start point-in-time recovery", start_pitr, timeout=STEP_TIMEOUT_SECONDS),
        Step("notify", "Notify the incident channel", notify, timeout=STEP_TIMEOUT_SECONDS),
    ),
)

COMMANDS = (
    Command(
        words=("emergency", "db-corruption"),
        procedure=DB_CORRUPTION,
        arguments=(Argument("TIME", "time", "the last known good time: ISO 8601 UTC (2026-12-04T12:00:00Z), relative (-2h) or `latest`"),),
        options=(Option("--target-instance", "text", "name of the new RDS instance (default: SOURCE-pitr-YYYYMMDDHHMM)", metavar="ID"),),
        examples=("/meridian emergency db-corruption 2026-12-04T11:45:00Z", "/meridian emergency db-corruption -30m"),
    ),
)
