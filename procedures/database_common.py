"""Helpers shared by the database procedures: the client, durations and plain-text tables."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from bot.clients.database import Database
from bot.durations import format_duration
from bot.engine.context import NotConfigured, StepContext

# Each database call has its own connect and statement timeouts; this bounds a whole step.
STEP_TIMEOUT_SECONDS = 30.0
QUERY_PREVIEW_CHARS = 200
_WHITESPACE = re.compile(r"\s+")


def database(ctx: StepContext) -> Database:
    client = ctx.targets.database
    if client is None:
        raise NotConfigured("not configured (set DATABASE_URL)")
    return client


def age(value: timedelta | None) -> str:
    return format_duration(value) if value is not None else "-"


def shorten(query: str, limit: int = QUERY_PREVIEW_CHARS) -> str:
    """Collapse whitespace and cut the text to `limit` characters, marking the cut with …."""
    flat = _WHITESPACE.sub(" ", query).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Format rows as left-aligned columns under their headers."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in [list(headers), *cells]) for column in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in [list(headers), *cells]]
    return "\n".join(lines)
