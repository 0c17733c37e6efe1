"""Helpers shared by the backup, restore and RDS procedures: clients, checksums and progress."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.clients.aws_rds import RdsInstances
from bot.clients.backups_databases import RestoreServer
from bot.clients.backups_storage import BackupObject, BackupStorage
from bot.clients.backups_targets import BackupTargets
from bot.clients.pg_tools import PgTarget
from bot.durations import format_duration
from bot.engine.context import NotConfigured, StepContext
from bot.errors import Refused

# The card shows at most one progress line a second; more would only be coalesced away.
PROGRESS_INTERVAL_SECONDS = 1.0
# The daily dump's schedule, and how late it may finish before it counts as overdue.
DUMP_INTERVAL_HOURS = 24
DUMP_GRACE_HOURS = 2

Progress = Callable[[str], Awaitable[None]]


def backups(ctx: StepContext) -> BackupTargets:
    return ctx.targets.backups


def storage(ctx: StepContext) -> BackupStorage:
    found = backups(ctx).storage
    if found is None:
        raise NotConfigured("not configured (set BACKUP_BUCKET, and AWS_REGION)")
    return found


def rds(ctx: StepContext) -> tuple[RdsInstances, str]:
    found = backups(ctx)
    if found.rds is None or found.rds_instance_id is None:
        raise NotConfigured("not configured (set RDS_INSTANCE_ID and AWS_REGION)")
    return found.rds, found.rds_instance_id


def restore_server(ctx: StepContext) -> RestoreServer:
    found = backups(ctx).restore_server
    if found is None:
        raise NotConfigured("not configured (set VERIFY_DATABASE_URL or DATABASE_URL)")
    return found


def live_database(ctx: StepContext) -> PgTarget:
    found = backups(ctx).live_database
    if found is None:
        raise NotConfigured("not configured (set DATABASE_URL)")
    return found


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def format_age(moment: datetime, *, now: datetime | None = None) -> str:
    return format_duration((now or datetime.now(UTC)) - moment)


class ByteProgress:
    """Counts bytes and reports `label: N MiB at R MiB/s` at most once a second."""

    def __init__(self, progress: Progress, label: str, *, total: int | None = None) -> None:
        self._progress = progress
        self._label = label
        self._total = total
        self._started = time.monotonic()
        self._last_report = 0.0
        self.count = 0

    async def add(self, count: int) -> None:
        self.count += count
        now = time.monotonic()
        if now - self._last_report >= PROGRESS_INTERVAL_SECONDS:
            self._last_report = now
            await self._progress(self.text())

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._started

    def rate(self) -> str:
        return f"{format_bytes(self.count / max(self.seconds, 1e-6))}/s"

    def text(self) -> str:
        of = f" of {format_bytes(self._total)}" if self._total else ""
        return f"{self._label}: {format_bytes(self.count)}{of} at {self.rate()}"


async def counted(chunks: AsyncIterator[bytes], meter: ByteProgress, digest: Any = None) -> AsyncIterator[bytes]:
    """Pass `chunks` through, counting them on `meter` and feeding `digest` when given."""
    async for chunk in chunks:
        if digest is not None:
            digest.update(chunk)
        await meter.add(len(chunk))
        yield chunk


@dataclass(frozen=True)
class ChecksumResult:
    expected: str
    actual: str
    size: int
    seconds: float

    @property
    def matches(self) -> bool:
        return self.expected == self.actual

    def mismatch_text(self, key: str) -> str:
        return (
            f"The checksum of {key} does not match: its .sha256 file says {self.expected[:16]}…, "
            f"the {format_bytes(self.size)} read back hash to {self.actual[:16]}…. The dump is corrupted "
            "or truncated, or the checksum file belongs to another dump."
        )


async def expected_checksum(store: BackupStorage, backup: BackupObject) -> str:
    checksum = await store.read_checksum(backup.key)
    if checksum is None:
        raise Refused(
            f"{backup.key} has no checksum file ({backup.key}.sha256), so it cannot be verified.",
            hint="Nothing was changed. Choose a dump that has one (`/meridian backup list` shows them).",
        )
    return checksum


async def compute_checksum(store: BackupStorage, backup: BackupObject, *, expected: str, progress: Progress) -> ChecksumResult:
    """Read the whole object (only while its ETag is unchanged) and hash it."""
    digest = hashlib.sha256()
    meter = ByteProgress(progress, "checksum", total=backup.size)
    async for _ in counted(store.read(backup.key, etag=backup.etag), meter, digest):
        pass
    return ChecksumResult(expected=expected, actual=digest.hexdigest(), size=meter.count, seconds=meter.seconds)


def record_good_dump(targets: BackupTargets, backup: BackupObject | None, *, location: str) -> None:
    """Set the backup gauges from the newest good dump (nothing when there is none)."""
    if targets.metrics is None or backup is None:
        return
    targets.metrics.backup_last_success_timestamp.labels(location=location).set(backup.last_modified.timestamp())
    targets.metrics.backup_size_bytes.labels(location=location).set(backup.size)
