"""The bot's own state: runs, approvals, the audit log and delivery ids."""

from __future__ import annotations

from urllib.parse import urlsplit

from bot.store.base import Store


def open_store_for(url: str) -> Store:
    """Build the store named by BOT_STATE_URL (not yet opened)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        from bot.store.sqlite import SqliteStore

        # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them.
        path = url.removeprefix("sqlite:///") or ":memory:"
        return SqliteStore(path)
    # TODO: the PostgreSQL store for several replicas; until it exists, only sqlite:// starts.
    raise NotImplementedError("BOT_STATE_URL=postgresql://... is not supported yet: use sqlite:///PATH")
