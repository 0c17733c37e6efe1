"""Shared by the incident procedures: reading every pod's recent log lines, and steps that report
a target they cannot reach instead of failing. Resolutions (buttons on the finished card) are
defined in bot.engine.resolutions and re-exported here for the procedures."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.clients.kubernetes import Kubernetes, Pod
from bot.clients.kubernetes.client import LogsUnavailable
from bot.clients.log_analysis import LogRecord, parse_lines
from bot.engine.context import StepContext
from bot.engine.procedure import Level, StepResult
from bot.engine.resolutions import RESOLUTIONS_KEY, Resolution
from bot.errors import BotError, TargetError
from procedures.deployments import LOG_READ_CONCURRENCY

# The part of each pod's log an investigation reads: the last lines within the last hour.
LOG_TAIL_LINES = 1_000
LOG_WINDOW_SECONDS = 3_600

__all__ = ["RESOLUTIONS_KEY", "Resolution", "StepFunction", "all_records", "endpoint_host", "read_recent_logs", "tolerant", "unavailable"]

StepFunction = Callable[[StepContext], Awaitable[StepResult]]


def tolerant(step: StepFunction) -> StepFunction:
    """Turn a target error into a finding, so the other steps of an investigation still run.

    An unreachable or failing target is evidence in an incident. The step reports it with
    `data["unavailable"]`, and the findings step takes it into account.
    """

    @functools.wraps(step)
    async def run(ctx: StepContext) -> StepResult:
        try:
            return await step(ctx)
        except TargetError as error:
            return StepResult(
                summary=f"could not run: {error.user_message}",
                level=Level.WARNING,
                data={"unavailable": error.user_message, "target": error.target},
            )

    return run


@dataclass(frozen=True)
class PodLines:
    pod: str
    records: list[LogRecord]
    error: str | None = None


async def read_recent_logs(
    ctx: StepContext,
    cluster: Kubernetes,
    *,
    tail: int = LOG_TAIL_LINES,
    since_seconds: int | None = LOG_WINDOW_SECONDS,
) -> list[PodLines]:
    """Read the recent log lines of every pod of the deployment, LOG_READ_CONCURRENCY at a time.

    A pod whose log cannot be read is kept with its error; when no pod's log can be read,
    the first error is raised.
    """
    deployment = await cluster.read_deployment()
    pods = await cluster.list_pods(deployment)
    if not pods:
        return []
    await ctx.progress(f"reading the logs of {len(pods)} pods")
    limit = asyncio.Semaphore(LOG_READ_CONCURRENCY)

    async def read(pod: Pod) -> PodLines:
        async with limit:
            try:
                text = await cluster.read_log(
                    pod.name, container=pod.log_container, tail_lines=tail, since_seconds=since_seconds
                )
            except LogsUnavailable as error:
                return PodLines(pod=pod.name, records=[], error=error.message)
            except BotError as error:
                return PodLines(pod=pod.name, records=[], error=error.user_message)
        return PodLines(pod=pod.name, records=parse_lines(pod.name, text.splitlines()))

    results = await asyncio.gather(*(read(pod) for pod in pods))
    if all(result.error for result in results):
        raise LogsUnavailable("kubernetes", f"No pod's log could be read: {results[0].error}")
    return list(results)


def all_records(logs: list[PodLines]) -> list[LogRecord]:
    return [record for log in logs for record in log.records]


def endpoint_host(url: str) -> str:
    """Name an endpoint by scheme, host and port only: its path and query may hold an API key."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "the configured URL"
    if not parts.hostname:
        return "the configured URL"
    return f"{parts.scheme}://{parts.hostname}{port}"


def unavailable(data: dict[str, object] | None) -> str | None:
    """Return the error a tolerant step reported, or None when it ran."""
    if not data:
        return None
    value = data.get("unavailable")
    return str(value) if value else None
