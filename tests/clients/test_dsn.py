"""redact_dsn on the connection string forms that libpq and asyncpg accept."""

from __future__ import annotations

import pytest

from bot.clients.dsn import redact_dsn


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "postgresql://bot:s3cret@db.internal:5432/meridian",
            "postgresql://bot:***@db.internal:5432/meridian",
        ),
        (
            "postgres://bot:p%40ss@10.0.0.5/meridian?sslmode=require",
            "postgres://bot:***@10.0.0.5/meridian?sslmode=require",
        ),
        (
            "postgresql://bot:with@at@db:5432/meridian",
            "postgresql://bot:***@db:5432/meridian",
        ),
        (
            "postgresql://bot:s3cret@primary:5432,replica:5432/meridian",
            "postgresql://bot:***@primary:5432,replica:5432/meridian",
        ),
        (
            "postgresql://db:5432/meridian?user=bot&password=s3cret&sslmode=require",
            "postgresql://db:5432/meridian?user=bot&password=***&sslmode=require",
        ),
        (
            "host=db user=bot password='s3 cret' dbname=meridian",
            "host=db user=bot password=*** dbname=meridian",
        ),
        ("postgresql://bot@db/meridian", "postgresql://bot@db/meridian"),
        ("postgresql://bot:@db/meridian", "postgresql://bot:***@db/meridian"),
        ("postgresql:///meridian", "postgresql:///meridian"),
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected


def test_redact_dsn_unparsable_url() -> None:
    redacted = redact_dsn("postgresql://bot:s3cret@[db/meridian")

    assert "s3cret" not in redacted
    assert redacted.startswith("postgresql://")
