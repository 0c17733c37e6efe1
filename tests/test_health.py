"""`/meridian health` end to end: a signed slash command in, one run card out."""

from __future__ import annotations

import pytest

from bot.sandbox.environment import Sandbox

HEALTHY_LINES = (
    "✅ API /health — ok · version 0.1.0 · oracle enabled · 5 baskets",
    "✅ Database — ok · PostgreSQL 15",
    "✅ Ethereum RPC — ok · block 19,0",
    "✅ Frontend /api/health — ok",
)


def plain(text: str) -> str:
    return text.replace("*", "")


async def test_health_all_healthy(sandbox: Sandbox) -> None:
    outcome = await sandbox.command("health")

    assert outcome.delivery.status == 200
    text = plain(outcome.card_text)
    for line in HEALTHY_LINES:
        assert line in text
    assert "Completed in" in text
    assert "critical" not in text


async def test_health_updates_one_card(sandbox: Sandbox) -> None:
    outcome = await sandbox.command("health")

    assert len(outcome.cards) == 1
    assert len(sandbox.slack.calls_to("chat.postMessage")) == 1
    assert outcome.card.versions, "the card is updated in place, not posted again"


@pytest.mark.parametrize(
    ("fake", "mode", "expected"),
    [
        ("api", "unhealthy", "🔴 API /health — unhealthy: database connection failed (HTTP 503"),
        ("api", "down", "🔴 API /health — down: Could not connect to the Meridian API"),
        ("api", "slow", "🔴 API /health — down:"),
        ("api", "error", "🔴 API /health — down: The Meridian API returned HTTP 500"),
        ("rpc", "garbage", "🔴 Ethereum RPC — down:"),
        ("rpc", "stale", "🔴 Ethereum RPC — stale: block"),
        ("frontend", "down", "🔴 Frontend /api/health — down:"),
    ],
)
async def test_health_reports_failing_target(sandbox: Sandbox, fake: str, mode: str, expected: str) -> None:
    await getattr(sandbox, fake).set_mode(mode)

    outcome = await sandbox.command("health")

    text = plain(outcome.card_text)
    assert expected in text
    assert "Completed in" in text
    assert "1 critical" in text
    healthy_others = [line for line in HEALTHY_LINES if not line.split(" — ")[0].endswith(expected.split(" — ")[0][2:])]
    for line in healthy_others:
        assert line in text


async def test_health_slow_api_names_timeout(sandbox: Sandbox) -> None:
    await sandbox.api.set_mode("slow")

    outcome = await sandbox.command("health")

    assert "within 1 s" in outcome.card_text or "timed out" in outcome.card_text.lower()


async def test_health_rpc_garbage_is_invalid_response(sandbox: Sandbox) -> None:
    await sandbox.rpc.set_mode("garbage")

    outcome = await sandbox.command("health")

    line = next(line for line in plain(outcome.card_text).splitlines() if "Ethereum RPC" in line)
    assert "not JSON" in line or "invalid" in line.lower()
    assert "<!channel>" not in outcome.card.blocks.__repr__()


async def test_health_database_unreachable(unreachable_database_sandbox: Sandbox) -> None:
    outcome = await unreachable_database_sandbox.command("health")

    text = plain(outcome.card_text)
    assert "🔴 Database — down:" in text
    assert "✅ API /health — ok" in text
    assert "✅ Ethereum RPC — ok" in text


async def test_health_target_not_configured(no_database_sandbox: Sandbox) -> None:
    outcome = await no_database_sandbox.command("health")

    assert "⏩ Database — not configured (set DATABASE_URL)" in plain(outcome.card_text)
    assert "Completed in" in plain(outcome.card_text)


async def test_health_run_and_audit_stored(sandbox: Sandbox) -> None:
    await sandbox.command("health")

    runs = await sandbox.runtime.store.list_runs()
    assert [run.procedure for run in runs] == ["health"]
    assert runs[0].state.value == "completed"
    assert runs[0].requester == sandbox.users.operator
    audit = await sandbox.runtime.store.list_audit()
    assert [entry.action for entry in reversed(audit)] == ["requested", "finished"]
    assert all(entry.run_id == runs[0].id for entry in audit)


async def test_health_dry_run_checks_nothing(sandbox: Sandbox) -> None:
    outcome = await sandbox.command("health --dry-run")

    assert "Dry run" in outcome.card_text
    assert sandbox.api.requests_to("/health") == []
    assert sandbox.rpc.requests == []
