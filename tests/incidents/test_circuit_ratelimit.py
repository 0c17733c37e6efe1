"""`/meridian circuit` and `/meridian ratelimit`: the evidence in the logs and headers, and the next step."""

from __future__ import annotations

from bot.sandbox.environment import Sandbox
from bot.sandbox.scenarios import SCENARIOS
from tests.incidents.conftest import approve, button_labels, card_text, latest_run, press_button, thread_text


async def test_circuit_open_offers_restart(bot: Sandbox) -> None:
    await SCENARIOS["rpc-down"].apply(bot)

    await bot.command("circuit")

    run = await latest_run(bot)
    text = card_text(bot, run.id)
    transitions = thread_text(bot, run.id)
    assert run.state.value == "completed"
    assert "State from the logs — oracle open for" in text
    assert "opens after 5 failures, half-open after 30 s, closes after 2 successes" in text
    assert "There is no manual reset" in text
    assert "oracle: open" in transitions
    assert "oracle: half-open" in transitions
    assert button_labels(bot, run.id) == ["Rolling restart"]


async def test_circuit_closed_without_changes(bot: Sandbox) -> None:
    await bot.command("circuit")

    run = await latest_run(bot)
    assert "no state changes in the logs of 3 pods in the last hour" in card_text(bot, run.id)
    assert button_labels(bot, run.id) == []


async def test_circuit_restart_button_needs_approval(bot: Sandbox) -> None:
    await SCENARIOS["rpc-down"].apply(bot)
    await bot.command("circuit")
    circuit = await latest_run(bot)

    await press_button(bot, circuit.id, "Rolling restart", user=bot.users.operator)
    restart = await latest_run(bot)
    assert restart.procedure == "restart"
    assert restart.state.value == "waiting_for_approval"

    await approve(bot, restart.id)

    assert (await bot.runtime.store.get_run(restart.id)).state.value == "completed"


async def test_ratelimit_shows_headers_and_rate(bot: Sandbox) -> None:
    await SCENARIOS["rate-limited"].apply(bot)

    await bot.command("ratelimit")

    run = await latest_run(bot)
    text = card_text(bot, run.id)
    assert "x-ratelimit headers — GET /health: HTTP 429 · limit 100 · remaining 0 · reset 60 · Retry-After 30" in text
    assert "429 answers in the logs — 180 answers 429 in the last hour (18.3 a minute)" in text
    assert "Client addresses that received 429" in thread_text(bot, run.id)


async def test_ratelimit_healthy_api(bot: Sandbox) -> None:
    await bot.command("ratelimit")

    run = await latest_run(bot)
    text = card_text(bot, run.id)
    assert "HTTP 200 · limit 100 · remaining" in text
    assert "no 429 answers in the logs of 3 pods" in text


async def test_ratelimit_raise_refuses_lower_limit(bot: Sandbox) -> None:
    await bot.command("ratelimit raise 50")

    run = await latest_run(bot)
    assert run.state.value == "failed"
    assert "The API's limit is 100 now (x-ratelimit-limit), so 50 is no increase." in card_text(bot, run.id)


async def test_ratelimit_raise_rejects_long_increase(bot: Sandbox) -> None:
    await bot.command("ratelimit raise 500 --for 3d")

    run = await latest_run(bot)
    assert run.state.value == "failed"
    assert "--for: at most 1d" in card_text(bot, run.id)


async def test_restore_without_increase_does_nothing(bot: Sandbox) -> None:
    await bot.command("ratelimit restore")

    run = await latest_run(bot)
    assert run.state.value == "completed", "nothing to restore is a no-op, not a failure"
    assert "has no temporary rate-limit increase to restore" in card_text(bot, run.id)
    assert "Approve" not in card_text(bot, run.id)
