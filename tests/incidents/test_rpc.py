"""Oracle RPC against real local Ethereum nodes (ganache) and an HTTP fake for the failure modes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.clients.kubernetes.env import read_env
from bot.clients.kubernetes.models import Deployment
from bot.sandbox.environment import Sandbox
from tests.incidents.conftest import approve, card_text, latest_run
from tests.kubernetes.conftest import fast_rollouts, role_rules


def rpc_sandbox(primary: str, backup: str) -> Sandbox:
    return Sandbox(
        database_url=None,
        target_timeout=2.0,
        card_interval=0.02,
        on_bot_start=[fast_rollouts],
        settings_overrides={"ethereum_rpc_url": primary, "ethereum_backup_rpc_url": backup},
    )


@pytest.fixture
async def ganache_bot(live_chain: str, stale_chain: str) -> AsyncIterator[Sandbox]:
    """The primary is a current ganache chain, the backup a stale one."""
    async with rpc_sandbox(live_chain, stale_chain) as sandbox:
        sandbox.kubernetes.enforce(role_rules())
        yield sandbox


async def test_status_of_real_nodes(ganache_bot: Sandbox) -> None:
    await ganache_bot.command("rpc status")

    run = await latest_run(ganache_bot)
    text = card_text(ganache_bot, run.id)
    primary, backup = run.outputs["primary"], run.outputs["backup"]
    assert primary["reachable"] is True
    assert primary["stale"] is False
    assert primary["age_seconds"] < 30
    assert backup["stale"] is True
    assert backup["age_seconds"] > 7_000
    assert "Primary RPC (ETHEREUM_RPC_URL) — ok · block" in text
    assert "Backup RPC (ETHEREUM_BACKUP_RPC_URL) — stale: block 0 · 2h" in text


async def test_switch_refuses_stale_backup(ganache_bot: Sandbox) -> None:
    await ganache_bot.command("rpc switch-to-backup")

    run = await latest_run(ganache_bot)
    assert run.state.value == "failed"
    assert "The backup endpoint is not healthy" in card_text(ganache_bot, run.id)
    assert ganache_bot.kubernetes.patches == []


async def test_investigation_with_stale_primary(stale_chain: str, live_chain: str) -> None:
    async with rpc_sandbox(stale_chain, live_chain) as sandbox:
        await sandbox.command("investigate oracle-rpc")

        run = await latest_run(sandbox)
        text = card_text(sandbox, run.id)
        assert "Primary RPC (ETHEREUM_RPC_URL) — stale: block 0" in text
        assert "RPC provider issue: switch to the backup endpoint" in text


async def test_switch_to_backup_and_back(live_chain: str) -> None:
    """The backup is a real node; the primary is the HTTP fake, switched into its failure modes."""
    overrides = {"ethereum_backup_rpc_url": live_chain}
    async with Sandbox(database_url=None, target_timeout=2.0, card_interval=0.02, on_bot_start=[fast_rollouts], settings_overrides=overrides) as sandbox:
        sandbox.kubernetes.enforce(role_rules())
        await sandbox.rpc.set_mode("rate_limited")

        await sandbox.command("rpc status")
        status = await latest_run(sandbox)
        assert "rate limiting the bot (HTTP 429)" in card_text(sandbox, status.id)
        assert status.outputs["primary"]["rate_limited"] is True

        await sandbox.command("rpc switch-to-backup")
        switch = await latest_run(sandbox)
        assert "Switch meridian/meridian-api to the backup Ethereum RPC endpoint" in card_text(sandbox, switch.id)
        await approve(sandbox, switch.id)

        deployment = Deployment.from_json(sandbox.kubernetes.deployment.document)
        assert (await sandbox.runtime.store.get_run(switch.id)).state.value == "completed"
        assert read_env(deployment, "ETHEREUM_RPC_URL").value == live_chain
        assert deployment.annotations["meridian-bot/ethereum-rpc-endpoint"] == "backup"

        await sandbox.command("rpc switch-to-backup")
        again = await latest_run(sandbox)
        assert "already uses the backup endpoint" in card_text(sandbox, again.id)
        assert again.state.value == "completed", "switching to where it already is, is a no-op"

        await sandbox.rpc.set_mode("healthy")
        await sandbox.command("rpc switch-to-primary")
        back = await latest_run(sandbox)
        await approve(sandbox, back.id)

        deployment = Deployment.from_json(sandbox.kubernetes.deployment.document)
        assert (await sandbox.runtime.store.get_run(back.id)).state.value == "completed"
        assert read_env(deployment, "ETHEREUM_RPC_URL").value == sandbox.rpc.base_url
        assert deployment.annotations["meridian-bot/ethereum-rpc-endpoint"] == "primary"
