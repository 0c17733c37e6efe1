"""Prometheus Metrics: the API's key metrics from `/metrics`, read with METRICS_TOKEN."""

from __future__ import annotations

from typing import Any

from bot.clients.prometheus import MeridianMetrics, parse_meridian_metrics
from bot.engine.catalog import Command
from bot.engine.context import NotConfigured, StepContext
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult

STEP_TIMEOUT_SECONDS = 15.0
# Pool use at or above these percentages is a warning, and a critical finding.
POOL_WARNING_PERCENT = 80.0
POOL_CRITICAL_PERCENT = 100.0


async def read_metrics(ctx: StepContext) -> MeridianMetrics:
    """Fetch and parse `/metrics`; skip the step when MERIDIAN_API_URL is not set."""
    api = ctx.targets.meridian_api
    if api is None:
        raise NotConfigured("not configured (set MERIDIAN_API_URL)")
    return parse_meridian_metrics(await api.metrics_text())


def pool_level(metrics: MeridianMetrics) -> Level:
    percent = metrics.pool_use_percent
    if percent is None:
        return Level.WARNING
    if percent >= POOL_CRITICAL_PERCENT:
        return Level.CRITICAL
    if percent >= POOL_WARNING_PERCENT:
        return Level.WARNING
    return Level.OK


def pool_text(metrics: MeridianMetrics) -> str:
    if metrics.pool_size is None or metrics.pool_idle is None:
        return "pool size or idle count not exported"
    percent = metrics.pool_use_percent
    used = f"{percent:.0f}% in use" if percent is not None else "use unknown"
    return f"pool {_number(metrics.pool_in_use)}/{_number(metrics.pool_size)} in use, {_number(metrics.pool_idle)} idle ({used})"


def metrics_data(metrics: MeridianMetrics) -> dict[str, Any]:
    return {
        "pool_size": metrics.pool_size,
        "pool_idle": metrics.pool_idle,
        "pool_use_percent": metrics.pool_use_percent,
        "oracle_enabled": metrics.oracle_enabled,
        "baskets": metrics.baskets,
        "users": metrics.users,
        "operations": metrics.operations,
    }


async def show_metrics(ctx: StepContext) -> StepResult:
    metrics = await read_metrics(ctx)

    oracle = {True: "oracle enabled", False: "oracle disabled", None: "oracle status not exported"}[metrics.oracle_enabled]
    facts = [pool_text(metrics), oracle]
    if metrics.baskets is not None:
        facts.append(f"{_number(metrics.baskets)} baskets")
    if metrics.users is not None:
        facts.append(f"{_number(metrics.users)} users")
    if metrics.operations:
        facts.append("operations " + ", ".join(f"{kind or '(no type)'} {_number(count)}" for kind, count in sorted(metrics.operations.items())))

    levels = [pool_level(metrics), Level.WARNING if metrics.oracle_enabled is False else Level.OK]
    if metrics.missing:
        levels.append(Level.WARNING)
    level = max(levels, key=_severity)

    rows = [
        ("meridian_db_pool_size", _number(metrics.pool_size)),
        ("meridian_db_pool_idle", _number(metrics.pool_idle)),
        ("pool in use", "-" if metrics.pool_use_percent is None else f"{metrics.pool_use_percent:.1f}%"),
        ("meridian_oracle_enabled", "-" if metrics.oracle_enabled is None else str(int(metrics.oracle_enabled))),
        ("meridian_baskets_total", _number(metrics.baskets)),
        ("meridian_users_total", _number(metrics.users)),
    ]
    rows += [(f'meridian_operations_total{{type="{kind}"}}', _number(count)) for kind, count in sorted(metrics.operations.items())]
    width = max(len(name) for name, _ in rows)
    detail = "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
    detail += f"\n\n{metrics.samples} samples in the exposition."
    if metrics.missing:
        detail += "\nNot exported: " + ", ".join(metrics.missing)
        facts.append("missing " + ", ".join(metrics.missing))

    return StepResult(
        summary=" · ".join(facts),
        level=level,
        detail=detail,
        detail_title="Key metrics",
        data=metrics_data(metrics),
    )


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _severity(level: Level) -> int:
    return [Level.OK, Level.INFO, Level.WARNING, Level.CRITICAL].index(level)


METRICS = Procedure(
    name="metrics",
    title="Metrics",
    summary="Show the API's key Prometheus metrics: pool use, oracle, baskets, users, operations",
    risk=Risk.READ,
    section="Prometheus Metrics",
    stages=(Step("metrics", "API /metrics", show_metrics, timeout=STEP_TIMEOUT_SECONDS),),
)

COMMANDS = (Command(words=("metrics",), procedure=METRICS, examples=("/meridian metrics",)),)
