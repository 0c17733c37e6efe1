"""The findings of each investigation: what the evidence steps found, which resolution it points
to, and the buttons that start that resolution as a new approval-gated run."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.clients.log_analysis import HALF_OPEN, OPEN, RECOVERY_TIMEOUT_SECONDS
from bot.engine.context import StepContext
from bot.engine.procedure import Level, StepResult
from procedures.investigate_common import RESOLUTIONS_KEY, Resolution, unavailable
from procedures.ratelimit import ATTACK_SHARE

# At most this many kill buttons, one per session, longest first.
MAX_KILL_OFFERS = 3
# An active query running this long is worth cancelling in a pool exhaustion.
LONG_QUERY_SECONDS = 30.0
POOL_EXHAUSTED_ERROR = "database connection failed"

Results = Mapping[str, Mapping[str, Any]]


@dataclass
class Findings:
    """An investigation's conclusion: one line per finding, and the resolutions it offers."""

    lines: list[tuple[Level, str]] = field(default_factory=list)
    resolutions: list[Resolution] = field(default_factory=list)
    conclusion: str = ""

    def add(self, level: Level, text: str) -> None:
        self.lines.append((level, text))

    def offer(self, resolution: Resolution) -> None:
        if all(existing.command != resolution.command for existing in self.resolutions):
            self.resolutions.append(resolution)

    def result(self, *, not_run: list[str]) -> StepResult:
        levels = [level for level, _ in self.lines]
        level = Level.OK
        if Level.CRITICAL in levels:
            level = Level.CRITICAL
        elif Level.WARNING in levels:
            level = Level.WARNING
        detail = [f"- {text}" for _, text in self.lines]
        if not_run:
            detail.append("Not checked: " + "; ".join(not_run))
        if self.resolutions:
            detail.append("")
            detail += [f"Resolution: /meridian {r.command} ({r.label}): {r.reason}" for r in self.resolutions]
        summary = self.conclusion
        if self.resolutions:
            summary += " → " + ", ".join(f"`{r.command}`" for r in self.resolutions)
        return StepResult(
            summary=summary,
            level=level,
            detail="\n".join(detail),
            detail_title="Findings",
            data={RESOLUTIONS_KEY: [r.to_json() for r in self.resolutions], "findings": [text for _, text in self.lines]},
        )


def not_run(ctx: StepContext, steps: tuple[str, ...]) -> list[str]:
    """List the evidence steps that were skipped (not configured) or could not reach their target."""
    missing = []
    for name in steps:
        data = ctx.results.get(name)
        if data is None:
            missing.append(f"{name}: not configured")
        elif unavailable(data):
            missing.append(f"{name}: {unavailable(data)}")
    return missing


RESTART = Resolution("restart", "Rolling restart", "replaces every pod, which clears the pool's connections and resets circuit breakers")
ROLLBACK = Resolution("rollback", "Roll back", "the failing revision was deployed recently; go back to the previous one")


def _health_failed(results: Results) -> bool:
    health = results.get("health", {})
    return health.get("reachable") is False or health.get("healthy") is False


def _pool_exhausted(results: Results) -> bool:
    logs = results.get("logs", {})
    health = results.get("health", {})
    metrics = results.get("metrics", {})
    return (
        bool(logs.get("pool_exhausted"))
        or POOL_EXHAUSTED_ERROR in str(health.get("error") or "")
        or (metrics.get("pool_use_percent") is not None and metrics["pool_use_percent"] >= 100)
    )


def _open_breakers(results: Results) -> list[str]:
    breakers = results.get("logs", {}).get("breakers") or {}
    return [f"{name} {state}" for name, state in breakers.items() if state in (OPEN, HALF_OPEN)]


def _scale_up(replicas: int) -> Resolution:
    replicas_after = max(replicas + 1, math.ceil(replicas * 1.5))
    return Resolution(f"scale {replicas_after}", f"Scale to {replicas_after}", "spreads the memory pressure over more pods (or raise the memory limit)")


# INC-001


