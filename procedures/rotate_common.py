"""Steps that every secret rotation shares: generating a value, the API's Secret, the restart
that picks the new value up, and the watch for authentication errors afterwards.

A generated value is registered with the redaction filter before anything else sees it, and
it is never put in a step result, a plan, the run's stored data or an exception. Steps keep
only its length and the time it was written.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.clients.kubernetes import Deployment, Kubernetes, PatchType
from bot.clients.kubernetes.client import LogsUnavailable
from bot.clients.kubernetes.rollout import restart_patch
from bot.clients.kubernetes.secrets import Secret
from bot.engine.context import StepContext
from bot.engine.procedure import Level, StepResult
from bot.errors import BotError, Refused
from bot.observability.redaction import redactor
from procedures.deployments import cluster_or_refuse
from procedures.rollout import follow_rollout, lock_target

SECTION = "Secret Rotation"
STEP_TIMEOUT_SECONDS = 30.0
# At most this many sample lines of authentication errors go into the watch's thread reply.
SAMPLE_LINES = 10
# Matches the API's log lines for rejected credentials and failed database logins.
AUTH_ERROR = re.compile(
    r"401|unauthori[sz]ed|authentication failed|invalid (?:jwt|token|api key|signature)|session token not found",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ValueFormat:
    """How a new value is generated: `random_bytes` from the OS's CSPRNG, written as `encoding`."""

    random_bytes: int
    encoding: str  # "hex" or "base64url"

    @property
    def length(self) -> int:
        """The number of characters of a generated value."""
        if self.encoding == "hex":
            return 2 * self.random_bytes
        return math.ceil(self.random_bytes * 4 / 3)

    def describe(self) -> str:
        return f"{self.length} {self.encoding} characters from {self.random_bytes} random bytes ({self.random_bytes * 8} bits)"


# 32 random bytes each. The runbook's `openssl rand -hex 16` yields only 16 bytes, below the
# 32 bytes the API's own documentation asks for its salts.
HEX_32 = ValueFormat(random_bytes=32, encoding="hex")
BASE64URL_32 = ValueFormat(random_bytes=32, encoding="base64url")


def generate_value(value_format: ValueFormat) -> str:
    """Generate a new secret value with `secrets` and register it with the redaction filter."""
    if value_format.encoding == "hex":
        value = secrets.token_hex(value_format.random_bytes)
    else:
        value = secrets.token_urlsafe(value_format.random_bytes)
    redactor.register(value)
    return value


def secret_lock(ctx: StepContext) -> str:
    cluster = cluster_or_refuse(ctx)
    return f"secret:{cluster.namespace}/{ctx.settings.kube_secret_name}"


def rotation_locks(ctx: StepContext) -> tuple[str, ...]:
    return (lock_target(cluster_or_refuse(ctx)), secret_lock(ctx))


async def read_api_secret(ctx: StepContext) -> Secret:
    return await cluster_or_refuse(ctx).read_secret(ctx.settings.kube_secret_name)


def require_keys(secret: Secret, keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if key not in secret.values]
    if missing:
        raise Refused(
            f"Secret {secret.namespace}/{secret.name} has no {', '.join(missing)}, so the bot cannot tell that the API reads it there.",
            hint="Check KUBE_SECRET_NAME, or add the key to the Secret by hand first.",
        )


def secret_identity(secret: Secret, deployment: Deployment) -> dict[str, object]:
    """What a rotation acts on; the Secret's resourceVersion is left out because values change it."""
    return {"secret_uid": secret.uid, "secret_keys": list(secret.keys), "deployment_uid": deployment.uid}


def ensure_same_objects(ctx: StepContext, secret: Secret, deployment: Deployment) -> None:
    """Refuse when the Secret or the deployment is no longer the one the approvers saw."""
    assert ctx.plan is not None
    current = secret_identity(secret, deployment)
    approved = {key: ctx.plan.identity.get(key) for key in current}
    if current != approved:
        changed = sorted(key for key in current if current[key] != approved[key])
        raise Refused(
            f"The Secret or the deployment changed after the plan was approved ({', '.join(changed)}), so nothing was changed.",
            hint="Start a new run to review the current plan.",
        )


