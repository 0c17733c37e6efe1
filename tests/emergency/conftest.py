"""Fixtures for the emergency and paging commands: a PagerDuty fake and the sandbox wired to it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.pagerduty import FakePagerDuty
from tests.kubernetes.conftest import fast_rollouts, role_rules

ROUTING_KEY = "canary-routing-key-5c2e90aa"
WORKSPACE_URL = "http://127.0.0.1:9/workspace"  # only written into links, never requested


@pytest.fixture
async def pagerduty() -> AsyncIterator[FakePagerDuty]:
    async with FakePagerDuty() as fake:
        yield fake


def paging_settings(pagerduty: FakePagerDuty, **more: Any) -> dict[str, Any]:
    return {
        "pagerduty_routing_key": ROUTING_KEY,
        "pagerduty_events_url": pagerduty.events_url,
        "slack_workspace_url": WORKSPACE_URL,
        "rotation_watch": timedelta(milliseconds=50),
        **more,
    }


def emergency_sandbox(pagerduty: FakePagerDuty, *, database_url: str | None = None, **more: Any) -> Sandbox:
    return Sandbox(
        database_url=database_url,
        target_timeout=2.0,
        card_interval=0.02,
        on_bot_start=[fast_rollouts],
        settings_overrides=paging_settings(pagerduty, **more),
    )


@pytest.fixture
async def bot(pagerduty: FakePagerDuty, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Sandbox]:
    caplog.set_level(logging.DEBUG)
    async with emergency_sandbox(pagerduty) as sandbox:
        sandbox.kubernetes.enforce(role_rules())
        yield sandbox