async def api_unresponsive_findings(ctx: StepContext) -> StepResult:
    results = ctx.results
    found = Findings()
    pods = results.get("pods", {})
    logs = results.get("logs", {})
    deployments = results.get("deployments", {})

    if results.get("health", {}).get("reachable") is False:
        found.add(Level.CRITICAL, f"/health does not answer: {results['health'].get('error')}")
    elif _health_failed(results):
        found.add(Level.CRITICAL, f"/health reports {results['health'].get('status')}: {results['health'].get('error')}")
    if pods.get("problems"):
        found.add(Level.CRITICAL if not pods.get("ready") else Level.WARNING, f"{pods.get('ready')} of {pods.get('pods')} pods ready: " + ", ".join(f"{k} ×{v}" for k, v in pods["problems"].items()))

    if _pool_exhausted(results):
        found.add(Level.CRITICAL, f'the database pool is exhausted ({logs.get("pool_exhausted", 0)} "pool exhausted" lines in the logs)')
        found.conclusion = "Database pool exhausted: restart the pods to clear its connections"
        found.offer(RESTART)
    if pods.get("oom_killed"):
        found.add(Level.CRITICAL, "pods were OOMKilled: memory pressure")
        found.conclusion = found.conclusion or "Memory pressure: scale up the pods or raise the memory limit"
        found.offer(_scale_up(int(pods.get("replicas") or 1)))
    if deployments.get("recent") and (pods.get("crash_looping") or pods.get("oom_killed") or _health_failed(results)):
        found.add(Level.WARNING, f"revision {deployments.get('revision')} was deployed recently and the API fails since")
        found.offer(ROLLBACK)
    breakers = _open_breakers(results)
    if breakers:
        found.add(Level.WARNING, f"circuit breakers not closed: {', '.join(breakers)}: an external dependency fails (`/meridian investigate oracle-rpc`)")
        found.conclusion = found.conclusion or "An external dependency fails: check the circuit breakers and the oracle RPC"
    if not found.conclusion:
        found.conclusion = "No known cause in the evidence" if found.lines else "The API looks healthy: no sign of INC-001"
    return found.result(not_run=not_run(ctx, ("pods", "deployments", "logs", "health")))


# INC-002


async def db_pool_findings(ctx: StepContext) -> StepResult:
    results = ctx.results
    found = Findings()
    connections = results.get("connections", {})
    queries = results.get("queries", {}).get("queries") or []
    metrics = results.get("metrics", {})

    if metrics.get("pool_use_percent") is not None:
        found.add(Level.CRITICAL if metrics["pool_use_percent"] >= 100 else Level.OK, f"API pool: {metrics.get('pool_idle'):.0f} of {metrics.get('pool_size'):.0f} connections idle ({metrics['pool_use_percent']:.0f}% in use)")
    if connections.get("usage") is not None and connections["usage"] >= 0.9:
        found.add(Level.CRITICAL, f"PostgreSQL is at {connections['usage']:.0%} of max_connections ({connections.get('total')} of {connections.get('max_connections')})")

    stuck = [s for s in connections.get("idle_in_transaction") or [] if s.get("can_signal") and not s.get("own")]
    for session in stuck[:MAX_KILL_OFFERS]:
        found.offer(Resolution(
            f"db kill {session['pid']} --terminate",
            f"Terminate {session['pid']}",
            f"idle in transaction for {session['seconds']:.0f} s, holding a connection and its locks",
        ))
    if stuck:
        found.add(Level.CRITICAL, f"{len(stuck)} sessions idle in transaction, the longest {stuck[0]['seconds']:.0f} s (pid {stuck[0]['pid']})")

    long_running = [q for q in queries if q.get("state") == "active" and q.get("seconds", 0) >= LONG_QUERY_SECONDS and q.get("can_signal")]
    for query in long_running[: max(0, MAX_KILL_OFFERS - len(stuck[:MAX_KILL_OFFERS]))]:
        found.offer(Resolution(f"db kill {query['pid']}", f"Cancel {query['pid']}", f"its query has run for {query['seconds']:.0f} s: {query['query']}"))
    if long_running:
        found.add(Level.WARNING, f"{len(long_running)} queries running over {LONG_QUERY_SECONDS:g} s, the longest pid {long_running[0]['pid']}")

    if _pool_exhausted(results):
        found.add(Level.CRITICAL, f'the API reports pool exhaustion ({results.get("logs", {}).get("pool_exhausted", 0)} "pool exhausted" lines, /health: {results.get("health", {}).get("error") or "ok"})')
        found.offer(RESTART)
    if stuck or long_running:
        found.conclusion = "Sessions hold the pool: end them, then restart the API pods if it does not recover"
    elif _pool_exhausted(results):
        found.conclusion = "Pool exhausted without a blocking session: rolling restart; if it persists, increase the pool size"
    else:
        found.conclusion = "No sign of pool exhaustion"
    return found.result(not_run=not_run(ctx, ("health", "metrics", "connections", "queries", "logs")))


