"""Shared fixtures: the sandbox (Slack simulator, target fakes, the real bot) and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

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
