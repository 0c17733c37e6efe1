"""Socket Mode: the same card as over HTTP, and a redelivered envelope starts no second run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.sandbox.environment import OPS_CHANNEL, Sandbox
from tests.conftest import POSTGRES_URL


@pytest.fixture
async def socket_sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(database_url=POSTGRES_URL, via="socket", target_timeout=1.0) as running:
        yield running


def card_lines(text: str) -> list[str]:
    """Card lines without the parts that differ between runs (run id, timings)."""
    return [line.split("  _(")[0].split(" · ")[0].split(" in ")[0] for line in text.splitlines() if "Run `" not in line]


async def test_socket_card_matches_http(socket_sandbox: Sandbox, sandbox: Sandbox) -> None:
    over_socket = await socket_sandbox.command("health")
    over_http = await sandbox.command("health")

    assert over_socket.delivery.acknowledged
    assert card_lines(over_socket.card_text) == card_lines(over_http.card_text)
    assert "✅ *API /health* — ok" in over_socket.card_text


async def test_socket_redelivery_runs_once(socket_sandbox: Sandbox) -> None:
    first = await socket_sandbox.command("health")
    again = await socket_sandbox.driver.redeliver(first.delivery)
    await socket_sandbox.runtime.engine.wait_idle()

    assert again.acknowledged, "a redelivery is acked too, so Slack stops sending it"
    assert again.retry_attempt == 1
    assert len(socket_sandbox.slack.calls_to("chat.postMessage")) == 1
    assert len(await socket_sandbox.runtime.store.list_runs()) == 1
    assert len(socket_sandbox.api.requests_to("/health")) == 1


async def test_socket_usage_error_in_ack(socket_sandbox: Sandbox) -> None:
    outcome = await socket_sandbox.command("helth", channel=OPS_CHANNEL)

    assert "Did you mean" in outcome.reply_text
    assert outcome.cards == []
