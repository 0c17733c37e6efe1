"""Fixtures for the Kubernetes procedures: the sandbox with its Kubernetes fake enforcing deploy/role.yaml.

Every test here runs against a fake that authorizes each call with the Role's rules, so a
command that needs a permission the Role lacks fails its own test with a 403. The calls of
every test are also collected in `SESSION_CALLS`, which test_role.py checks again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.runtime import Runtime
from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.kubernetes import ApiCall

ROLE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "role.yaml"

# The API calls of every Kubernetes test in this session, in the order the tests ran.
SESSION_CALLS: list[ApiCall] = []


def role_rules() -> list[dict[str, Any]]:
    return yaml.safe_load(ROLE_FILE.read_text(encoding="utf-8"))["rules"]


def fast_rollouts(runtime: Runtime) -> None:
    """Poll rollouts every 10 ms and give up after 5 s, so no test waits for the defaults."""
    cluster = runtime.targets.kubernetes
    assert cluster is not None
    cluster.poll_interval = 0.01
    cluster.rollout_timeout = 5.0


@pytest.fixture
async def kube() -> AsyncIterator[Sandbox]:
    sandbox = Sandbox(database_url=None, target_timeout=2.0, card_interval=0.02, on_bot_start=[fast_rollouts])
    async with sandbox:
        sandbox.kubernetes.enforce(role_rules())
        try:
            yield sandbox
        finally:
            # A test that turned the Role off made calls outside it on purpose.
            if sandbox.kubernetes.rules is not None:
                SESSION_CALLS.extend(sandbox.kubernetes.calls)
