"""The SQL store, the same queries on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

from bot.engine.audit import AuditEntry
from bot.engine.run import Run, RunState, utcnow
from bot.store.base import UNCHANGED, Approval, Unchanged, dumps
from bot.store.connections import Connection
from bot.store.migrations import MIGRATIONS

logger = logging.getLogger(__name__)

_FINAL_STATES = tuple(state.value for state in RunState if state.is_final)
# How many times `acquire_lock` re-reads a lock that other runs keep taking over.
_LOCK_ATTEMPTS = 5


def _timestamp(value: datetime) -> str:
    """Format `value` as UTC ISO 8601 text with microseconds, so that text order is time order.

    A naive datetime is taken to be UTC, the time zone of `utcnow`.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


class SqlStore:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def dialect(self) -> str:
        return self._connection.dialect

    async def open(self) -> None:
        await self._connection.open()
        await self._migrate()

    async def close(self) -> None:
        await self._connection.close()

    async def _migrate(self) -> None:
        async with self._connection.migration_lock() as session:
            await session.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = {row[0] for row in await session.fetch("SELECT version FROM schema_migrations")}
            for version, name, statements in MIGRATIONS:
                if version in applied:
                    continue
                for statement in statements:
                    await session.execute(statement)
                await session.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, _timestamp(utcnow())),
                )
                logger.info("Applied store migration %d (%s)", version, name)

    # Runs

    async def insert_run(self, run: Run) -> None:
        async with self._connection.session() as session:
            await session.execute(
                "INSERT INTO runs (id, procedure, state, requester, channel_id, created_at, updated_at, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.procedure,
                    run.state.value,
                    run.requester,
                    run.channel_id,
                    _timestamp(run.created_at),
                    _timestamp(utcnow()),
                    dumps(run.to_json()),
                ),
            )

    async def save_run(
        self,
        run: Run,
        *,
        expected: Iterable[RunState] | None = None,
        owner: str | None | Unchanged = UNCHANGED,
        lease_expires: float | None | Unchanged = UNCHANGED,
        expires_at: float | None | Unchanged = UNCHANGED,
    ) -> bool:
        assignments = ["state = ?", "channel_id = ?", "updated_at = ?", "data = ?"]
        params: list[object] = [run.state.value, run.channel_id, _timestamp(utcnow()), dumps(run.to_json())]
        for column, value in (("owner", owner), ("lease_expires", lease_expires), ("expires_at", expires_at)):
            if not isinstance(value, Unchanged):
                assignments.append(f"{column} = ?")
                params.append(value)

        query = f"UPDATE runs SET {', '.join(assignments)} WHERE id = ?"
        params.append(run.id)
        if expected is not None:
            states = [state.value for state in expected]
            if not states:
                # No stored state can match, and PostgreSQL rejects an empty IN ().
                return False
            query += f" AND state IN ({_marks(len(states))})"
            params.extend(states)
        async with self._connection.session() as session:
            return await session.execute(query, params) == 1

    async def get_run(self, run_id: str) -> Run | None:
        async with self._connection.session() as session:
            rows = await session.fetch("SELECT data FROM runs WHERE id = ?", (run_id,))
        return Run.from_json(json.loads(rows[0][0])) if rows else None

    async def run_expiry(self, run_id: str) -> float | None:
        async with self._connection.session() as session:
            rows = await session.fetch("SELECT expires_at FROM runs WHERE id = ?", (run_id,))
        return rows[0][0] if rows else None

    async def list_runs(self, *, states: Iterable[RunState] | None = None, limit: int = 50) -> list[Run]:
        query = "SELECT data FROM runs"
        params: list[object] = []
        if states is not None:
            values = [state.value for state in states]
            if not values:
                return []
            query += f" WHERE state IN ({_marks(len(values))})"
            params.extend(values)
        query += " ORDER BY created_at DESC LIMIT ?"
        params.append(limit)
        async with self._connection.session() as session:
            rows = await session.fetch(query, params)
        return [Run.from_json(json.loads(row[0])) for row in rows]

    # Audit log and deliveries

    async def append_audit(self, entry: AuditEntry) -> None:
        async with self._connection.session() as session:
            await session.execute(
                "INSERT INTO audit (id, at, actor, action, run_id, procedure, channel_id, outcome, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    secrets.token_hex(8),
                    _timestamp(entry.at),
                    entry.actor,
                    entry.action,
                    entry.run_id,
                    entry.procedure,
                    entry.channel_id,
                    entry.outcome,
                    dumps(entry.detail),
                ),
            )

    async def list_audit(
        self,
        *,
        limit: int = 20,
        actor: str | None = None,
        procedure: str | None = None,
        run_id: str | None = None,
    ) -> list[AuditEntry]:
        query = "SELECT at, actor, action, run_id, procedure, channel_id, outcome, detail FROM audit WHERE 1 = 1"
        params: list[object] = []
        for column, value in (("actor", actor), ("procedure", procedure), ("run_id", run_id)):
            if value is not None:
                query += f" AND {column} = ?"
                params.append(value)
        query += " ORDER BY at DESC LIMIT ?"
        params.append(limit)
        async with self._connection.session() as session:
            rows = await session.fetch(query, params)
        return [
            AuditEntry(
                at=datetime.fromisoformat(at),
                actor=actor_id,
                action=action,
                run_id=entry_run_id,
                procedure=procedure_name,
                channel_id=channel_id,
                outcome=outcome,
                detail=json.loads(detail),
            )
            for at, actor_id, action, entry_run_id, procedure_name, channel_id, outcome, detail in rows
        ]

    async def claim_delivery(self, key: str) -> bool:
        async with self._connection.session() as session:
            inserted = await session.execute(
                "INSERT INTO deliveries (key, at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, _timestamp(utcnow())),
            )
        return inserted == 1

    # Approvals

    async def add_approval(self, run_id: str, approver: str, digest: str) -> bool:
        async with self._connection.session() as session:
            inserted = await session.execute(
                "INSERT INTO approvals (run_id, approver, digest, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (run_id, approver) DO NOTHING",
                (run_id, approver, digest, _timestamp(utcnow())),
            )
        return inserted == 1

    async def list_approvals(self, run_id: str) -> list[Approval]:
        async with self._connection.session() as session:
            rows = await session.fetch(
                "SELECT run_id, approver, digest, at FROM approvals WHERE run_id = ? ORDER BY at", (run_id,)
            )
        return [Approval(run_id=row[0], approver=row[1], digest=row[2], at=datetime.fromisoformat(row[3])) for row in rows]

    # Locks and leases

    async def acquire_lock(self, target: str, run_id: str) -> str | None:
        async with self._connection.transaction() as session:
            holder: str | None = None
            # On PostgreSQL each statement reads the rows committed before it started, so the
            # lock can change hands between these statements. Each pass reads the holder again.
            for _ in range(_LOCK_ATTEMPTS):
                inserted = await session.execute(
                    "INSERT INTO locks (target, run_id, acquired_at) VALUES (?, ?, ?) ON CONFLICT (target) DO NOTHING",
                    (target, run_id, _timestamp(utcnow())),
                )
                if inserted == 1:
                    return None

                rows = await session.fetch(
                    "SELECT locks.run_id, runs.state FROM locks LEFT JOIN runs ON runs.id = locks.run_id"
                    " WHERE locks.target = ?",
                    (target,),
                )
                if not rows:
                    # The holder released the lock after the insert above, so insert again.
                    continue
                holder, holder_state = rows[0]
                if holder == run_id:
                    return None
                holder_has_ended = holder_state is None or holder_state in _FINAL_STATES
                if not holder_has_ended:
                    return holder

                taken = await session.execute(
                    "UPDATE locks SET run_id = ?, acquired_at = ? WHERE target = ? AND run_id = ?",
                    (run_id, _timestamp(utcnow()), target, holder),
                )
                if taken == 1:
                    return None
                # Another run took the lock over first, so the next pass reads the new holder.
            # NOTE: reached only when the lock changed hands on every pass. The returned holder
            # may have ended since, and the caller treats it as any held lock.
            logger.warning("Lock %s changed hands %d times while run %s acquired it", target, _LOCK_ATTEMPTS, run_id)
            return holder

    async def release_locks(self, run_id: str) -> None:
        async with self._connection.session() as session:
            await session.execute("DELETE FROM locks WHERE run_id = ?", (run_id,))

    async def renew_run_leases(self, owner: str, until: float) -> int:
        async with self._connection.session() as session:
            return await session.execute(
                "UPDATE runs SET lease_expires = ? WHERE owner = ? AND state = ?",
                (until, owner, RunState.RUNNING.value),
            )

    async def runs_with_expired_lease(self, now: float) -> list[Run]:
        async with self._connection.session() as session:
            rows = await session.fetch(
                "SELECT data FROM runs WHERE state = ? AND lease_expires IS NOT NULL AND lease_expires < ?",
                (RunState.RUNNING.value, now),
            )
        return [Run.from_json(json.loads(row[0])) for row in rows]

    async def acquire_lease(self, name: str, owner: str, *, until: float, now: float) -> bool:
        async with self._connection.transaction() as session:
            inserted = await session.execute(
                "INSERT INTO leases (name, owner, expires) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, owner, until),
            )
            if inserted == 1:
                return True
            taken = await session.execute(
                "UPDATE leases SET owner = ?, expires = ? WHERE name = ? AND (owner = ? OR expires < ?)",
                (owner, until, name, owner, now),
            )
            return taken == 1

    async def release_lease(self, name: str, owner: str) -> None:
        async with self._connection.session() as session:
            await session.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    # Scheduled jobs

    async def last_job_run(self, job: str) -> float | None:
        async with self._connection.session() as session:
            rows = await session.fetch("SELECT last_run FROM schedule_runs WHERE job = ?", (job,))
        return float(rows[0][0]) if rows else None

    async def record_job_run(self, job: str, at: float) -> None:
        async with self._connection.session() as session:
            await session.execute(
                "INSERT INTO schedule_runs (job, last_run) VALUES (?, ?)"
                " ON CONFLICT (job) DO UPDATE SET last_run = excluded.last_run",
                (job, at),
            )
