"""FrontendClient against FakeFrontend in each of its modes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.clients.frontend import FrontendClient, FrontendHealth
from bot.errors import TargetError, TargetResponseInvalid, TargetTimeout, TargetUnavailable
from bot.sandbox.fakes.frontend import FakeFrontend

CLIENT_TIMEOUT = 0.5


@pytest.fixture
async def fake() -> AsyncIterator[FakeFrontend]:
    async with FakeFrontend() as server:
        yield server


@pytest.fixture
async def client(fake: FakeFrontend) -> AsyncIterator[FrontendClient]:
    async with aiohttp.ClientSession() as session:
        yield FrontendClient(base_url=fake.base_url, session=session, timeout=CLIENT_TIMEOUT)


async def test_health_healthy_report(fake: FakeFrontend, client: FrontendClient) -> None:
    health = await client.health()

    assert health == FrontendHealth(
        status="ok", http_status=200, latency_seconds=health.latency_seconds
    )
    assert health.is_healthy
    assert [request.path for request in fake.requests] == ["/api/health"]


async def test_health_unhealthy_is_result(fake: FakeFrontend, client: FrontendClient) -> None:
    await fake.set_mode("unhealthy")

    health = await client.health()

    assert health.status == "unhealthy"
    assert health.http_status == 503
    assert not health.is_healthy


@pytest.mark.parametrize(
    ("mode", "error_class", "expected_text"),
    [
        ("down", TargetUnavailable, "Could not connect to the frontend"),
        ("slow", TargetTimeout, f"within {CLIENT_TIMEOUT:g} seconds"),
        ("error", TargetUnavailable, "HTTP 500"),
        ("garbage", TargetResponseInvalid, "the body is not JSON"),
    ],
)
async def test_health_failure_modes(
    fake: FakeFrontend,
    client: FrontendClient,
    mode: str,
    error_class: type[TargetError],
    expected_text: str,
) -> None:
    await fake.set_mode(mode)

    with pytest.raises(error_class) as caught:
        await client.health()

    assert type(caught.value) is error_class
    assert expected_text in caught.value.message
    assert caught.value.target == "frontend"
    assert caught.value.message.isprintable()


async def test_health_recovers_after_down(fake: FakeFrontend, client: FrontendClient) -> None:
    await fake.set_mode("down")
    with pytest.raises(TargetUnavailable):
        await client.health()

    await fake.set_mode("healthy")

    assert (await client.health()).status == "ok"


async def test_fake_starts_down_on_fixed_port() -> None:
    async with FakeFrontend(mode="down") as fake:
        port = fake.port
        await fake.set_mode("healthy")

        async with aiohttp.ClientSession() as session:
            client = FrontendClient(base_url=fake.base_url, session=session, timeout=CLIENT_TIMEOUT)
            health = await client.health()

    assert fake.port == port
    assert health.status == "ok"
