"""The console's `scenario crash-looping` and `/meridian pods`, as `make shell` runs them."""

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
    "KUBERNETES_SERVICE_HOST",
)


def test_console_crash_looping_pods() -> None:
    env = {key: value for key, value in os.environ.items() if key not in TARGET_VARIABLES}

    result = subprocess.run(
        [sys.executable, "-m", "bot", "shell"],
        input='scenario crash-looping\n/meridian pods\n/meridian logs --grep "pool exhausted" --tail 10\n',
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "Scenario crash-looping: the API's pods are in CrashLoopBackOff" in result.stdout
    assert "🔴 *Pods of the deployment* — 3 pods · 0 ready · CrashLoopBackOff ×3" in result.stdout
    assert "CrashLoopBackOff · api last exited: Error, exit code 101" in result.stdout
    assert "/pool exhausted/: 12 matching lines in 3 pods" in result.stdout
    assert "Traceback" not in result.stderr
