"""`meridian-bot check-config`: one line per target, exit 1 when a configured one is down."""

from __future__ import annotations

import io

from bot.check_config import check_config
from bot.sandbox.environment import Sandbox


async def test_all_targets_answer(sandbox: Sandbox) -> None:
    out = io.StringIO()

    code = await check_config(sandbox.settings, out=out)

    report = out.getvalue()
    assert code == 0, report
    assert "ok   Slack Web API: workspace T0SANDBOX, bot user U0BOT" in report
    assert "ok   Meridian API: /health says ok" in report
    assert "ok   Database: PostgreSQL 15" in report
    assert "ok   Ethereum RPC (primary): block 19,000,000" in report
    assert "ok   Kubernetes: deployment meridian/meridian-api at revision" in report
    assert "Every configured target answered." in report


async def test_down_target_fails_check(no_database_sandbox: Sandbox) -> None:
    await no_database_sandbox.rpc.set_mode("down")
    out = io.StringIO()

    code = await check_config(no_database_sandbox.settings, out=out)

    report = out.getvalue()
    assert code == 1
    assert "FAIL Ethereum RPC (primary): " in report
    assert "--   Database: not configured (DATABASE_URL)" in report
    assert "1 target(s) could not be reached: Ethereum RPC (primary)." in report


async def test_report_has_no_secrets(no_database_sandbox: Sandbox) -> None:
    from pydantic import SecretStr

    from tests.conftest import closed_port

    key_url = f"http://127.0.0.1:{closed_port()}/v3/canary-api-key-123"
    settings = no_database_sandbox.settings.model_copy(update={"ethereum_rpc_url": SecretStr(key_url)})
    out = io.StringIO()

    code = await check_config(settings, out=out)

    assert code == 1
    assert "FAIL Ethereum RPC (primary)" in out.getvalue()
    assert "canary-api-key-123" not in out.getvalue()
