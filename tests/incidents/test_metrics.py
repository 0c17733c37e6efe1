"""`/meridian metrics`: parsing the API's Prometheus exposition, and the errors a reader can act on."""

from __future__ import annotations

import pytest

from bot.clients.prometheus import parse_meridian_metrics
from bot.errors import TargetResponseInvalid
from bot.sandbox.environment import Sandbox
from tests.incidents.conftest import card_text, latest_run, thread_text

# An exposition as the API serves it: HELP and TYPE lines, a labelled counter, a timestamp,
# an unrelated histogram and a NaN gauge.
EXPOSITION = """\
# HELP meridian_db_pool_size Database connection pool size
# TYPE meridian_db_pool_size gauge
meridian_db_pool_size 20
# HELP meridian_db_pool_idle Idle database connections
# TYPE meridian_db_pool_idle gauge
meridian_db_pool_idle 3 1767107400000
# TYPE meridian_oracle_enabled gauge
meridian_oracle_enabled 1
# TYPE meridian_baskets_total gauge
meridian_baskets_total 5
# TYPE meridian_users_total gauge
meridian_users_total 1284
# HELP meridian_operations Operation counts
# TYPE meridian_operations counter
meridian_operations_total{type="mint"} 3120
meridian_operations_total{type="burn"} 1475.0
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1"} 10
http_request_duration_seconds_bucket{le="+Inf"} 12
http_request_duration_seconds_sum 1.5
http_request_duration_seconds_count 12
# TYPE process_unknown gauge
process_unknown NaN
"""


def test_parse_realistic_exposition() -> None:
    metrics = parse_meridian_metrics(EXPOSITION)

    assert metrics.pool_size == 20
    assert metrics.pool_idle == 3
    assert metrics.pool_use_percent == pytest.approx(85.0)
    assert metrics.oracle_enabled is True
    assert metrics.baskets == 5
    assert metrics.users == 1284
    assert metrics.operations == {"mint": 3120, "burn": 1475}
    assert metrics.missing == []


def test_parse_reports_missing_metrics() -> None:
    metrics = parse_meridian_metrics("meridian_db_pool_size 10\n")

    assert metrics.pool_idle is None
    assert metrics.pool_use_percent is None
    assert "meridian_db_pool_idle" in metrics.missing
    assert "meridian_operations_total" in metrics.missing


@pytest.mark.parametrize(
    "text",
    [
        "meridian_db_pool_size ten\n",
        '# TYPE meridian_operations counter\nmeridian_operations_total{type="mint" 3\n',
        "<html><body>502 Bad Gateway</body></html>",
        "",
        "# only a comment\n",
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(TargetResponseInvalid) as raised:
        parse_meridian_metrics(text)

    assert "/metrics" in raised.value.message


async def test_metrics_command_shows_pool_use(bot: Sandbox) -> None:
    bot.api.pool_size, bot.api.pool_idle = 20, 3

    await bot.command("metrics")

    run = await latest_run(bot)
    text = card_text(bot, run.id)
    assert run.state.value == "completed"
    assert "pool 17/20 in use, 3 idle (85% in use)" in text
    assert "oracle enabled" in text
    assert "5 baskets" in text
    assert "1,284 users" in text
    assert "operations burn 1,475, mint 3,120" in text
    assert 'meridian_operations_total{type="mint"}' in thread_text(bot, run.id)
    (request,) = [r for r in bot.api.requests if r.path == "/metrics"]
    assert request.headers["Authorization"] == "Bearer sandbox-metrics-token"


async def test_metrics_exhausted_pool_is_critical(bot: Sandbox) -> None:
    await bot.api.set_mode("pool_exhausted")

    await bot.command("metrics")

    run = await latest_run(bot)
    assert run.steps[0].level.value == "critical"
    assert "pool 10/10 in use, 0 idle (100% in use)" in card_text(bot, run.id)


async def test_metrics_wrong_token_is_clear(bot: Sandbox) -> None:
    bot.api.metrics_token = "rotated-token"

    await bot.command("metrics")

    run = await latest_run(bot)
    text = card_text(bot, run.id)
    assert run.state.value == "failed"
    assert "rejected METRICS_TOKEN for /metrics (HTTP 401)" in text
    assert "sandbox-metrics-token" not in text


async def test_metrics_garbage_is_clear(bot: Sandbox) -> None:
    await bot.api.set_mode("garbage")

    await bot.command("metrics")

    run = await latest_run(bot)
    assert run.state.value == "failed"
    assert "/metrics returned text that is not UTF-8" in card_text(bot, run.id)
