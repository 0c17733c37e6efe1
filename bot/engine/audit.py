"""Audit records: who did what, where, when, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.engine.run import utcnow


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str  # requested, started, finished, approved, denied, cancelled, expired, interrupted
    run_id: str | None
    procedure: str | None
    channel_id: str | None
    outcome: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)