# INC-003


async def oracle_rpc_findings(ctx: StepContext) -> StepResult:
    results = ctx.results
    found = Findings()
    primary = results.get("primary")
    backup = results.get("backup")
    primary_failing = primary is not None and (primary.get("reachable") is False or primary.get("stale"))
    backup_healthy = backup is not None and backup.get("reachable") and not backup.get("stale")

    if primary is not None and primary.get("reachable") is False:
        found.add(Level.CRITICAL, f"the primary RPC does not answer: {primary.get('error')}")
    elif primary is not None and primary.get("stale"):
        found.add(Level.CRITICAL, f"the primary RPC is stale: its newest block is {primary.get('age_seconds', 0):.0f} s old")
    if backup is not None and not backup_healthy:
        found.add(Level.CRITICAL, "the backup RPC is " + ("stale" if backup.get("stale") else f"down: {backup.get('error')}"))
    breakers = _open_breakers(results)
    if breakers:
        found.add(Level.WARNING, f"circuit breakers not closed: {', '.join(breakers)}")
    if results.get("health", {}).get("oracle_enabled") is False:
        found.add(Level.WARNING, "the API reports the oracle disabled")

    if primary_failing and primary.get("rate_limited"):
        found.conclusion = "The RPC provider rate limits the API: reduce the request rate and contact the provider"
        if backup_healthy:
            found.offer(Resolution("rpc switch-to-backup", "Switch to the backup RPC", "the provider rate limits the primary; the backup answers and is current"))
    elif primary_failing and backup_healthy:
        found.conclusion = "RPC provider issue: switch to the backup endpoint"
        found.offer(Resolution("rpc switch-to-backup", "Switch to the backup RPC", "the primary is down or stale; the backup answers and is current"))
    elif primary_failing:
        found.conclusion = "Both RPC endpoints fail: contact the providers; a switch would not help"
    elif breakers:
        found.conclusion = f"The RPC answers again: a network issue; the breakers recover by themselves after {RECOVERY_TIMEOUT_SECONDS} s"
    else:
        found.conclusion = "The oracle RPC looks healthy: no sign of INC-003"
    return found.result(not_run=not_run(ctx, ("primary", "backup", "logs", "health")))


# INC-004


async def rate_limit_findings(ctx: StepContext) -> StepResult:
    results = ctx.results
    found = Findings()
    headers = results.get("headers", {})
    logs = results.get("rejections", {})
    rejected = int(logs.get("rejected") or 0)
    top_clients = logs.get("top_clients") or []
    is_limited = bool(headers.get("rate_limited")) or rejected > 0

    if headers.get("rate_limited"):
        found.add(Level.CRITICAL, f"the API answers HTTP {headers.get('http_status')} with x-ratelimit-remaining {headers.get('remaining')} of {headers.get('limit')}")
    if rejected:
        rate = f", {logs['per_minute']:.1f} a minute" if logs.get("per_minute") is not None else ""
        found.add(Level.WARNING, f"{rejected} answers 429 in the last hour{rate}")

    is_attack = bool(top_clients) and float(logs.get("top_share") or 0.0) >= ATTACK_SHARE
    if is_limited and is_attack:
        offenders = [address for address, count in top_clients if count * 10 >= top_clients[0][1]][:10]
        found.add(Level.CRITICAL, f"{top_clients[0][0]} received {float(logs['top_share']):.0%} of the 429s: this looks like an attack")
        found.add(
            Level.INFO,
            "The bot cannot block addresses: ask whoever runs the load balancer (Railway or the AWS ALB, usually the platform team) to block "
            + ", ".join(offenders),
        )
        found.conclusion = "Attack from a few addresses: block them at the load balancer (the bot cannot)"
    elif is_limited:
        limit = headers.get("limit")
        found.conclusion = "Legitimate traffic spike: raise the rate limit for a while"
        if isinstance(limit, int) and limit > 0:
            found.offer(Resolution(f"ratelimit raise {limit * 2}", f"Raise to {limit * 2} for 1h", f"the 429s come from many clients; the limit is {limit} now"))
        else:
            found.add(Level.INFO, "the API sent no x-ratelimit-limit, so the bot does not propose a new limit: use `/meridian ratelimit raise LIMIT`")
    else:
        found.conclusion = "No rate limiting: no sign of INC-004"
    if is_limited:
        found.add(Level.INFO, "review the rate limit configuration in the API's routes.rs")
    return found.result(not_run=not_run(ctx, ("headers", "rejections")))
