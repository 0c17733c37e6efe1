"""`python -m bench backup-memory`: peak memory of the bot's backup path as the dump grows.

For each size, the benchmark fills a scratch database on the local PostgreSQL server with
rows of random hex text, then runs in a fresh child process the path that `/meridian backup
now` takes (pg_dump into a streamed S3 multipart upload with a running SHA-256) against moto
in server mode on 127.0.0.1, and reads the child's peak resident memory (VmHWM, so Linux only). moto
runs in this parent process, so the objects it keeps in memory are not counted. It then
times `pg_dump` writing the same dump to a file, with the same options, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import asyncpg

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DEFAULT_SIZES_MB = (16, 64, 256)
BUCKET = "bench-backups"
# Each row contains 32 random bytes as 64 hex digits, which zlib compresses to about half.
_ROW_SQL = "INSERT INTO bench_rows (payload) SELECT md5(random()::text) || md5(random()::text) FROM generate_series(1, $1)"
_ROWS_PER_MB = 10_000


@dataclass(frozen=True)
class Measurement:
    target_mb: int
    dump_bytes: int
    baseline_rss_mb: float
    peak_rss_mb: float
    bot_seconds: float
    file_seconds: float
    file_bytes: int

    @property
    def bot_rate(self) -> float:
        return self.dump_bytes / 2**20 / self.bot_seconds

    @property
    def file_rate(self) -> float:
        return self.file_bytes / 2**20 / self.file_seconds


async def _fill_database(name: str, megabytes: int) -> None:
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    connection = await asyncpg.connect(POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        await connection.execute("CREATE TABLE bench_rows (id bigserial PRIMARY KEY, payload text NOT NULL)")
        await connection.execute(_ROW_SQL, megabytes * _ROWS_PER_MB)
    finally:
        await connection.close()


async def _drop_database(name: str) -> None:
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _time_pg_dump_to_file(database_url: str) -> tuple[float, int]:
    from bot.clients.pg_tools import PgTarget
    from procedures.backups import DUMP_OPTIONS

    target = PgTarget.from_url(database_url)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "bench.dump")
        started = time.perf_counter()
        subprocess.run(["pg_dump", *DUMP_OPTIONS, f"--file={path}"], env=target.environment(), check=True)
        return time.perf_counter() - started, os.path.getsize(path)


def _run_child(database_url: str, endpoint: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.backup_memory", "--child", database_url, endpoint],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def _peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), in MiB.

    ru_maxrss would not do: Linux keeps it across execve, so a child starts with the
    parent's peak, which includes the objects moto holds. VmHWM starts afresh with exec.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line (Linux only)")


async def _child(database_url: str, endpoint: str) -> dict[str, float]:
    """Run the bot's backup path, and nothing else, in the measured process."""
    from bot.clients.aws import boto_client
    from bot.clients.backups_storage import S3BackupStorage
    from bot.clients.pg_tools import PgTarget, run_pg_dump
    from procedures.backups import DUMP_OPTIONS

    store = S3BackupStorage(boto_client("s3", region="us-east-1", endpoint_url=endpoint), bucket=BUCKET, prefix="bench/")
    baseline = _peak_rss_mib()
    upload = store.start_upload(f"bench/{secrets.token_hex(4)}.dump", metadata={})
    started = time.perf_counter()
    await run_pg_dump(PgTarget.from_url(database_url), options=DUMP_OPTIONS, sink=upload.write)
    uploaded = await upload.complete()
    seconds = time.perf_counter() - started
    peak = _peak_rss_mib()
    return {"dump_bytes": uploaded.size, "seconds": seconds, "baseline_rss_mb": baseline, "peak_rss_mb": peak}


def measure(sizes_mb: list[int]) -> list[Measurement]:
    import boto3
    from moto.server import ThreadedMotoServer

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        results = []
        for megabytes in sizes_mb:
            name = f"meridian_bench_{secrets.token_hex(4)}"
            print(f"filling {name} with about {megabytes} MB of rows", file=sys.stderr, flush=True)
            asyncio.run(_fill_database(name, megabytes))
            try:
                url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
                child = _run_child(url, endpoint)
                file_seconds, file_bytes = _time_pg_dump_to_file(url)
            finally:
                asyncio.run(_drop_database(name))
            results.append(
                Measurement(
                    target_mb=megabytes,
                    dump_bytes=int(child["dump_bytes"]),
                    baseline_rss_mb=child["baseline_rss_mb"],
                    peak_rss_mb=child["peak_rss_mb"],
                    bot_seconds=child["seconds"],
                    file_seconds=file_seconds,
                    file_bytes=file_bytes,
                )
            )
        return results
    finally:
        server.stop()


def render(results: list[Measurement]) -> str:
    lines = [
        "| table data | dump size | child RSS before | child peak RSS | bot: pg_dump → S3 | pg_dump → file |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        lines.append(
            f"| ~{result.target_mb} MB | {result.dump_bytes / 2**20:.1f} MiB | {result.baseline_rss_mb:.0f} MiB | "
            f"{result.peak_rss_mb:.0f} MiB | {result.bot_seconds:.2f} s ({result.bot_rate:.1f} MiB/s) | "
            f"{result.file_seconds:.2f} s ({result.file_rate:.1f} MiB/s) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench backup-memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES_MB)), help="table data sizes in MB, comma-separated (default: %(default)s)")
    parser.add_argument("--child", nargs=2, metavar=("DATABASE_URL", "ENDPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(_child(*args.child))))
        return 0
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    print(render(measure(sizes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
