"""`/meridian investigate ...`: each investigation on the scenario of its incident finds the cause
and offers the right resolution, and a resolution button leads through approval to the action."""

from __future__ import annotations

import asyncpg

from bot.clients.kubernetes.env import read_env
from bot.clients.kubernetes.models import Deployment
from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.kubernetes.logs import ATTACKER_ADDRESS
from bot.sandbox.meridian_schema import ApiSessions
from bot.sandbox.scenarios import SCENARIOS
from tests.incidents.conftest import (
    approve,
    button_labels,
    card_text,
    investigate,
    latest_run,
    press_button,
    thread_text,
)

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def deployment_of(sandbox: Sandbox) -> Deployment:
    return Deployment.from_json(sandbox.kubernetes.deployment.document)


# INC-001


async def test_api_unresponsive_points_to_restart(bot: Sandbox) -> None:
    await SCENARIOS["crash-looping"].apply(bot)

    run = await investigate(bot, "investigate api-unresponsive")

    text = card_text(bot, run.id)
    assert run.state.value == "completed"
    assert "Pod status — 0 of 3 pods ready" in text
    assert "CrashLoopBackOff" in text
    assert '"pool exhausted"' in text
    assert "API /health — down: Could not connect" in text
    assert "Findings — Database pool exhausted: restart the pods to clear its connections → `restart`" in text
    assert "Rolling restart" in button_labels(bot, run.id)
    assert "pool exhausted" in thread_text(bot, run.id)


async def test_alias_runs_same_investigation(bot: Sandbox) -> None:
    run = await investigate(bot, "investigate inc-001")

    assert run.procedure == "investigate-api-unresponsive"
    assert "The API looks healthy: no sign of INC-001" in card_text(bot, run.id)
    assert button_labels(bot, run.id) == []


async def test_restart_button_leads_through_approval(bot: Sandbox) -> None:
    await SCENARIOS["crash-looping"].apply(bot)
    investigation = await investigate(bot, "investigate api-unresponsive")

    reply = await press_button(bot, investigation.id, "Rolling restart", user=bot.users.operator)

    restart = await latest_run(bot)
    assert reply == ""
    assert restart.procedure == "restart"
    assert restart.requester == bot.users.operator
    assert restart.state.value == "waiting_for_approval"
    assert bot.kubernetes.patches == []

    bot.kubernetes.scenario("healthy")  # the restart clears the pool: new pods are healthy
    await approve(bot, restart.id)

    (resource, _, patch), = bot.kubernetes.patches
    assert resource == "deployments"
    assert RESTARTED_AT in patch["spec"]["template"]["metadata"]["annotations"]
    assert (await bot.runtime.store.get_run(restart.id)).state.value == "completed"


async def test_viewer_cannot_start_resolution(bot: Sandbox) -> None:
    await SCENARIOS["crash-looping"].apply(bot)
    investigation = await investigate(bot, "investigate api-unresponsive")

    reply = await press_button(bot, investigation.id, "Rolling restart", user=bot.users.viewer)

    assert "operator" in reply.lower()
    assert (await latest_run(bot)).id == investigation.id


async def test_unreachable_steps_reported_rest_runs(bot: Sandbox) -> None:
    await bot.kubernetes.set_mode("down")
    await bot.api.set_mode("down")

    run = await investigate(bot, "investigate api-unresponsive")

    text = card_text(bot, run.id)
    assert run.state.value == "completed"
    assert "Pod status — could not run: Could not connect to the Kubernetes API" in text
    assert "API /health — down" in text
    assert "Not checked: pods: Could not connect to the Kubernetes API" in thread_text(bot, run.id)


# INC-002


async def test_db_pool_offers_kill_of_idle_session(db_bot: Sandbox, meridian) -> None:
    await db_bot.api.set_mode("pool_exhausted")
    sessions = ApiSessions(url=meridian.app_url, sleep_seconds=60)
    try:
        stuck = await sessions.idle_in_transaction()
        pid = stuck.get_server_pid()

        run = await investigate(db_bot, "investigate db-pool")

        text = card_text(db_bot, run.id)
        assert run.state.value == "completed"
        assert "pg_stat_activity by state" in text
        assert "idle in transaction 1" in text
        assert "API /health — unhealthy: database connection failed" in text
        assert f"Terminate {pid}" in button_labels(db_bot, run.id)
        assert "Rolling restart" in button_labels(db_bot, run.id)
        assert "Sessions hold the pool" in text

        await press_button(db_bot, run.id, f"Terminate {pid}", user=db_bot.users.operator)
        kill = await latest_run(db_bot)
        assert kill.procedure == "db-kill"
        assert kill.args == {"pid": pid, "terminate": True}
        assert kill.state.value == "waiting_for_approval"

        await approve(db_bot, kill.id)

        assert (await db_bot.runtime.store.get_run(kill.id)).state.value == "completed"
        admin = await asyncpg.connect(meridian.admin_url)
        try:
            assert await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid) == 0
        finally:
            await admin.close()
    finally:
        await sessions.close()


