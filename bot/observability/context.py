"""Correlation ids carried through a command and its run by context variables."""

from __future__ import annotations

import secrets
from contextvars import ContextVar

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
run_id: ContextVar[str | None] = ContextVar("run_id", default=None)


def new_correlation_id() -> str:
    return secrets.token_hex(6)
