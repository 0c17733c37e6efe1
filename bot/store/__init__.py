"""The bot's own state: runs, approvals, locks, leases, the audit log and delivery ids."""

from __future__ import annotations

from urllib.parse import urlsplit

from bot.store.base import Store
from bot.store.connections import PostgresConnection, SqliteConnection
from bot.store.sql import SqlStore


def open_store_for(url: str) -> Store:
    """Build the store named by BOT_STATE_URL (not yet opened).

    `sqlite:///relative/path`, `sqlite:////absolute/path` and `sqlite:///:memory:` name SQLite
    files as SQLAlchemy spells them; `postgresql://...` is a libpq URL.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return SqlStore(SqliteConnection(url.removeprefix("sqlite:///") or ":memory:"))
    return SqlStore(PostgresConnection(url))