async def test_db_pool_scenario_without_database(bot: Sandbox) -> None:
    await SCENARIOS["pool-exhausted"].apply(bot)

    run = await investigate(bot, "investigate inc-002")

    text = card_text(bot, run.id)
    assert run.state.value == "completed"
    assert "pg_stat_activity by state — not configured (set DATABASE_URL)" in text
    assert "Pool metrics — pool 10/10 in use, 0 idle (100% in use)" in text
    assert "Pool exhausted without a blocking session" in text
    assert button_labels(bot, run.id) == ["Rolling restart"]


# INC-003


async def test_oracle_rpc_down_offers_backup(bot: Sandbox) -> None:
    await SCENARIOS["rpc-down"].apply(bot)

    run = await investigate(bot, "investigate oracle-rpc")

    text = card_text(bot, run.id)
    assert "Primary RPC (ETHEREUM_RPC_URL) — down: Could not connect" in text
    assert "Backup RPC (ETHEREUM_BACKUP_RPC_URL) — ok · block" in text
    assert "oracle open" in text
    assert "RPC provider issue: switch to the backup endpoint → `rpc switch-to-backup`" in text
    assert button_labels(bot, run.id) == ["Switch to the backup RPC"]


async def test_oracle_rpc_stale_is_flagged(bot: Sandbox) -> None:
    await SCENARIOS["rpc-stale"].apply(bot)

    run = await investigate(bot, "investigate inc-003")

    text = card_text(bot, run.id)
    assert "Primary RPC (ETHEREUM_RPC_URL) — stale: block" in text
    assert " · 1h" in text  # the block is an hour old, give or take a second
    assert button_labels(bot, run.id) == ["Switch to the backup RPC"]


async def test_switch_button_sets_backup_url(bot: Sandbox) -> None:
    await SCENARIOS["rpc-down"].apply(bot)
    investigation = await investigate(bot, "investigate oracle-rpc")

    await press_button(bot, investigation.id, "Switch to the backup RPC", user=bot.users.operator)
    switch = await latest_run(bot)
    assert switch.procedure == "rpc-switch-to-backup"
    assert "ETHEREUM_RPC_URL: unset → the backup endpoint" in card_text(bot, switch.id)
    await approve(bot, switch.id)

    setting = read_env(deployment_of(bot), "ETHEREUM_RPC_URL")
    assert (await bot.runtime.store.get_run(switch.id)).state.value == "completed"
    assert setting.value == bot.backup_rpc.base_url
    assert bot.backup_rpc.base_url not in card_text(bot, switch.id).replace(f"http://127.0.0.1:{bot.backup_rpc.port}", "")


# INC-004


async def test_rate_limit_spike_offers_raise(bot: Sandbox) -> None:
    await SCENARIOS["rate-limited"].apply(bot)

    run = await investigate(bot, "investigate rate-limit")

    text = card_text(bot, run.id)
    assert "x-ratelimit headers — GET /health: HTTP 429 · limit 100 · remaining 0" in text
    assert "answers 429 in the last hour" in text
    assert "Legitimate traffic spike" in text
    assert button_labels(bot, run.id) == ["Raise to 200 for 1h"]


async def test_rate_limit_attack_lists_addresses(bot: Sandbox) -> None:
    await SCENARIOS["rate-limit-attack"].apply(bot)

    run = await investigate(bot, "investigate inc-004")

    text = card_text(bot, run.id)
    findings = thread_text(bot, run.id)
    assert "Attack from a few addresses: block them at the load balancer (the bot cannot)" in text
    assert f"busiest client {ATTACKER_ADDRESS}" in text
    assert "The bot cannot block addresses" in findings
    assert ATTACKER_ADDRESS in findings
    assert button_labels(bot, run.id) == []


async def test_raise_button_then_restore(bot: Sandbox) -> None:
    await SCENARIOS["rate-limited"].apply(bot)
    investigation = await investigate(bot, "investigate rate-limit")

    await press_button(bot, investigation.id, "Raise to 200 for 1h", user=bot.users.operator)
    raise_run = await latest_run(bot)
    assert raise_run.procedure == "ratelimit-raise"
    await approve(bot, raise_run.id)

    deployment = deployment_of(bot)
    assert (await bot.runtime.store.get_run(raise_run.id)).state.value == "completed"
    assert read_env(deployment, "RATE_LIMIT_PER_MINUTE").value == "200"
    assert deployment.annotations["meridian-bot/rate-limit-previous"] == "null"

    await bot.command("ratelimit restore")
    restore = await latest_run(bot)
    await approve(bot, restore.id)

    deployment = deployment_of(bot)
    assert (await bot.runtime.store.get_run(restore.id)).state.value == "completed"
    assert not read_env(deployment, "RATE_LIMIT_PER_MINUTE").is_set
    assert "meridian-bot/rate-limit-until" not in deployment.annotations
