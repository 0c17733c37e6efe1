"""The embedded store: one SQLite file, the default for a single replica."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import aiosqlite

from bot.engine.audit import AuditEntry
from bot.engine.run import Run, RunState, utcnow
from bot.store.base import dumps
from bot.store.migrations import MIGRATIONS

logger = logging.getLogger(__name__)


class SqliteStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.execute("PRAGMA busy_timeout=5000")
        await self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _migrate(self) -> None:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        async with self.db.execute("SELECT version FROM schema_migrations") as cursor:
            applied = {row[0] for row in await cursor.fetchall()}
        for version, name, statements in MIGRATIONS:
            if version in applied:
                continue
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    await self.db.execute(statement)
                await self.db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, utcnow().isoformat()),
                )
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            logger.info("Applied store migration %d (%s)", version, name)

    async def insert_run(self, run: Run) -> None:
        await self.db.execute(
            "INSERT INTO runs (id, procedure, state, requester, channel_id, created_at, updated_at, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.id,
                run.procedure,
                run.state.value,
                run.requester,
                run.channel_id,
                run.created_at.isoformat(),
                utcnow().isoformat(),
                dumps(run.to_json()),
            ),
        )

    async def save_run(self, run: Run, *, expected: Iterable[RunState] | None = None) -> bool:
        query = "UPDATE runs SET state = ?, updated_at = ?, data = ? WHERE id = ?"
        params: list[object] = [run.state.value, utcnow().isoformat(), dumps(run.to_json()), run.id]
        if expected is not None:
            states = [state.value for state in expected]
            query += f" AND state IN ({', '.join('?' for _ in states)})"
            params.extend(states)
        cursor = await self.db.execute(query, params)
        return cursor.rowcount == 1

    async def get_run(self, run_id: str) -> Run | None:
        async with self.db.execute("SELECT data FROM runs WHERE id = ?", (run_id,)) as cursor:
            row = await cursor.fetchone()
        return Run.from_json(json.loads(row[0])) if row else None

    async def list_runs(self, *, states: Iterable[RunState] | None = None, limit: int = 50) -> list[Run]:
        query = "SELECT data FROM runs"
        params: list[object] = []
        if states is not None:
            values = [state.value for state in states]
            query += f" WHERE state IN ({', '.join('?' for _ in values)})"
            params.extend(values)
        query += " ORDER BY created_at DESC LIMIT ?"
        params.append(limit)
        async with self.db.execute(query, params) as cursor:
            rows = await cursor.fetchall()
        return [Run.from_json(json.loads(row[0])) for row in rows]

    async def append_audit(self, entry: AuditEntry) -> None:
        await self.db.execute(
            "INSERT INTO audit (id, at, actor, action, run_id, procedure, channel_id, outcome, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                secrets.token_hex(8),
                entry.at.isoformat(),
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
    ) -> list[AuditEntry]:
        query = "SELECT at, actor, action, run_id, procedure, channel_id, outcome, detail FROM audit WHERE 1 = 1"
        params: list[object] = []
        if actor is not None:
            query += " AND actor = ?"
            params.append(actor)
        if procedure is not None:
            query += " AND procedure = ?"
            params.append(procedure)
        query += " ORDER BY at DESC LIMIT ?"
        params.append(limit)
        async with self.db.execute(query, params) as cursor:
            rows = await cursor.fetchall()
        return [
            AuditEntry(
                at=datetime.fromisoformat(at),
                actor=actor_id,
                action=action,
                run_id=run_id,
                procedure=procedure_name,
                channel_id=channel_id,
                outcome=outcome,
                detail=json.loads(detail),
            )
            for at, actor_id, action, run_id, procedure_name, channel_id, outcome, detail in rows
        ]

    async def claim_delivery(self, key: str) -> bool:
        cursor = await self.db.execute(
            "INSERT INTO deliveries (key, at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            (key, utcnow().isoformat()),
        )
        return cursor.rowcount == 1
