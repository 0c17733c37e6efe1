"""Deployments: the pods of the API, their logs, and the rollout's status and history.

These are the runbook's `kubectl get pods`, `kubectl logs`, `kubectl rollout status` and
`kubectl rollout history` steps (INC-001 investigation, Emergency: Production Down).
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.clients.kubernetes import Kubernetes, Pod
from bot.clients.kubernetes.client import LogsUnavailable
from bot.clients.kubernetes.rollout import (
    RolloutState,
    revision_history,
    rollout_status,
)
from bot.durations import format_duration
from bot.engine.arguments import Option
from bot.engine.catalog import Command
from bot.engine.context import NotConfigured, StepContext
from bot.engine.patterns import LinePattern
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult
from bot.errors import BotError, Refused, UsageError

NOT_CONFIGURED = "not configured (set KUBECONFIG, or run the bot in the cluster)"
STEP_TIMEOUT_SECONDS = 30.0
DEFAULT_TAIL_LINES = 100
MAX_TAIL_LINES = 10_000
# Pods whose logs are read at the same time.
LOG_READ_CONCURRENCY = 8
SECTION = "Deployments"


def cluster_or_skip(ctx: StepContext) -> Kubernetes:
    """Return the Kubernetes client, or skip the read step when it is not configured."""
    cluster = ctx.targets.kubernetes
    if cluster is None:
        raise NotConfigured(NOT_CONFIGURED)
    return cluster


def cluster_or_refuse(ctx: StepContext) -> Kubernetes:
    """Return the Kubernetes client, or raise Refused: a change cannot go on without it."""
    cluster = ctx.targets.kubernetes
    if cluster is None:
        raise Refused("Kubernetes is not configured, so the deployment cannot be changed.", hint="Set KUBECONFIG, or run the bot in the cluster.")
    return cluster


def images_text(images: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{name}={image}" for name, image in images) or "no containers"


def _age(started_at: datetime | None) -> str:
    if started_at is None:
        return "-"
    return format_duration(max(datetime.now(UTC) - started_at, timedelta(0)))


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Format rows as a plain-text table with columns padded to their widest cell."""
    widths = [max(len(row[index]) for row in [headers, *rows]) for index in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


# /meridian pods


def pod_status(pod: Pod) -> str:
    """Return the STATUS column of `kubectl get pods`: the waiting or terminated reason, else the phase."""
    if pod.deleting:
        return "Terminating"
    for container in pod.containers:
        if container.state in ("waiting", "terminated") and container.reason:
            return container.reason
    return pod.phase


def pod_reason(pod: Pod) -> str:
    """Why a pod is not ready, with the container details that explain it."""
    parts = [pod.problem or "not ready"]
    for container in pod.containers:
        if container.ready:
            continue
        if container.last_termination_reason:
            code = f", exit code {container.last_exit_code}" if container.last_exit_code is not None else ""
            parts.append(f"{container.name} last exited: {container.last_termination_reason}{code}")
        if container.message:
            parts.append(f"{container.name}: {container.message}")
        if container.restarts:
            parts.append(f"{container.restarts} restarts")
    return " · ".join(dict.fromkeys(parts))


async def list_pods(ctx: StepContext) -> StepResult:
    cluster = cluster_or_skip(ctx)
    deployment = await cluster.read_deployment()
    pods = await cluster.list_pods(deployment)
    if not pods:
        return StepResult(
            summary=f"no pods match {deployment.label_selector} ({deployment.replicas} desired)",
            level=Level.CRITICAL if deployment.replicas else Level.INFO,
        )

    rows = [
        [
            pod.name,
            f"{sum(c.ready for c in pod.containers)}/{len(pod.container_names)}",
            pod_status(pod),
            str(pod.restarts),
            _age(pod.started_at),
            pod.node or "-",
        ]
        for pod in pods
    ]
    detail = table(["NAME", "READY", "STATUS", "RESTARTS", "AGE", "NODE"], rows)
    not_ready = [pod for pod in pods if pod.problem is not None]
    if not_ready:
        detail += "\n\nNot ready:\n" + "\n".join(f"{pod.name}: {pod_reason(pod)}" for pod in not_ready)

    ready = len(pods) - len(not_ready)
    summary = f"{len(pods)} pods · {ready} ready"
    if not_ready:
        reasons: dict[str, int] = {}
        for pod in not_ready:
            reasons[pod.problem or "not ready"] = reasons.get(pod.problem or "not ready", 0) + 1
        summary += " · " + ", ".join(f"{reason} ×{count}" for reason, count in reasons.items())
    level = Level.OK
    if not_ready:
        level = Level.CRITICAL if ready == 0 else Level.WARNING
    return StepResult(
        summary=summary,
        level=level,
        detail=detail,
        detail_title=f"Pods of {deployment.namespace}/{deployment.name}",
        data={"pods": [pod.name for pod in pods], "not_ready": [pod.name for pod in not_ready]},
    )


PODS = Procedure(
    name="pods",
    title="Pods",
    summary="List the API's pods with readiness, restarts, age, node and why any is not ready",
    risk=Risk.READ,
    section=SECTION,
    stages=(Step("pods", "Pods of the deployment", list_pods, timeout=STEP_TIMEOUT_SECONDS),),
)


# /meridian logs


@dataclass(frozen=True)
class PodLog:
    pod: str
    container: str | None
    lines: list[str]
    error: str | None = None


_KNOWN_FIELDS = ("timestamp", "level", "target", "message", "correlation_id")


def compact_line(line: str) -> str:
    """Show a JSON log line (timestamp, level, target, message, correlation_id) on one short line.

    Lines that are not JSON objects are returned as they are.
    """
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "message" not in record:
        return line
    stamp = str(record.get("timestamp", ""))
    time_of_day = stamp[11:19] if len(stamp) >= 19 and stamp[10] in "T " else stamp
    parts = [time_of_day, f"{str(record.get('level', '')).upper():<5}", str(record.get("target", "")), str(record["message"])]
    extra = [f"{key}={value}" for key, value in record.items() if key not in _KNOWN_FIELDS]
    parts.extend(extra)
    if record.get("correlation_id"):
        parts.append(f"[{record['correlation_id']}]")
    return " ".join(part for part in parts if part)


def _error_level(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return "panicked" in line
    return isinstance(record, dict) and str(record.get("level", "")).upper() in ("ERROR", "FATAL")


async def read_logs(ctx: StepContext) -> StepResult:
    cluster = cluster_or_skip(ctx)
    tail = ctx.args.get("tail") or DEFAULT_TAIL_LINES
    if tail > MAX_TAIL_LINES:
        raise UsageError(f"--tail: at most {MAX_TAIL_LINES:,} lines per pod.", hint="Use --since or --grep to narrow the logs.")
    since = ctx.args.get("since")
    since_seconds = math.ceil(since) if since else None
    pattern = LinePattern(ctx.args["grep"]) if ctx.args.get("grep") else None

    deployment = await cluster.read_deployment()
    pods = await cluster.list_pods(deployment)
    wanted = ctx.args.get("pod")
    if wanted:
        pods = [pod for pod in pods if pod.name == wanted]
        if not pods:
            raise UsageError(
                f"No pod named `{wanted}` belongs to {deployment.namespace}/{deployment.name}.",
                hint="`/meridian pods` lists its pods.",
            )
    if not pods:
        return StepResult(summary=f"no pods match {deployment.label_selector}", level=Level.WARNING)

    await ctx.progress(f"reading the logs of {len(pods)} pods")
    limit = asyncio.Semaphore(LOG_READ_CONCURRENCY)

    async def read(pod: Pod) -> PodLog:
        async with limit:
            try:
                text = await cluster.read_log(
                    pod.name, container=pod.log_container, tail_lines=tail, since_seconds=since_seconds
                )
            except LogsUnavailable as error:
                return PodLog(pod=pod.name, container=pod.log_container, lines=[], error=error.message)
        return PodLog(pod=pod.name, container=pod.log_container, lines=text.splitlines())

    results = await asyncio.gather(*(read(pod) for pod in pods), return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures and len(failures) == len(results):
        raise failures[0]
    logs: list[PodLog] = []
    for pod, result in zip(pods, results, strict=True):
        if isinstance(result, BotError):
            logs.append(PodLog(pod=pod.name, container=pod.log_container, lines=[], error=result.user_message))
        elif isinstance(result, BaseException):
            raise result
        else:
            logs.append(result)

    return _logs_result(logs, pattern=pattern, tail=tail, since=since)


def _logs_result(logs: list[PodLog], *, pattern: LinePattern | None, tail: int, since: float | None) -> StepResult:
    sections = []
    matches: dict[str, int] = {}
    errors = 0
    total = 0
    for log in logs:
        shown = [line for line in log.lines if pattern is None or pattern.search(line)]
        matches[log.pod] = len(shown)
        errors += sum(_error_level(line) for line in shown)
        total += len(log.lines)
        heading = f"== {log.pod}" + (f" ({log.container})" if log.container else "")
        if log.error:
            sections.append(f"{heading}: no logs: {log.error}")
            continue
        count = f"{len(shown)} of {len(log.lines)} lines match" if pattern else f"{len(log.lines)} lines"
        body = "\n".join(compact_line(line) for line in shown)
        sections.append(f"{heading} · {count}" + (f"\n{body}" if body else ""))

    window = f"last {tail} lines" + (f" within {format_duration(timedelta(seconds=since))}" if since else "")
    unreadable = [log.pod for log in logs if log.error]
    if pattern is not None:
        found = sum(matches.values())
        per_pod = ", ".join(f"{pod}: {count}" for pod, count in matches.items() if pod not in unreadable)
        summary = f"/{pattern.pattern}/: {found} matching lines in {len(logs)} pods ({per_pod}) · {window} each"
        level = Level.INFO
    else:
        summary = f"{total} lines from {len(logs)} pods ({window} each)"
        level = Level.OK
    if errors:
        summary += f" · {errors} error lines"
        level = Level.WARNING
    if unreadable:
        summary += f" · no logs from {len(unreadable)} pods"
        level = Level.WARNING
    return StepResult(
        summary=summary,
        level=level,
        detail="\n\n".join(sections),
        detail_title="Logs",
        data={"matches": matches, "unreadable": unreadable},
    )


LOGS = Procedure(
    name="logs",
    title="Logs",
    summary="Show recent log lines of every pod (or one), optionally counting the lines a regex matches",
    risk=Risk.READ,
    section=SECTION,
    stages=(Step("logs", "Pod logs", read_logs, timeout=STEP_TIMEOUT_SECONDS),),
)


# /meridian rollout status and history


async def show_rollout_status(ctx: StepContext) -> StepResult:
    cluster = cluster_or_skip(ctx)
    deployment = await cluster.read_deployment()
    status = rollout_status(deployment)

    lines = [
        (
            f"Deployment {deployment.namespace}/{deployment.name} · revision {deployment.revision or '?'}"
            f" · generation {deployment.generation} (observed {deployment.observed_generation})"
        ),
        (
            f"Replicas: {deployment.replicas} desired · {deployment.updated_replicas} updated · "
            f"{deployment.ready_replicas} ready · {deployment.available_replicas} available · {deployment.status_replicas} total"
        ),
        f"Images: {images_text(deployment.images)}",
    ]
    if deployment.paused:
        lines.append("The deployment is paused: changes to its template do not roll out.")
    for condition in deployment.conditions:
        lines.append(f"{condition.type}: {condition.status} ({condition.reason or '-'}) {condition.message or ''}".rstrip())

    if status.state is RolloutState.COMPLETE:
        summary, level = f"complete · revision {deployment.revision or '?'} · {status.progress}", Level.OK
    elif status.state is RolloutState.FAILED:
        summary, level = f"failed: {status.message}", Level.CRITICAL
    else:
        summary, level = f"in progress · {status.progress}", Level.WARNING
    return StepResult(
        summary=summary,
        level=level,
        detail="\n".join([status.message, *lines]),
        detail_title="Rollout status",
        data={"state": status.state.value, "revision": deployment.revision},
    )


async def show_rollout_history(ctx: StepContext) -> StepResult:
    cluster = cluster_or_skip(ctx)
    deployment = await cluster.read_deployment()
    history = revision_history(deployment, await cluster.list_replicasets(deployment))
    if not history:
        return StepResult(summary="no revisions: the deployment owns no ReplicaSet with a revision", level=Level.WARNING)

    rows = [
        [
            f"{revision.number}{' (current)' if revision.is_current else ''}",
            images_text(revision.images),
            revision.change_cause or "<none>",
            revision.replicaset.created_at.strftime("%Y-%m-%d %H:%M") if revision.replicaset.created_at else "-",
            str(revision.replicaset.replicas),
        ]
        for revision in history
    ]
    current = next((revision for revision in history if revision.is_current), history[-1])
    return StepResult(
        summary=f"{len(history)} revisions · current {current.number} ({images_text(current.images)})",
        detail=table(["REVISION", "IMAGES", "CHANGE-CAUSE", "CREATED", "PODS"], rows),
        detail_title=f"Rollout history of {deployment.namespace}/{deployment.name}",
        data={"revisions": [revision.number for revision in history]},
    )


ROLLOUT_STATUS = Procedure(
    name="rollout-status",
    title="Rollout status",
    summary="Show whether the deployment's rollout is complete, in progress or failed, as kubectl does",
    risk=Risk.READ,
    section=SECTION,
    stages=(Step("status", "Rollout status", show_rollout_status, timeout=STEP_TIMEOUT_SECONDS),),
)

ROLLOUT_HISTORY = Procedure(
    name="rollout-history",
    title="Rollout history",
    summary="List the deployment's revisions with their images and change causes",
    risk=Risk.READ,
    section=SECTION,
    stages=(Step("history", "Revisions", show_rollout_history, timeout=STEP_TIMEOUT_SECONDS),),
)

COMMANDS = (
    Command(words=("pods",), procedure=PODS, examples=("/meridian pods",)),
    Command(
        words=("logs",),
        procedure=LOGS,
        options=(
            Option("--tail", "count", f"lines per pod, counted from the end (default {DEFAULT_TAIL_LINES}, at most {MAX_TAIL_LINES:,})", metavar="N", maximum=MAX_TAIL_LINES),
            Option("--grep", "regex", "show only the lines this regular expression matches, and count them per pod", metavar="RE"),
            Option("--pod", "text", "read only this pod", metavar="NAME"),
            Option("--since", "duration", "only lines newer than this, for example 15m", metavar="DURATION"),
        ),
        examples=("/meridian logs", '/meridian logs --grep "pool exhausted" --since 1h', "/meridian logs --pod meridian-api-7d9f-x2k4q --tail 500"),
    ),
    Command(words=("rollout", "status"), procedure=ROLLOUT_STATUS, examples=("/meridian rollout status",)),
    Command(words=("rollout", "history"), procedure=ROLLOUT_HISTORY, examples=("/meridian rollout history",)),
)
