"""pg_dump and pg_restore as streaming subprocesses, with their failures in plain words.

Both run without a shell. The connection goes through libpq's environment variables
(PGHOST, PGPASSWORD, ...), so no password appears on a command line, where `ps` would show it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from bot.errors import TargetRejected, TargetResponseInvalid, TargetUnavailable
from bot.observability.redaction import redactor

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 1024 * 1024
# Lines of stderr kept for the error message; pg_restore can print one line per object.
_STDERR_LINES_KEPT = 40
_APPLICATION_NAME = "meridian-bot"
# libpq parameters that may appear in a URL's query and their environment variables.
_QUERY_PARAMETERS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
}


@dataclass(frozen=True)
class PgTarget:
    """Connection parameters for a libpq tool, parsed from a postgresql:// URL."""

    host: str
    port: int
    user: str | None
    password: str | None
    database: str
    parameters: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_url(cls, url: str) -> PgTarget:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        parameters = tuple((name, values[-1]) for name, values in query.items() if name in _QUERY_PARAMETERS)
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 5432,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            database=unquote(parts.path.lstrip("/")) or "postgres",
            parameters=parameters,
        )

    def with_database(self, database: str) -> PgTarget:
        return PgTarget(self.host, self.port, self.user, self.password, database, self.parameters)

    @property
    def server(self) -> str:
        """`host:port`, for messages and lock names."""
        return f"{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """Build the process environment for a libpq tool: the bot's own without PG* variables, plus the connection."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        env.update(PGHOST=self.host, PGPORT=str(self.port), PGDATABASE=self.database, PGAPPNAME=_APPLICATION_NAME)
        if self.user:
            env["PGUSER"] = self.user
        if self.password:
            env["PGPASSWORD"] = self.password
            redactor.register(self.password)
        for name, value in self.parameters:
            env[_QUERY_PARAMETERS[name]] = value
        return env


class PgToolFailed(TargetRejected):
    """pg_dump or pg_restore exited with an error; `reason` is the plain-words cause."""

    def __init__(self, tool: str, reason: str, *, returncode: int, hint: str | None = None) -> None:
        super().__init__(tool, f"{tool} failed: {reason}", hint=hint)
        self.tool = tool
        self.reason = reason
        self.returncode = returncode


class ArchiveInvalid(PgToolFailed, TargetResponseInvalid):
    """pg_restore could not read the archive: it is truncated, corrupted or not a dump."""


class PgServerUnavailable(PgToolFailed, TargetUnavailable):
    """The tool could not connect to the server."""


# (text found in stderr, reason, error class); the first match wins.
_KNOWN_FAILURES: tuple[tuple[str, str, type[PgToolFailed]], ...] = (
    ("end of file", "the archive ends early, so the object is truncated (an upload cut short or a partial copy)", ArchiveInvalid),
    ("input file is too short", "the object is empty or shorter than an archive header", ArchiveInvalid),
    ("does not appear to be a valid archive", "the object is not a pg_dump custom-format archive, or its header is corrupted", ArchiveInvalid),
    ("did not find magic string", "the object is not a pg_dump custom-format archive, or its header is corrupted", ArchiveInvalid),
    ("could not uncompress data", "the archive's compressed data is corrupted", ArchiveInvalid),
    ("could not find block id", "the archive's data blocks are corrupted or out of order", ArchiveInvalid),
    ("unsupported version", "the archive was written by a newer pg_dump than this pg_restore understands", ArchiveInvalid),
    ("password authentication failed", "the server rejected the user name or password", PgToolFailed),
    ('fatal:  database "', "the database does not exist on the server", PgToolFailed),
    ('fatal:  role "', "the database role does not exist on the server", PgToolFailed),
    ("server version mismatch", "pg_dump is older than the server; install pg_dump of the server's major version or newer", PgToolFailed),
    ("no matching tables were found", "the database has none of the requested tables", PgToolFailed),
    ("permission denied", "the bot's database role lacks a privilege", PgToolFailed),
    ("connection to server", "could not connect to the database server", PgServerUnavailable),
    ("could not connect", "could not connect to the database server", PgServerUnavailable),
)


