"""Durations (`30s`, `15m`, `2h`, `7d`) and points in time (ISO 8601 UTC or `-2h`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bot.errors import UsageError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_DURATION = re.compile(r"(\d+)([smhd])")
# Ten years: longer durations are typing mistakes, and would overflow datetime arithmetic.
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    """Parse `90s`, `15m`, `2h`, `7d` or a combination such as `1h30m`."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(f"{n}{u}" for n, u in parts) != cleaned:
        raise UsageError(
            f"`{text}` is not a duration.",
            hint="Write a number followed by s, m, h or d, for example `30s`, `15m`, `2h` or `7d`.",
        )
    try:
        total = sum((timedelta(**{_UNITS[unit]: int(number)}) for number, unit in parts), timedelta())
    except OverflowError:
        total = MAX_DURATION + timedelta(days=1)
    if total > MAX_DURATION:
        raise UsageError(f"`{text}` is longer than the maximum of {MAX_DURATION.days} days.")
    return total


def format_duration(value: timedelta) -> str:
    """Format a duration compactly: `45s`, `12m 3s`, `2h 5m`, `3d 4h`."""
    seconds = int(value.total_seconds())
    if seconds < 0:
        return "-" + format_duration(-value)
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    shown = [f"{amount}{unit}" for amount, unit in units if amount]
    return " ".join(shown[:2]) or "0s"


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """Parse an ISO 8601 UTC time (`2026-12-04T12:00:00Z`) or one relative to now (`-2h`)."""
    now = now or datetime.now(UTC)
    cleaned = text.strip()
    if cleaned.startswith("-"):
        return now - parse_duration(cleaned[1:])

    try:
        parsed = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"`{text}` is not a time.",
            hint="Write ISO 8601 in UTC such as `2026-12-04T12:00:00Z`, or a time before now such as `-2h`.",
        ) from None
    if parsed.tzinfo is None:
        raise UsageError(
            f"`{text}` has no time zone.",
            hint="Add `Z` for UTC, for example `2026-12-04T12:00:00Z`.",
        )
    return parsed.astimezone(UTC)
