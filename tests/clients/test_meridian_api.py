"""MeridianApiClient against FakeMeridianApi in each of its modes."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bot.clients.meridian_api import ApiHealth, MeridianApiClient
from bot.errors import (
    TargetError,
    TargetRejected,
    TargetResponseInvalid,
    TargetTimeout,
    TargetUnavailable,
)
from bot.sandbox.fakes.meridian_api import FakeMeridianApi

TOKEN_CANARY = "canary-token-7f3e9a1c5b"
PASSWORD_CANARY = "canary-password-41d8c2"
CLIENT_TIMEOUT = 0.5


@pytest.fixture
async def fake() -> AsyncIterator[FakeMeridianApi]:
    async with FakeMeridianApi(metrics_token=TOKEN_CANARY) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def client(fake: FakeMeridianApi, session: aiohttp.ClientSession) -> MeridianApiClient:
    return MeridianApiClient(
        base_url=fake.base_url,
        session=session,
        timeout=CLIENT_TIMEOUT,
        metrics_token=SecretStr(TOKEN_CANARY),
    )


def assert_no_secrets(error: BaseException) -> None:
    """Check the message, hint, repr and the whole traceback including causes."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, TargetError):
        texts.append(error.user_message)
    for text in texts:
        assert TOKEN_CANARY not in text
        assert PASSWORD_CANARY not in text


async def test_health_healthy_report(client: MeridianApiClient) -> None:
    health = await client.health()

    assert health.status == "ok"
    assert health.is_healthy
    assert health.version == "0.1.0"
    assert health.oracle_enabled is True
    assert health.baskets_count == 5
    assert health.error is None
    assert health.http_status == 200
    assert 0 <= health.latency_seconds < CLIENT_TIMEOUT


@pytest.mark.parametrize("mode", ["unhealthy", "pool_exhausted"])
async def test_health_unhealthy_is_result(
    fake: FakeMeridianApi, client: MeridianApiClient, mode: str
) -> None:
    await fake.set_mode(mode)

    health = await client.health()

    assert health == ApiHealth(
        status="unhealthy",
        version="0.1.0",
        oracle_enabled=None,
        baskets_count=None,
        error="database connection failed",
        http_status=503,
        latency_seconds=health.latency_seconds,
    )
    assert not health.is_healthy


async def test_health_unhealthy_with_http_200(
    fake: FakeMeridianApi, client: MeridianApiClient
) -> None:
    await fake.set_mode("unhealthy")
    fake.unhealthy_http_status = 200

    health = await client.health()

    assert health.status == "unhealthy"
    assert health.error == "database connection failed"
    assert health.http_status == 200


@pytest.mark.parametrize(
    ("mode", "error_class", "expected_text"),
    [
        ("down", TargetUnavailable, "connection was refused"),
        ("slow", TargetTimeout, f"within {CLIENT_TIMEOUT:g} seconds"),
        ("error", TargetUnavailable, "HTTP 500"),
        ("garbage", TargetResponseInvalid, "invalid health report"),
        ("rate_limited", TargetUnavailable, "HTTP 429"),
    ],
)
async def test_health_failure_modes(
    fake: FakeMeridianApi,
    client: MeridianApiClient,
    mode: str,
    error_class: type[TargetError],
    expected_text: str,
) -> None:
    await fake.set_mode(mode)

    with pytest.raises(error_class) as caught:
        await client.health()

    error = caught.value
    assert type(error) is error_class
    assert expected_text in error.message
    assert error.target == "meridian-api"
    assert error.message.endswith((".", '"'))
    assert "\n" not in error.message
    assert_no_secrets(error)


async def test_health_rate_limited_names_retry_after(
    fake: FakeMeridianApi, client: MeridianApiClient
) -> None:
    await fake.set_mode("rate_limited")

    with pytest.raises(TargetUnavailable) as caught:
        await client.health()

    assert caught.value.hint == "Retry after 30 seconds."


