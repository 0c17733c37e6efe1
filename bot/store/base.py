"""The store's contract: runs, approvals, locks, leases, the audit log and delivery ids."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.engine.audit import AuditEntry
from bot.engine.run import Run, RunState


@dataclass(frozen=True)
class Approval:
    run_id: str
    approver: str
    digest: str
    at: datetime


class Unchanged:
    """Marker for a column that `save_run` leaves as it is."""


UNCHANGED = Unchanged()


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def insert_run(self, run: Run) -> None: ...

    async def save_run(
        self,
        run: Run,
        *,
        expected: Iterable[RunState] | None = None,
        owner: str | None | Unchanged = UNCHANGED,
        lease_expires: float | None | Unchanged = UNCHANGED,
        expires_at: float | None | Unchanged = UNCHANGED,
    ) -> bool:
        """Persist `run`; with `expected`, only when the stored state is one of those.

        Returns whether the row was written, so a transition has exactly one winner.
        """
        ...

    async def get_run(self, run_id: str) -> Run | None: ...

    async def run_expiry(self, run_id: str) -> float | None:
        """Return when a run waiting for approval expires (Unix seconds), if it does."""
        ...

    async def list_runs(self, *, states: Iterable[RunState] | None = None, limit: int = 50) -> list[Run]: ...

    async def append_audit(self, entry: AuditEntry) -> None: ...

    async def list_audit(
        self,
        *,
        limit: int = 20,
        actor: str | None = None,
        procedure: str | None = None,
        run_id: str | None = None,
    ) -> list[AuditEntry]: ...

    async def claim_delivery(self, key: str) -> bool:
        """Record a delivery id; False when it was recorded before (a redelivery)."""
        ...

    async def add_approval(self, run_id: str, approver: str, digest: str) -> bool:
        """Record an approval; False when this approver had already approved this run."""
        ...

    async def list_approvals(self, run_id: str) -> list[Approval]: ...

    async def acquire_lock(self, target: str, run_id: str) -> str | None:
        """Lock `target` for `run_id`; return the id of the run holding it instead, if any.

        A lock whose run has ended is taken over.
        """
        ...

    async def release_locks(self, run_id: str) -> None: ...

    async def renew_run_leases(self, owner: str, until: float) -> int:
        """Extend the lease of every executing run that `owner` executes; return how many."""
        ...

    async def runs_with_expired_lease(self, now: float) -> list[Run]:
        """Executing runs whose owner stopped renewing their lease before `now`."""
        ...

    async def acquire_lease(self, name: str, owner: str, *, until: float, now: float) -> bool:
        """Take or renew the named lease when it is free, expired or already `owner`'s."""
        ...

    async def release_lease(self, name: str, owner: str) -> None: ...

    async def last_job_run(self, job: str) -> float | None:
        """Return when a scheduled job last ran (Unix seconds), whichever replica ran it."""
        ...

    async def record_job_run(self, job: str, at: float) -> None: ...


def dumps(value: Any) -> str:
    return json.dumps(value, default=_encode, sort_keys=True)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store a value of type {type(value).__name__}")
