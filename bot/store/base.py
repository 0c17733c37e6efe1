"""The store's contract: runs, the audit log and delivery ids, shared by every implementation."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from bot.engine.audit import AuditEntry
from bot.engine.run import Run, RunState


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def insert_run(self, run: Run) -> None: ...

    async def save_run(self, run: Run, *, expected: Iterable[RunState] | None = None) -> bool:
        """Persist `run`; with `expected`, only when the stored state is one of those."""
        ...

    async def get_run(self, run_id: str) -> Run | None: ...

    async def list_runs(self, *, states: Iterable[RunState] | None = None, limit: int = 50) -> list[Run]: ...

    async def append_audit(self, entry: AuditEntry) -> None: ...

    async def list_audit(
        self,
        *,
        limit: int = 20,
        actor: str | None = None,
        procedure: str | None = None,
    ) -> list[AuditEntry]: ...

    async def claim_delivery(self, key: str) -> bool:
        """Record a delivery id; False when it was recorded before (a redelivery)."""
        ...


def dumps(value: Any) -> str:
    return json.dumps(value, default=_encode, sort_keys=True)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store a value of type {type(value).__name__}")
