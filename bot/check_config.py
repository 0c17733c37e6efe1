"""`meridian-bot check-config`: reach every configured target and print one line for each."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

from slack_sdk.errors import SlackApiError

from bot.config import Settings
from bot.errors import BotError
from bot.observability.redaction import redactor
from bot.runtime import build_slack_client
from bot.store import open_store_for
from bot.targets import Targets

CHECK_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    ok: bool | None  # None: not configured
    detail: str


async def _check(name: str, probe: Callable[[], Awaitable[str]] | None, missing: str) -> CheckOutcome:
    if probe is None:
        return CheckOutcome(name, None, f"not configured ({missing})")
    try:
        detail = await asyncio.wait_for(probe(), timeout=CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return CheckOutcome(name, False, f"no answer within {CHECK_TIMEOUT_SECONDS:g} s")
    except BotError as error:
        return CheckOutcome(name, False, error.user_message)
    except SlackApiError as error:
        return CheckOutcome(name, False, f"Slack answered {error.response.get('error')}")
    except OSError as error:
        return CheckOutcome(name, False, f"could not connect ({error.strerror or error})")
    return CheckOutcome(name, True, detail)


async def check_config(settings: Settings, *, out: TextIO = sys.stdout) -> int:
    """Print a report and return 0 when every configured target answered, else 1."""
    targets = Targets.from_settings(settings)
    slack = build_slack_client(settings)

    async def slack_probe() -> str:
        response = await slack.auth_test()
        return f"workspace {response['team_id']}, bot user {response['user_id']}"

    async def store_probe() -> str:
        store = open_store_for(settings.bot_state_url)
        await store.open()
        await store.close()
        return "opened and migrated"

    async def api_probe() -> str:
        health = await targets.meridian_api.health()
        return f"/health says {health.status}" + (f" ({health.error})" if health.error else "")

    async def frontend_probe() -> str:
        health = await targets.frontend.health()
        return f"/api/health says {health.status}"

    async def database_probe() -> str:
        ping = await targets.database.ping()
        return f"PostgreSQL {ping.server_version}"

    async def kubernetes_probe() -> str:
        deployment = await targets.kubernetes.read_deployment()
        return (
            f"deployment {deployment.namespace}/{deployment.name} at revision {deployment.revision}, "
            f"{deployment.ready_replicas}/{deployment.replicas} ready"
        )

    async def rpc_probe(which: str) -> str:
        rpc = targets.rpc_primary if which == "primary" else targets.rpc_backup
        return f"block {await rpc.block_number():,}"

    try:
        outcomes = await asyncio.gather(
            _check("Slack Web API", slack_probe, "SLACK_BOT_TOKEN"),
            _check("Bot state", store_probe, "BOT_STATE_URL"),
            _check("Meridian API", api_probe if targets.meridian_api else None, "MERIDIAN_API_URL"),
            _check("Frontend", frontend_probe if targets.frontend else None, "MERIDIAN_FRONTEND_URL"),
            _check("Database", database_probe if targets.database else None, "DATABASE_URL"),
            _check("Ethereum RPC (primary)", (lambda: rpc_probe("primary")) if targets.rpc_primary else None, "ETHEREUM_RPC_URL"),
            _check("Ethereum RPC (backup)", (lambda: rpc_probe("backup")) if targets.rpc_backup else None, "ETHEREUM_BACKUP_RPC_URL"),
            _check("Kubernetes", kubernetes_probe if targets.kubernetes else None, "KUBECONFIG or in-cluster service account"),
        )
    finally:
        await targets.close()
        if slack.session is not None:
            await slack.session.close()

    marks = {True: "ok  ", False: "FAIL", None: "--  "}
    print("Settings are valid.", file=out)
    for outcome in outcomes:
        print(redactor.scrub(f"{marks[outcome.ok]} {outcome.name}: {outcome.detail}"), file=out)
    failed = [outcome.name for outcome in outcomes if outcome.ok is False]
    if failed:
        print(f"{len(failed)} target(s) could not be reached: {', '.join(failed)}.", file=out)
        return 1
    print("Every configured target answered.", file=out)
    return 0
