"""Deployments that change the service: rollback, rolling restart and scaling.

Each procedure reads the deployment, requests approval of an exact plan, checks right before
it acts that the deployment is still the one approved, sends the patch kubectl would send,
and follows the rollout in the run card until it is complete, failed or timed out.

Scaling to zero stops the API, so it is a separate critical procedure: the command catalog
matches the longest command words first, so `/meridian scale 0` starts `scale-to-zero`
(two approvers) and `/meridian scale N` accepts only N of 1 or more (one approver).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from bot.clients.kubernetes import Deployment, Kubernetes, PatchType, ReplicaSet
from bot.clients.kubernetes.rollout import (
    RolloutState,
    image_changes,
    restart_patch,
    rollback_patch,
    rollout_status,
    select_rollback_target,
    templates_equal,
)
from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.arguments import Argument, Option
from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult
from bot.errors import Refused, TargetRejected, TargetTimeout
from procedures.deployments import SECTION, cluster_or_refuse, images_text

# A replica count above this is far more likely a typo than an incident response; scale in steps.
MAX_REPLICAS = 100

PATCH_STEP_TIMEOUT_SECONDS = 30.0


def lock_target(cluster: Kubernetes) -> str:
    return f"deployment:{cluster.namespace}/{cluster.deployment_name}"


def _refuse_paused(deployment: Deployment, action: str) -> None:
    if deployment.paused:
        raise Refused(
            f"{deployment.namespace}/{deployment.name} is paused, so it cannot be {action}.",
            hint=f"Resume it first (`kubectl rollout resume deployment/{deployment.name} -n {deployment.namespace}`), then ask again.",
        )


def _ensure_plan_holds(ctx: StepContext, identity: dict[str, Any]) -> None:
    """Compare what the run acts on now with what was approved, right before acting."""
    assert ctx.plan is not None
    if dict(ctx.plan.identity) != identity:
        changed = sorted(key for key in identity if identity.get(key) != ctx.plan.identity.get(key))
        raise Refused(
            f"The deployment changed after the plan was approved ({', '.join(changed)}), so nothing was changed.",
            hint="Start a new run to review the current plan.",
        )


async def follow_rollout(ctx: StepContext, *, generation: int, wait_for_pods: bool = False) -> StepResult:
    """Poll the deployment until its rollout of `generation` is complete, failed or timed out.

    With `wait_for_pods`, completion also needs exactly spec.replicas pods, all available, so a
    scale-down is complete only once the surplus pods are gone.
    """
    cluster = cluster_or_refuse(ctx)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cluster.rollout_timeout
    # NOTE: when someone else changes the deployment meanwhile, the newer generation also counts
    # as observed, so the run reports that rollout's outcome instead of stopping with a warning.
    while True:
        deployment = await cluster.read_deployment()
        status = rollout_status(deployment)
        observed = deployment.observed_generation >= generation
        pods_settled = deployment.status_replicas == deployment.replicas and deployment.available_replicas >= deployment.replicas
        rollout_is_complete = observed and status.state is RolloutState.COMPLETE and (pods_settled or not wait_for_pods)
        rollout_has_failed = observed and status.state is RolloutState.FAILED

        if rollout_is_complete:
            return StepResult(
                summary=f"complete · revision {deployment.revision or '?'} · {status.progress}",
                data={"revision": deployment.revision, "replicas": deployment.replicas},
            )
        if rollout_has_failed:
            raise TargetRejected(
                "kubernetes",
                f"The rollout failed: {status.message} Now: {status.progress}.",
                hint="`/meridian pods` shows why the new pods are not ready; `/meridian rollback` returns to the previous revision.",
            )
        await ctx.progress(status.progress)
        if loop.time() >= deadline:
            raise TargetTimeout(
                "kubernetes",
                f"The rollout did not complete within {cluster.rollout_timeout:g} s; it may still be going on. Last reading: {status.progress}.",
                hint="Check it with `/meridian rollout status`.",
            )
        await asyncio.sleep(cluster.poll_interval)


# /meridian rollback [--to-revision N]


async def _rollback_state(ctx: StepContext) -> tuple[Deployment, ReplicaSet, list[ReplicaSet]]:
    cluster = cluster_or_refuse(ctx)
    deployment = await cluster.read_deployment()
    replicasets = await cluster.list_replicasets(deployment)
    _refuse_paused(deployment, "rolled back")
    target = select_rollback_target(deployment, replicasets, ctx.args.get("to_revision"))
    return deployment, target, replicasets


def _rollback_identity(deployment: Deployment, target: ReplicaSet) -> dict[str, Any]:
    return {
        "deployment_uid": deployment.uid,
        "current_revision": deployment.revision,
        "target_replicaset_uid": target.uid,
        "target_images": [list(pair) for pair in target.images],
    }


async def read_rollback(ctx: StepContext) -> StepResult:
    deployment, target, _ = await _rollback_state(ctx)
    if templates_equal(target.template, deployment.template):
        raise Refused(
            f"{deployment.namespace}/{deployment.name} already runs the template of revision {target.revision}, so there is nothing to roll back.",
            hint="`/meridian rollout history` lists the other revisions.",
        )
    changes = image_changes(deployment.images, target.images)
    return StepResult(
        summary=f"revision {deployment.revision} → {target.revision} · " + ("; ".join(changes) or "images unchanged"),
        data={"current_revision": deployment.revision, "target_revision": target.revision},
    )


async def plan_rollback(ctx: StepContext) -> Plan:
    deployment, target, _ = await _rollback_state(ctx)
    changes = image_changes(deployment.images, target.images)
    preview = [
        f"Deployment {deployment.namespace}/{deployment.name}: revision {deployment.revision} → revision {target.revision} (ReplicaSet {target.name})",
        "Images that change:" if changes else "No image changes; the pod templates differ in other fields.",
        *(f"  {line}" for line in changes),
        f"Replicas: {deployment.replicas}; pods are replaced by a rolling update.",
        f"Change cause of revision {target.revision}: {target.change_cause or '<none>'}",
    ]
    return Plan(
        summary=f"Roll back {deployment.namespace}/{deployment.name} from revision {deployment.revision} to {target.revision}",
        targets=(lock_target(cluster_or_refuse(ctx)),),
        identity=_rollback_identity(deployment, target),
        preview="\n".join(preview),
        facts={"target_revision": target.revision, "target_replicaset_uid": target.uid},
    )


async def roll_back(ctx: StepContext) -> StepResult:
    cluster = cluster_or_refuse(ctx)
    deployment, target, _ = await _rollback_state(ctx)
    _ensure_plan_holds(ctx, _rollback_identity(deployment, target))
    if templates_equal(target.template, deployment.template):
        return StepResult(
            summary=f"skipped: the deployment already runs the template of revision {target.revision}; nothing was patched",
            level=Level.INFO,
            data={"generation": deployment.generation},
        )

    await ctx.progress(f"patching the template of revision {target.revision} into the deployment")
    patched = await cluster.patch_deployment(rollback_patch(deployment, target), patch_type=PatchType.JSON)
    return StepResult(
        summary=f"patched the template of revision {target.revision} (generation {patched.generation})",
        data={"generation": patched.generation},
    )


async def follow_patched_rollout(ctx: StepContext) -> StepResult:
    patch_step = next(name for name in ("rollback", "restart") if name in ctx.results)
    return await follow_rollout(ctx, generation=int(ctx.results[patch_step]["generation"]))


ROLLBACK = Procedure(
    name="rollback",
    title="Rollback",
    summary="Roll the deployment back to its previous revision (or --to-revision N), as kubectl rollout undo does",
    risk=Risk.HIGH,
    section=SECTION,
    stages=(
        Step("read", "Read the deployment and its revisions", read_rollback, timeout=PATCH_STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_rollback),
        Step("rollback", "Patch the deployment", roll_back, timeout=PATCH_STEP_TIMEOUT_SECONDS),
        Step("rollout", "Follow the rollout", follow_patched_rollout),
    ),
)


# /meridian restart


async def _restart_state(ctx: StepContext) -> tuple[Deployment, dict[str, Any]]:
    cluster = cluster_or_refuse(ctx)
    deployment = await cluster.read_deployment()
    _refuse_paused(deployment, "restarted")
    replicasets = await cluster.list_replicasets(deployment)
    current = next((rs for rs in replicasets if templates_equal(rs.template, deployment.template)), None)
    identity = {
        "deployment_uid": deployment.uid,
        "revision": deployment.revision,
        "replicaset_uid": current.uid if current else None,
        "images": [list(pair) for pair in deployment.images],
    }
    return deployment, identity


async def read_restart(ctx: StepContext) -> StepResult:
    deployment, _ = await _restart_state(ctx)
    return StepResult(
        summary=f"revision {deployment.revision} · {deployment.replicas} replicas · {images_text(deployment.images)}",
        data={"revision": deployment.revision},
    )


async def plan_restart(ctx: StepContext) -> Plan:
    deployment, identity = await _restart_state(ctx)
    preview = [
        f"Rolling restart of {deployment.namespace}/{deployment.name} (revision {deployment.revision}):",
        f"its {deployment.replicas} pods are replaced by a rolling update, with the same images ({images_text(deployment.images)}).",
        "The restart adds a new revision whose pod template differs only in the kubectl.kubernetes.io/restartedAt annotation.",
    ]
    return Plan(
        summary=f"Restart the pods of {deployment.namespace}/{deployment.name}",
        targets=(lock_target(cluster_or_refuse(ctx)),),
        identity=identity,
        preview="\n".join(preview),
    )


async def restart(ctx: StepContext) -> StepResult:
    cluster = cluster_or_refuse(ctx)
    _, identity = await _restart_state(ctx)
    _ensure_plan_holds(ctx, identity)
    await ctx.progress("patching the restartedAt annotation into the pod template")
    patched = await cluster.patch_deployment(restart_patch(datetime.now(UTC)), patch_type=PatchType.STRATEGIC_MERGE)
    return StepResult(summary=f"restart requested (generation {patched.generation})", data={"generation": patched.generation})


RESTART = Procedure(
    name="restart",
    title="Rolling restart",
    summary="Replace every pod of the deployment one by one, as kubectl rollout restart does",
    risk=Risk.HIGH,
    section=SECTION,
    stages=(
        Step("read", "Read the deployment", read_restart, timeout=PATCH_STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_restart),
        Step("restart", "Patch the pod template", restart, timeout=PATCH_STEP_TIMEOUT_SECONDS),
        Step("rollout", "Follow the rollout", follow_patched_rollout),
    ),
)


# /meridian scale N and /meridian scale 0


def _requested_replicas(ctx: StepContext) -> int:
    return int(ctx.args.get("n", 0))


async def _scale_state(ctx: StepContext) -> tuple[Deployment, dict[str, Any]]:
    cluster = cluster_or_refuse(ctx)
    deployment = await cluster.read_deployment()
    return deployment, {"deployment_uid": deployment.uid, "replicas": deployment.replicas}


async def read_scale(ctx: StepContext) -> StepResult:
    deployment, _ = await _scale_state(ctx)
    wanted = _requested_replicas(ctx)
    if deployment.replicas == wanted:
        raise Refused(f"{deployment.namespace}/{deployment.name} already has {wanted} replicas; nothing to change.")
    return StepResult(
        summary=f"{deployment.replicas} replicas → {wanted} · {deployment.available_replicas} available now",
        data={"replicas": deployment.replicas},
    )


async def plan_scale(ctx: StepContext) -> Plan:
    deployment, identity = await _scale_state(ctx)
    wanted = _requested_replicas(ctx)
    name = f"{deployment.namespace}/{deployment.name}"
    if wanted == 0:
        effect = "Every pod stops: the Meridian API is down until the deployment is scaled up again."
    elif wanted > deployment.replicas:
        effect = f"{wanted - deployment.replicas} pods start; the template and the revision stay as they are."
    else:
        effect = f"{deployment.replicas - wanted} pods stop; the template and the revision stay as they are."
    return Plan(
        summary=f"Scale {name} from {deployment.replicas} to {wanted} replicas",
        targets=(lock_target(cluster_or_refuse(ctx)),),
        identity=identity,
        preview=f"Replicas of {name}: {deployment.replicas} → {wanted} (scale subresource)\n{effect}",
    )


async def scale(ctx: StepContext) -> StepResult:
    cluster = cluster_or_refuse(ctx)
    _, identity = await _scale_state(ctx)
    _ensure_plan_holds(ctx, identity)
    wanted = _requested_replicas(ctx)
    await ctx.progress(f"setting spec.replicas to {wanted}")
    await cluster.scale_deployment(wanted)
    # The scale subresource does not return the deployment's generation, so it is read back.
    deployment = await cluster.read_deployment()
    return StepResult(summary=f"spec.replicas set to {wanted}", data={"generation": deployment.generation})


async def follow_scale(ctx: StepContext) -> StepResult:
    return await follow_rollout(ctx, generation=int(ctx.results["scale"]["generation"]), wait_for_pods=True)


def _scale_procedure(name: str, title: str, summary: str, risk: Risk) -> Procedure:
    return Procedure(
        name=name,
        title=title,
        summary=summary,
        risk=risk,
        section=SECTION,
        stages=(
            Step("read", "Read the deployment", read_scale, timeout=PATCH_STEP_TIMEOUT_SECONDS),
            ApprovalGate(plan=plan_scale),
            Step("scale", "Set the replica count", scale, timeout=PATCH_STEP_TIMEOUT_SECONDS),
            Step("rollout", "Wait until the replicas are ready", follow_scale),
        ),
    )


SCALE = _scale_procedure("scale", "Scale", "Set the number of API pods (1 or more)", Risk.HIGH)
SCALE_TO_ZERO = _scale_procedure(
    "scale-to-zero", "Scale to zero", "Stop every API pod by scaling the deployment to 0 replicas", Risk.CRITICAL
)

COMMANDS = (
    Command(
        words=("rollback",),
        procedure=ROLLBACK,
        options=(Option("--to-revision", "count", "revision to roll back to (default: the previous one)", metavar="N"),),
        examples=("/meridian rollback", "/meridian rollback --to-revision 5"),
    ),
    Command(words=("restart",), procedure=RESTART, examples=("/meridian restart",)),
    Command(
        words=("scale",),
        procedure=SCALE,
        arguments=(
            Argument(
                "N",
                "count",
                f"the number of replicas, 1 to {MAX_REPLICAS} (`/meridian scale 0` scales to zero)",
                maximum=MAX_REPLICAS,
            ),
        ),
        examples=("/meridian scale 5",),
    ),
    Command(words=("scale", "0"), procedure=SCALE_TO_ZERO, examples=("/meridian scale 0",)),
)
