"""`meridian-bot shell` driven through standard input, as a script would use it."""

from __future__ import annotations

import os
import subprocess
import sys

TARGET_VARIABLES = (
    "MERIDIAN_API_URL",
    "MERIDIAN_FRONTEND_URL",
    "DATABASE_URL",
    "ETHEREUM_RPC_URL",
    "ETHEREUM_BACKUP_RPC_URL",
    "KUBECONFIG",
)


def run_shell(script: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in TARGET_VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "bot", "shell"],
        input=script,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_console_prints_health_report() -> None:
    result = run_shell("/meridian health\n")

    assert result.returncode == 0, result.stderr
    assert "local sandbox" in result.stdout
    assert "== Health check ==" in result.stdout
    assert "✅ *API /health* — ok · version 0.1.0" in result.stdout
    assert "✅ *Ethereum RPC* — ok · block" in result.stdout
    assert "*Completed* in" in result.stdout
    assert "Traceback" not in result.stderr


def test_console_scenario_and_usage() -> None:
    result = run_shell("scenario api-down\n/meridian health\n/meridian helth\nas approver\npress 9\nbogus\n")

    assert result.returncode == 0, result.stderr
    assert "🔴 *API /health* — down: Could not connect to the Meridian API" in result.stdout
    assert "Did you mean `/meridian health`?" in result.stdout
    assert "Now acting as U0APPROVER1 (approver)." in result.stdout
    assert "Usage: press N" in result.stdout
    assert "Unknown console command `bogus`" in result.stdout