async def test_health_garbage_excerpt_is_short_and_printable(
    fake: FakeMeridianApi, client: MeridianApiClient
) -> None:
    await fake.set_mode("garbage")

    with pytest.raises(TargetResponseInvalid) as caught:
        await client.health()

    message = caught.value.message
    excerpt = message.split(": ", 1)[1]
    assert len(excerpt) <= 200 + 2
    assert message.isprintable()
    assert "\\x" not in message
    assert '"status": "ok"' in excerpt


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"version": "0.1.0"}', "status is missing"),
        ('{"status": 1}', "status is a JSON number"),
        ('{"status": "ok", "baskets_count": true}', "baskets_count is a JSON boolean"),
        ('{"status": "ok", "oracle_enabled": "yes"}', "oracle_enabled is a JSON string"),
        ('["ok"]', "the body is a JSON array, not an object"),
    ],
)
async def test_health_wrong_shape_invalid(
    session: aiohttp.ClientSession, body: str, reason: str
) -> None:
    async def handler(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text=body, content_type="application/json")

    app = aiohttp.web.Application()
    app.router.add_get("/health", handler)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        client = MeridianApiClient(
            base_url=f"http://127.0.0.1:{port}", session=session, timeout=CLIENT_TIMEOUT
        )
        with pytest.raises(TargetResponseInvalid) as caught:
            await client.health()
    finally:
        await runner.cleanup()

    assert reason in caught.value.message


async def test_health_recovers_after_down(fake: FakeMeridianApi, client: MeridianApiClient) -> None:
    port = fake.port
    await fake.set_mode("down")
    with pytest.raises(TargetUnavailable) as caught:
        await client.health()

    await fake.set_mode("healthy")
    health = await client.health()

    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
    assert fake.port == port
    assert health.status == "ok"


async def test_health_unknown_path_rejected(
    fake: FakeMeridianApi, session: aiohttp.ClientSession
) -> None:
    client = MeridianApiClient(
        base_url=f"{fake.base_url}/wrong-prefix", session=session, timeout=CLIENT_TIMEOUT
    )

    with pytest.raises(TargetRejected) as caught:
        await client.health()

    assert "HTTP 404" in caught.value.message


async def test_url_credentials_stay_hidden(
    fake: FakeMeridianApi, session: aiohttp.ClientSession
) -> None:
    client = MeridianApiClient(
        base_url=f"http://ops:{PASSWORD_CANARY}@127.0.0.1:{fake.port}/?key={PASSWORD_CANARY}",
        session=session,
        timeout=CLIENT_TIMEOUT,
    )
    await fake.set_mode("down")

    with pytest.raises(TargetUnavailable) as caught:
        await client.health()

    assert f"127.0.0.1:{fake.port}" in caught.value.message
    assert_no_secrets(caught.value)
    assert PASSWORD_CANARY not in repr(client)


async def test_metrics_returns_runbook_metrics(
    fake: FakeMeridianApi, client: MeridianApiClient
) -> None:
    text = await client.metrics_text()

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("meridian_db_pool_size", ())] == 10
    assert samples[("meridian_db_pool_idle", ())] == 7
    assert samples[("meridian_oracle_enabled", ())] == 1
    assert samples[("meridian_baskets_total", ())] == 5
    assert samples[("meridian_users_total", ())] == 1284
    assert samples[("meridian_operations_total", (("type", "mint"),))] == 3120
    assert samples[("meridian_operations_total", (("type", "burn"),))] == 1475


async def test_metrics_pool_exhausted_idle_zero(
    fake: FakeMeridianApi, client: MeridianApiClient
) -> None:
    await fake.set_mode("pool_exhausted")

    text = await client.metrics_text()

    assert "meridian_db_pool_idle 0.0" in text.splitlines()
    assert "meridian_db_pool_size 10.0" in text.splitlines()


async def test_metrics_sends_bearer_token(fake: FakeMeridianApi, client: MeridianApiClient) -> None:
    await client.metrics_text()

    [request] = fake.requests_to("/metrics")
    assert request.method == "GET"
    assert request.headers["Authorization"] == f"Bearer {TOKEN_CANARY}"