async def write_values(
    ctx: StepContext,
    *,
    formats: dict[str, ValueFormat],
    annotations: dict[str, str | None] | None = None,
) -> StepResult:
    """Generate a value per key and write them in one patch, guarded by the Secret's resourceVersion."""
    cluster = cluster_or_refuse(ctx)
    secret = await read_api_secret(ctx)
    deployment = await cluster.read_deployment()
    ensure_same_objects(ctx, secret, deployment)

    values = {key: generate_value(value_format) for key, value_format in formats.items()}
    await ctx.progress(f"writing new {', '.join(values)} into {secret.name}")
    await cluster.patch_secret(secret.name, values=values, resource_version=secret.resource_version, annotations=annotations)
    described = "; ".join(f"{key}: {value_format.describe()}" for key, value_format in formats.items())
    return StepResult(
        summary=f"wrote new {', '.join(values)} into {secret.namespace}/{secret.name} ({described})",
        data={"keys": list(values), "written_at": time.time()},
    )


async def restart_deployment(ctx: StepContext) -> StepResult:
    """Patch restartedAt into the pod template, as `kubectl rollout restart` does, so pods re-read the Secret."""
    cluster = cluster_or_refuse(ctx)
    await ctx.progress("patching the restartedAt annotation into the pod template")
    patched = await cluster.patch_deployment(restart_patch(datetime.now(UTC)), patch_type=PatchType.STRATEGIC_MERGE)
    return StepResult(summary=f"restart requested (generation {patched.generation})", data={"generation": patched.generation})


async def follow_restart(ctx: StepContext) -> StepResult:
    return await follow_rollout(ctx, generation=int(ctx.results["restart"]["generation"]))


async def _auth_errors(cluster: Kubernetes, *, since_seconds: int) -> tuple[list[str], int]:
    """Return the authentication error lines of every pod since then, and how many pods were read."""
    deployment = await cluster.read_deployment()
    pods = await cluster.list_pods(deployment)
    found: list[str] = []
    read = 0
    for pod in pods:
        try:
            text = await cluster.read_log(pod.name, container=None, tail_lines=None, since_seconds=since_seconds)
        except LogsUnavailable:
            continue
        read += 1
        found.extend(f"{pod.name}: {line}" for line in text.splitlines() if AUTH_ERROR.search(line))
    return found, read


async def watch_after_rotation(ctx: StepContext, *, written_step: str = "write") -> StepResult:
    """Check /health during ROTATION_WATCH, then count authentication errors in the logs since the write."""
    cluster = cluster_or_refuse(ctx)
    api = ctx.targets.meridian_api
    watch_seconds = ctx.settings.rotation_watch.total_seconds()
    interval = max(min(15.0, watch_seconds / 4), 0.01)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + watch_seconds

    checks = 0
    unhealthy: list[str] = []
    while True:
        if api is not None:
            checks += 1
            try:
                health = await api.health()
                if not health.is_healthy:
                    unhealthy.append(f"{health.status}: {health.error or 'no error given'}")
            except BotError as error:
                unhealthy.append(error.message)
            await ctx.progress(f"/health checked {checks} times, {len(unhealthy)} not ok")
        if loop.time() >= deadline:
            break
        await asyncio.sleep(min(interval, max(deadline - loop.time(), 0.0)))

    written_at = float(ctx.results[written_step]["written_at"])
    since_seconds = max(1, math.ceil(time.time() - written_at) + 1)
    errors, pods_read = await _auth_errors(cluster, since_seconds=since_seconds)

    health_text = f"/health not ok in {len(unhealthy)} of {checks} checks" if api is not None else "/health not checked (MERIDIAN_API_URL is not set)"
    if not unhealthy and api is not None:
        health_text = f"/health ok in {checks} of {checks} checks"
    summary = f"{len(errors)} authentication errors in the logs of {pods_read} pods since the rotation · {health_text}"
    level = Level.CRITICAL if unhealthy else (Level.WARNING if errors else Level.OK)

    detail_lines = []
    if errors:
        detail_lines.append(f"Authentication errors since the rotation ({len(errors)}, the first {min(len(errors), SAMPLE_LINES)}):")
        detail_lines.extend(errors[:SAMPLE_LINES])
        detail_lines.append("Clients that still hold credentials made with the old value get these until they sign in again.")
    if unhealthy:
        detail_lines.append("/health answers that were not ok:")
        detail_lines.extend(unhealthy[:SAMPLE_LINES])
    return StepResult(
        summary=summary,
        level=level,
        detail="\n".join(detail_lines) or None,
        detail_title="After the rotation",
        data={"auth_errors": len(errors), "unhealthy_checks": len(unhealthy), "health_checks": checks},
    )
