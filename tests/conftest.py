"""Shared fixtures: the sandbox (Slack simulator, target fakes, the real bot) and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bot.sandbox.environment import Sandbox

# The PostgreSQL server of the development machines and CI (trust authentication).
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(database_url=POSTGRES_URL, target_timeout=1.0) as running:
        yield running


def closed_port() -> int:
    """A loopback port nothing listens on: bound, read and released."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def unreachable_database_sandbox() -> AsyncIterator[Sandbox]:
    url = f"postgresql://meridian:canary-password@127.0.0.1:{closed_port()}/meridian"
    async with Sandbox(database_url=url, target_timeout=1.0) as running:
        yield running


@pytest.fixture
async def no_database_sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(database_url=None, target_timeout=1.0) as running:
        yield running


@contextlib.asynccontextmanager
async def new_postgres_database() -> AsyncIterator[str]:
    """Create an empty database on the test server, yield its URL, then drop it."""
    import secrets

    import asyncpg

    name = f"meridian_bot_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def postgres_database() -> AsyncIterator[str]:
    async with new_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def state_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    """BOT_STATE_URL for each store the bot supports: a SQLite file, and a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.sqlite3"
        return
    async with new_postgres_database() as url:
        yield url


# Secrets the Kubernetes fake's Secret holds and test database passwords: no Slack call and no
# log line of the whole suite may contain them.
CANARY_SECRETS = (
    "canary-jwt-secret-0c9e2b7d41",
    "canary-session-salt-5a1f88e0",
    "canary-api-key-salt-93d04c6b",
    "canary-api-db-password-71be",
    "canary-password",
)


class _CanaryLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            return
        if any(canary in text for canary in CANARY_SECRETS):
            self.leaks.append(text[:300])


_fake_slacks: list[Any] = []


def _track_fake_slack() -> None:
    from bot.sandbox.slack.web_api import FakeSlack

    original = FakeSlack.__init__

    def tracking_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _fake_slacks.append(self)

    FakeSlack.__init__ = tracking_init  # type: ignore[method-assign]


_track_fake_slack()


@pytest.fixture(autouse=True)
def no_canary_leaks() -> Iterator[None]:
    """Fail a test whose Slack calls or log lines contain a canary secret."""
    handler = _CanaryLog()
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    bot_logger = logging.getLogger("bot")
    saved_level = bot_logger.level
    bot_logger.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    _fake_slacks.clear()
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        bot_logger.setLevel(saved_level)
    slack_leaks = [
        f"{call.method}: {json.dumps(call.params, default=str)[:300]}"
        for fake in _fake_slacks
        for call in fake.calls
        if any(canary in json.dumps(call.params, default=str) for canary in CANARY_SECRETS)
    ]
    assert not slack_leaks, f"a canary secret reached Slack: {slack_leaks}"
    assert not handler.leaks, f"a canary secret reached the log: {handler.leaks}"
