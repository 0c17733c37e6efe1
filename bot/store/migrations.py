"""Schema migrations, applied in order and recorded in schema_migrations.

The statements are plain SQL that SQLite and PostgreSQL both accept. Times that are compared
in queries (leases, expiries) are Unix seconds in DOUBLE PRECISION columns; the others are
ISO 8601 text.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "runs, audit log and delivery ids",
        (
            """
            CREATE TABLE runs (
                id TEXT PRIMARY KEY,
                procedure TEXT NOT NULL,
                state TEXT NOT NULL,
                requester TEXT NOT NULL,
                channel_id TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                data TEXT NOT NULL
            )
            """,
            "CREATE INDEX runs_state ON runs (state, created_at)",
            """
            CREATE TABLE audit (
                id TEXT PRIMARY KEY,
                at TEXT NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                run_id TEXT,
                procedure TEXT,
                channel_id TEXT,
                outcome TEXT,
                detail TEXT NOT NULL
            )
            """,
            "CREATE INDEX audit_at ON audit (at)",
            """
            CREATE TABLE deliveries (
                key TEXT PRIMARY KEY,
                at TEXT NOT NULL
            )
            """,
        ),
    ),
    (
        2,
        "approvals, target locks, run and scheduler leases",
        (
            "ALTER TABLE runs ADD COLUMN owner TEXT",
            "ALTER TABLE runs ADD COLUMN lease_expires DOUBLE PRECISION",
            "ALTER TABLE runs ADD COLUMN expires_at DOUBLE PRECISION",
            """
            CREATE TABLE approvals (
                run_id TEXT NOT NULL,
                approver TEXT NOT NULL,
                digest TEXT NOT NULL,
                at TEXT NOT NULL,
                PRIMARY KEY (run_id, approver)
            )
            """,
            """
            CREATE TABLE locks (
                target TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                acquired_at TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE leases (
                name TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                expires DOUBLE PRECISION NOT NULL
            )
            """,
            "CREATE INDEX audit_run ON audit (run_id)",
        ),
    ),
    (
        3,
        "when each scheduled job last ran",
        (
            """
            CREATE TABLE schedule_runs (
                job TEXT PRIMARY KEY,
                last_run DOUBLE PRECISION NOT NULL
            )
            """,
        ),
    ),
)