async def test_metrics_wrong_token_rejected(
    fake: FakeMeridianApi, session: aiohttp.ClientSession
) -> None:
    fake.metrics_token = "the-current-token"
    client = MeridianApiClient(
        base_url=fake.base_url,
        session=session,
        timeout=CLIENT_TIMEOUT,
        metrics_token=SecretStr(TOKEN_CANARY),
    )

    with pytest.raises(TargetRejected) as caught:
        await client.metrics_text()

    assert "rejected METRICS_TOKEN" in caught.value.message
    assert "HTTP 401" in caught.value.message
    assert "METRICS_TOKEN is wrong" in (caught.value.hint or "")
    assert_no_secrets(caught.value)


async def test_metrics_missing_token_rejected(
    fake: FakeMeridianApi, session: aiohttp.ClientSession
) -> None:
    client = MeridianApiClient(base_url=fake.base_url, session=session, timeout=CLIENT_TIMEOUT)

    with pytest.raises(TargetRejected) as caught:
        await client.metrics_text()

    assert "METRICS_TOKEN is not set" in caught.value.message
    assert "Authorization" not in fake.requests_to("/metrics")[0].headers


@pytest.mark.parametrize(
    ("mode", "error_class"),
    [
        ("down", TargetUnavailable),
        ("slow", TargetTimeout),
        ("error", TargetUnavailable),
        ("rate_limited", TargetUnavailable),
    ],
)
async def test_metrics_failure_modes(
    fake: FakeMeridianApi,
    client: MeridianApiClient,
    mode: str,
    error_class: type[TargetError],
) -> None:
    await fake.set_mode(mode)

    with pytest.raises(error_class) as caught:
        await client.metrics_text()

    assert type(caught.value) is error_class
    assert_no_secrets(caught.value)


@pytest.mark.parametrize("mode", ["healthy", "unhealthy", "error", "garbage", "rate_limited"])
async def test_fake_sends_rate_limit_headers(
    fake: FakeMeridianApi, session: aiohttp.ClientSession, mode: str
) -> None:
    await fake.set_mode(mode)

    async with session.get(f"{fake.base_url}/health") as response:
        headers = response.headers

    assert headers["x-ratelimit-limit"] == "100"
    assert headers["x-ratelimit-reset"] == "60"
    expected_remaining = "0" if mode == "rate_limited" else "99"
    assert headers["x-ratelimit-remaining"] == expected_remaining


async def test_fake_rate_limit_counts_down(
    fake: FakeMeridianApi, session: aiohttp.ClientSession
) -> None:
    remaining = []
    for _ in range(3):
        async with session.get(f"{fake.base_url}/health") as response:
            remaining.append(response.headers["x-ratelimit-remaining"])

    fake.reset_rate_limit()
    async with session.get(f"{fake.base_url}/health") as response:
        after_reset = response.headers["x-ratelimit-remaining"]

    assert remaining == ["99", "98", "97"]
    assert after_reset == "99"


async def test_fake_records_requests(fake: FakeMeridianApi, client: MeridianApiClient) -> None:
    await client.health()
    await client.health()

    assert [request.path for request in fake.requests] == ["/health", "/health"]
    assert fake.requests_to("/metrics") == []


async def test_fake_rejects_unknown_mode(fake: FakeMeridianApi) -> None:
    with pytest.raises(ValueError, match="valid modes"):
        await fake.set_mode("sleepy")


async def test_slow_fake_stops_without_orphans(session: aiohttp.ClientSession) -> None:
    fake = FakeMeridianApi(mode="slow")
    await fake.start()
    request = asyncio.create_task(
        session.get(f"{fake.base_url}/health", timeout=aiohttp.ClientTimeout(total=30))
    )
    await fake.wait_for_requests(1)

    async with asyncio.timeout(5):
        await fake.stop()
        try:
            response = await request
        except aiohttp.ClientError:
            status = None
        else:
            status = response.status
            response.release()

    assert status in (503, None)
    other_tasks = asyncio.all_tasks() - {asyncio.current_task()}
    assert other_tasks == set()
