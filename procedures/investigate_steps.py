"""The evidence steps of the incident investigations: pods, deployments, logs, health, pool, database.

Each step stores what the findings step needs in its `data`. Steps wrapped in `tolerant`
report a target they cannot reach as a finding, so the other steps still run.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.clients.kubernetes.rollout import revision_history, rollout_status
from bot.clients.log_analysis import (
    OPEN,
    circuit_transitions,
    current_states,
    pool_exhausted,
    rate_limit_activity,
)
from bot.durations import format_duration
from bot.engine.context import NotConfigured, StepContext
from bot.engine.procedure import Level, StepResult
from bot.errors import TargetError
from procedures.circuit import transition_line
from procedures.database_common import database, shorten
from procedures.deployments import cluster_or_skip, pod_reason, pod_status, table
from procedures.investigate_common import all_records, read_recent_logs
from procedures.metrics import metrics_data, pool_level, pool_text, read_metrics

# A revision created this recently counts as a recent deployment (runbook: "If recent deployment: Rollback").
RECENT_DEPLOYMENT_SECONDS = 2 * 3_600
LINES_SHOWN = 20
LONG_QUERIES_READ = 10


async def check_pods(ctx: StepContext) -> StepResult:
    cluster = cluster_or_skip(ctx)
    deployment = await cluster.read_deployment()
    pods = await cluster.list_pods(deployment)
    problems = Counter(pod.problem for pod in pods if pod.problem is not None)
    statuses = Counter(pod_status(pod) for pod in pods)
    restarts = sum(pod.restarts for pod in pods)
    data: dict[str, Any] = {
        "replicas": deployment.replicas,
        "pods": len(pods),
        "ready": sum(pod.problem is None for pod in pods),
        "problems": dict(problems),
        "statuses": dict(statuses),
        "restarts": restarts,
        "oom_killed": any("OOMKilled" in pod_reason(pod) for pod in pods),
        "crash_looping": any("CrashLoopBackOff" in pod_status(pod) or "CrashLoopBackOff" in (pod.problem or "") for pod in pods),
    }
    summary = f"{data['ready']} of {len(pods)} pods ready ({deployment.replicas} desired) · {restarts} restarts"
    if problems:
        summary += " · " + ", ".join(f"{reason} ×{count}" for reason, count in problems.items())
    rows = [[pod.name, pod_status(pod), str(pod.restarts), pod_reason(pod) if pod.problem else "ready"] for pod in pods]
    level = Level.OK
    if problems:
        level = Level.CRITICAL if data["ready"] == 0 else Level.WARNING
    return StepResult(summary=summary, level=level, detail=table(["NAME", "STATUS", "RESTARTS", "WHY"], rows) if rows else None, detail_title="Pods", data=data)


async def check_deployments(ctx: StepContext) -> StepResult:
    cluster = cluster_or_skip(ctx)
    deployment = await cluster.read_deployment()
    history = revision_history(deployment, await cluster.list_replicasets(deployment))
    status = rollout_status(deployment)
    current = next((revision for revision in history if revision.is_current), None)
    created = current.replicaset.created_at if current else None
    age = datetime.now(UTC) - created if created else None
    is_recent = age is not None and age.total_seconds() <= RECENT_DEPLOYMENT_SECONDS
    data = {
        "revision": deployment.revision,
        "revisions": len(history),
        "recent": is_recent,
        "age_seconds": age.total_seconds() if age else None,
        "rollout": status.state.value,
    }
    when = f"deployed {format_duration(age)} ago" if age is not None else "deployment time unknown"
    summary = f"revision {deployment.revision or '?'} {when} · rollout {status.state.value} · {len(history)} revisions"
    return StepResult(summary=summary, level=Level.WARNING if is_recent else Level.OK, data=data)


async def check_logs(ctx: StepContext) -> StepResult:
    cluster = cluster_or_skip(ctx)
    logs = await read_recent_logs(ctx, cluster)
    records = all_records(logs)
    exhausted = pool_exhausted(records)
    transitions = circuit_transitions(records)
    states = current_states(transitions)
    activity = rate_limit_activity(records)
    errors = sum(record.level in ("ERROR", "FATAL") or "panicked" in record.raw for record in records)
    unreadable = [log.pod for log in logs if log.error]

    facts = [f"{len(records)} lines from {len(logs)} pods", f'{len(exhausted)} "pool exhausted"']
    facts.append(f"{len(transitions)} circuit_breaker changes" + (f" ({', '.join(f'{b} {t.state}' for b, t in states.items())})" if states else ""))
    facts.append(f"{activity.rejected} answers 429")
    if errors:
        facts.append(f"{errors} error lines")
    if unreadable:
        facts.append(f"no logs from {len(unreadable)} pods")

    sections = []
    if exhausted:
        sections.append('Lines with "pool exhausted" (newest last):\n' + "\n".join(f"{r.pod}: {r.raw}" for r in exhausted[-LINES_SHOWN:]))
    if transitions:
        sections.append("Circuit breaker changes:\n" + "\n".join(transition_line(t) for t in transitions[-LINES_SHOWN:]))
    if activity.top_clients:
        sections.append("Client addresses that received 429:\n" + "\n".join(f"{address}  {count}" for address, count in activity.top_clients))
    level = Level.WARNING if exhausted or errors or any(t.state == OPEN for t in states.values()) else Level.OK
    return StepResult(
        summary=" · ".join(facts) + " (last hour)",
        level=level,
        detail="\n\n".join(sections) or None,
        detail_title="Log evidence",
        data={
            "lines": len(records),
            "pool_exhausted": len(exhausted),
            "breakers": {breaker: transition.state for breaker, transition in states.items()},
            "rejected": activity.rejected,
            "per_minute": activity.per_minute,
            "top_clients": [list(pair) for pair in activity.top_clients],
            "top_share": activity.top_share,
            "errors": errors,
        },
    )


async def check_health(ctx: StepContext) -> StepResult:
    api = ctx.targets.meridian_api
    if api is None:
        raise NotConfigured("not configured (set MERIDIAN_API_URL)")
    try:
        health = await api.health()
    except TargetError as error:
        return StepResult(summary=f"down: {error.user_message}", level=Level.CRITICAL, data={"reachable": False, "error": error.user_message})
    data = {
        "reachable": True,
        "healthy": health.is_healthy,
        "status": health.status,
        "error": health.error,
        "http_status": health.http_status,
        "oracle_enabled": health.oracle_enabled,
    }
    if not health.is_healthy:
        return StepResult(summary=f"{health.status}: {health.error or '-'} (HTTP {health.http_status})", level=Level.CRITICAL, data=data)
    oracle = ""
    if health.oracle_enabled is not None:
        oracle = " · oracle enabled" if health.oracle_enabled else " · oracle disabled"
    return StepResult(summary=f"ok · HTTP {health.http_status}{oracle}", data=data)


async def check_pool_metrics(ctx: StepContext) -> StepResult:
    metrics = await read_metrics(ctx)
    return StepResult(summary=pool_text(metrics), level=pool_level(metrics), data=metrics_data(metrics))


async def check_connections(ctx: StepContext) -> StepResult:
    summary = await database(ctx).connection_summary()
    clients = summary.clients
    by_state = summary.by_state
    idle_in_transaction = [
        {
            "pid": backend.pid,
            "seconds": backend.state_duration.total_seconds() if backend.state_duration else 0.0,
            "user": backend.user,
            "application": backend.application,
            "can_signal": backend.can_signal,
            "own": backend.is_own,
        }
        for backend in summary.idle_in_transaction
    ]
    idle_in_transaction.sort(key=lambda session: session["seconds"], reverse=True)
    states = ", ".join(f"{state} {count}" for state, count in by_state.most_common())
    text = f"{len(clients)} of {summary.max_connections} connections ({summary.usage:.0%}) · {states or 'no client sessions'}"
    level = Level.WARNING if idle_in_transaction else Level.OK
    if summary.usage >= 0.9:
        level = Level.CRITICAL
    rows = [[str(s["pid"]), f"{s['user']}", s["application"] or "-", format_duration(timedelta(seconds=s["seconds"]))] for s in idle_in_transaction]
    return StepResult(
        summary=text,
        level=level,
        detail=("Idle in transaction:\n" + table(["PID", "USER", "APPLICATION", "IDLE FOR"], rows)) if rows else None,
        detail_title="Connections",
        data={
            "total": len(clients),
            "max_connections": summary.max_connections,
            "usage": summary.usage,
            "by_state": dict(by_state),
            "idle_in_transaction": idle_in_transaction,
        },
    )


async def check_long_queries(ctx: StepContext) -> StepResult:
    found = await database(ctx).long_queries(limit=LONG_QUERIES_READ, min_duration=timedelta(0))
    queries = [
        {
            "pid": backend.pid,
            "state": backend.state,
            "seconds": backend.query_duration.total_seconds() if backend.query_duration else 0.0,
            "can_signal": backend.can_signal,
            "query": shorten(backend.query, 120),
        }
        for backend in found.queries
    ]
    if not queries:
        return StepResult(summary="no query is running", data={"queries": []})
    longest = queries[0]
    rows = [[str(q["pid"]), q["state"] or "-", format_duration(timedelta(seconds=q["seconds"])), q["query"]] for q in queries]
    return StepResult(
        summary=f"{found.matching} non-idle queries · longest pid {longest['pid']} for {format_duration(timedelta(seconds=longest['seconds']))}",
        level=Level.WARNING if longest["seconds"] >= 30 else Level.OK,
        detail=table(["PID", "STATE", "DURATION", "QUERY"], rows),
        detail_title="Longest queries",
        data={"queries": queries},
    )
