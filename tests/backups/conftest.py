"""A seeded Meridian database, moto in server mode for S3 and RDS, a PagerDuty fake, and the bot.

moto listens on 127.0.0.1 on a port the OS picks; boto3 reaches it through AWS_ENDPOINT_URL
with dummy credentials, so nothing goes to AWS. Each test gets its own bucket, RDS instance
and database, dropped at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import boto3
import pytest
from moto.server import ThreadedMotoServer

from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.pagerduty import FakePagerDuty
from bot.sandbox.meridian_schema import install_schema, seed
from bot.sandbox.slack.records import Message
from bot.sandbox.text_render import message_text
from tests.conftest import POSTGRES_URL

REGION = "us-east-1"
PREFIX = "daily/"
PASSWORD_CANARY = "canary-backup-pw-81c2"
ROUTING_KEY = "routing-key-0123456789abcdef"
SERVER_URL = POSTGRES_URL.rsplit("/", 1)[0]
_DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def url_with_password(database: str) -> str:
    """The test server's URL for `database`, with a password that trust authentication ignores."""
    host = SERVER_URL.split("@", 1)[1]
    return f"postgresql://postgres:{PASSWORD_CANARY}@{host}/{database}"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    saved = {name: os.environ.get(name) for name in _DUMMY_AWS}
    os.environ.update(_DUMMY_AWS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Aws:
    url: str
    bucket: str
    instance_id: str
    s3: Any
    rds: Any

    def keys(self) -> list[str]:
        response = self.s3.list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in response.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def write(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)


@pytest.fixture
def aws(moto_url: str) -> Iterator[Aws]:
    suffix = secrets.token_hex(4)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_url)
    rds = boto3.client("rds", region_name=REGION, endpoint_url=moto_url)
    bucket = f"meridian-backups-{suffix}"
    instance_id = f"meridian-prod-{suffix}"
    s3.create_bucket(Bucket=bucket)
    rds.create_db_instance(
        DBInstanceIdentifier=instance_id,
        Engine="postgres",
        DBInstanceClass="db.t3.medium",
        MasterUsername="meridian",
        MasterUserPassword="not-a-real-password",
        AllocatedStorage=20,
        BackupRetentionPeriod=7,
        PreferredBackupWindow="03:00-04:00",
        PreferredMaintenanceWindow="sun:05:00-sun:06:00",
    )
    yield Aws(url=moto_url, bucket=bucket, instance_id=instance_id, s3=s3, rds=rds)


@pytest.fixture
async def meridian_db() -> AsyncIterator[str]:
    """A seeded Meridian database; yields its name."""
    name = f"meridian_bot_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        connection = await asyncpg.connect(f"{SERVER_URL}/{name}")
        try:
            await install_schema(connection)
            await seed(connection)
        finally:
            await connection.close()
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def pagerduty() -> AsyncIterator[FakePagerDuty]:
    async with FakePagerDuty() as fake:
        yield fake


def backup_settings(aws: Aws, database: str, pagerduty: FakePagerDuty) -> dict[str, Any]:
    return {
        "database_url": url_with_password(database),
        "verify_database_url": url_with_password("postgres"),
        "aws_region": REGION,
        "aws_endpoint_url": aws.url,
        "backup_bucket": aws.bucket,
        "backup_prefix": PREFIX,
        "rds_instance_id": aws.instance_id,
        "pagerduty_routing_key": ROUTING_KEY,
        "pagerduty_events_url": pagerduty.events_url,
    }


@pytest.fixture
async def bot(aws: Aws, meridian_db: str, pagerduty: FakePagerDuty) -> AsyncIterator[Sandbox]:
    sandbox = Sandbox(
        database_url=url_with_password(meridian_db),
        target_timeout=5.0,
        card_interval=0.05,
        settings_overrides=backup_settings(aws, meridian_db, pagerduty),
    )
    async with sandbox:
        yield sandbox
    await drop_databases_like("meridian_restored_%")


async def drop_databases_like(pattern: str) -> None:
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        for row in await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", pattern):
            await admin.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await admin.close()


async def databases_like(pattern: str) -> list[str]:
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        return [row["datname"] for row in await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", pattern)]
    finally:
        await admin.close()


async def row_counts(database: str) -> dict[str, int]:
    connection = await asyncpg.connect(f"{SERVER_URL}/{database}")
    try:
        tables = [row["tablename"] for row in await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {table: await connection.fetchval(f'SELECT count(*) FROM public."{table}"') for table in tables}
    finally:
        await connection.close()


def card(bot: Sandbox, run_id: str) -> Message:
    for message in reversed(bot.slack.messages):
        if message.thread_ts is None and not message.is_ephemeral and f"Run `{run_id}`" in message_text(message):
            return bot.slack.message(message.channel, message.ts)
    raise LookupError(f"no card for run {run_id}")


def card_text(bot: Sandbox, run_id: str) -> str:
    return message_text(card(bot, run_id))


def thread_text(bot: Sandbox, run_id: str) -> str:
    root = card(bot, run_id)
    return "\n".join(message_text(message) for message in bot.slack.messages if message.thread_ts == root.ts)


async def request(bot: Sandbox, text: str, *, user: str | None = None) -> str:
    """Send the command, wait for the run to stop or wait for approval, return its id."""
    outcome = await bot.command(text, user=user)
    runs = await bot.runtime.store.list_runs(limit=1)
    assert runs, f"no run started for {text!r}: {outcome.reply_text}"
    return runs[0].id


async def approve(bot: Sandbox, run_id: str, *, user: str) -> None:
    await bot.driver.press(card(bot, run_id), user_id=user, action_id="run.approve")
    await bot.runtime.engine.wait_idle()


async def run_state(bot: Sandbox, run_id: str) -> str:
    run = await bot.runtime.store.get_run(run_id)
    assert run is not None
    return run.state.value


async def step_summary(bot: Sandbox, run_id: str, step: str) -> str:
    run = await bot.runtime.store.get_run(run_id)
    assert run is not None
    return run.step(step).summary or ""


async def run_output(bot: Sandbox, run_id: str, step: str) -> dict[str, Any]:
    run = await bot.runtime.store.get_run(run_id)
    assert run is not None
    return run.outputs.get(step, {})


def incident_texts(bot: Sandbox) -> list[str]:
    from bot.sandbox.environment import INCIDENT_CHANNEL

    return [message_text(message) for message in bot.slack.messages_in(INCIDENT_CHANNEL)]