def _error_lines(stderr: Sequence[str]) -> list[str]:
    return [line for line in stderr if "error:" in line or "FATAL" in line or "ERROR" in line] or list(stderr[-3:])


def describe_failure(tool: str, returncode: int, stderr: Sequence[str]) -> PgToolFailed:
    """Build the error for a tool that exited with `returncode`, from what it printed."""
    details = "; ".join(redactor.scrub(line.strip()) for line in _error_lines(stderr))[:500]
    text = "\n".join(stderr).lower()

    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else str(-returncode)
        reason = f"it was killed by signal {name}"
        if tool == "pg_restore" and name in ("SIGSEGV", "SIGBUS", "SIGABRT"):
            # pg_restore 15 crashes on some corrupted data blocks instead of reporting them.
            return ArchiveInvalid(tool, reason + ", which it does on corrupted archive data", returncode=returncode)
        return PgToolFailed(tool, reason, returncode=returncode)

    for needle, reason, error_class in _KNOWN_FAILURES:
        if needle in text:
            full = f"{reason} ({details})" if details else reason
            return error_class(tool, full, returncode=returncode)
    return PgToolFailed(tool, details or f"exit status {returncode} with no message", returncode=returncode)


async def _collect_lines(stream: asyncio.StreamReader, kept: collections.deque[str]) -> None:
    while line := await stream.readline():
        kept.append(line.decode("utf-8", "replace").rstrip())


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def run_pg_dump(
    target: PgTarget,
    *,
    options: Sequence[str],
    sink: Callable[[bytes], Awaitable[None]],
    chunk_bytes: int = READ_CHUNK_BYTES,
) -> int:
    """Run pg_dump, hand each chunk of its output to `sink` in order, and return the byte count.

    pg_dump writes to a pipe, so it waits while `sink` is busy and the output is never held
    whole. Cancelling the caller kills pg_dump. Raises PgToolFailed when pg_dump fails.
    """
    process = await asyncio.create_subprocess_exec(
        "pg_dump",
        *options,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=target.environment(),
    )
    assert process.stdout is not None and process.stderr is not None
    stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES_KEPT)
    stderr_task = asyncio.create_task(_collect_lines(process.stderr, stderr))
    written = 0
    try:
        while chunk := await process.stdout.read(chunk_bytes):
            await sink(chunk)
            written += len(chunk)
        returncode = await process.wait()
        await stderr_task
    finally:
        await _stop(process)
        stderr_task.cancel()
        await asyncio.gather(stderr_task, return_exceptions=True)

    if returncode != 0:
        raise describe_failure("pg_dump", returncode, list(stderr))
    logger.info("pg_dump of %s on %s wrote %d bytes", target.database, target.server, written)
    return written


async def run_pg_restore(
    target: PgTarget | None,
    *,
    options: Sequence[str],
    source: AsyncIterator[bytes],
) -> None:
    """Run pg_restore with the archive fed on its standard input from `source`.

    With `target` None, no connection is made (use `-f /dev/null` to read the whole archive).
    When pg_restore exits before the end of the input, feeding stops and `source` is left
    where it was, so the caller may read the rest (to finish a checksum, for example).
    Raises PgToolFailed (ArchiveInvalid for an unreadable archive) when pg_restore fails.
    """
    env = target.environment() if target is not None else {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    # pg_restore needs --dbname to restore into a database; the name is no secret, and the
    # rest of the connection still comes from the environment.
    database = (f"--dbname={target.database}",) if target is not None else ()
    process = await asyncio.create_subprocess_exec(
        "pg_restore",
        *options,
        *database,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None and process.stderr is not None
    stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES_KEPT)
    stderr_task = asyncio.create_task(_collect_lines(process.stderr, stderr))
    try:
        async for chunk in source:
            try:
                process.stdin.write(chunk)
                await process.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                break  # pg_restore stopped reading; its exit status and stderr show why
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.close()
            await process.stdin.wait_closed()
        returncode = await process.wait()
        await stderr_task
    finally:
        await _stop(process)
        stderr_task.cancel()
        await asyncio.gather(stderr_task, return_exceptions=True)

    if returncode != 0:
        raise describe_failure("pg_restore", returncode, list(stderr))
