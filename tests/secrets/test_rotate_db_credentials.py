"""`rotate db-credentials` against the local PostgreSQL: a new login in the group role, the old login removed."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import pytest

from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.kubernetes.server import DEFAULT_SECRET_VALUES, SECRET_NAME
from tests.conftest import POSTGRES_URL
from tests.kubernetes.conftest import fast_rollouts, role_rules
from tests.kubernetes.helpers import approve, card_text, press, run_state
from tests.secrets.conftest import WATCH, assert_never_written

HOST = POSTGRES_URL.split("@", 1)[1].rsplit("/", 1)[0]  # 127.0.0.1:5432
OLD_PASSWORD = "canary-old-api-password-3e9a"
BOT_PASSWORD = "canary-bot-password-b41c"


@dataclass(frozen=True)
class Roles:
    database: str
    group: str
    old: str
    bot: str

    def url(self, role: str, password: str) -> str:
        return f"postgresql://{role}:{password}@{HOST}/{self.database}"


async def admin_fetch(query: str, *args: object) -> list[asyncpg.Record]:
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        return await admin.fetch(query, *args)
    finally:
        await admin.close()


@pytest.fixture
async def roles() -> AsyncIterator[Roles]:
    suffix = secrets.token_hex(3)
    created = Roles(
        database=f"meridian_bot_test_{suffix}",
        group=f"meridian_api_{suffix}",
        old=f"meridian_api_{suffix}_v1",
        bot=f"meridian_bot_{suffix}",
    )
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"CREATE ROLE {created.group} NOLOGIN")
        await admin.execute(f"CREATE ROLE {created.old} LOGIN PASSWORD '{OLD_PASSWORD}' IN ROLE {created.group}")
        await admin.execute(f"CREATE ROLE {created.bot} LOGIN CREATEROLE PASSWORD '{BOT_PASSWORD}'")
        await admin.execute(f"CREATE DATABASE {created.database}")
        setup = await asyncpg.connect(f"postgresql://postgres@{HOST}/{created.database}")
        try:
            await setup.execute("CREATE TABLE baskets (id serial PRIMARY KEY, name text NOT NULL)")
            await setup.execute("INSERT INTO baskets (name) VALUES ('basket-1'), ('basket-2')")
            await setup.execute(f"GRANT SELECT, INSERT ON baskets TO {created.group}")
            await setup.execute(f"GRANT USAGE ON SEQUENCE baskets_id_seq TO {created.group}")
        finally:
            await setup.close()
        yield created
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {created.database} WITH (FORCE)")
        members = await admin.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE $1", f"{created.group}_%")
        for name in [row["rolname"] for row in members] + [created.bot, created.group]:
            await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        await admin.close()


@pytest.fixture
async def bot(roles: Roles, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Sandbox]:
    caplog.set_level(logging.DEBUG)
    sandbox = Sandbox(
        database_url=roles.url(roles.bot, BOT_PASSWORD),
        target_timeout=2.0,
        card_interval=0.02,
        on_bot_start=[fast_rollouts],
        settings_overrides={"rotation_watch": WATCH, "api_database_group_role": roles.group},
    )
    async with sandbox:
        sandbox.kubernetes.enforce(role_rules())
        values = {**DEFAULT_SECRET_VALUES, "DATABASE_URL": roles.url(roles.old, OLD_PASSWORD)}
        sandbox.kubernetes.set_secret_values(SECRET_NAME, values)
        yield sandbox


async def can_log_in(url: str) -> bool:
    try:
        connection = await asyncpg.connect(url, timeout=5)
    except asyncpg.InvalidAuthorizationSpecificationError:
        return False
    await connection.close()
    return True


async def can_login_flag(role: str) -> bool:
    rows = await admin_fetch("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", role)
    return bool(rows and rows[0]["rolcanlogin"])


async def new_roles(roles: Roles) -> list[str]:
    rows = await admin_fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE $1 AND rolname <> $2", f"{roles.group}_%", roles.old)
    return [row["rolname"] for row in rows]


async def approve_twice(bot: Sandbox, outcome) -> None:  # noqa: ANN001
    await approve(bot, outcome)
    await press(bot, outcome, user=bot.users.second_approver)


async def test_rotation_moves_api_to_new_role(bot: Sandbox, roles: Roles, caplog: pytest.LogCaptureFixture) -> None:
    outcome = await bot.command("rotate db-credentials")
    assert await run_state(bot) == "waiting_for_approval", card_text(bot, outcome)
    text = card_text(bot, outcome)
    assert f"ALTER ROLE {roles.old} NOLOGIN" in text
    assert f"The bot's own role {roles.bot} is not changed" in text

    await approve_twice(bot, outcome)

    assert await run_state(bot) == "completed", card_text(bot, outcome)
    new_url = bot.kubernetes.secret_values()["DATABASE_URL"]
    new_role = urlsplit(new_url).username
    new_password = urlsplit(new_url).password
    assert await new_roles(roles) == [new_role]
    assert new_password is not None and len(new_password) == 64
    assert urlsplit(new_url).hostname == "127.0.0.1"
    assert urlsplit(new_url).path == f"/{roles.database}"

    connection = await asyncpg.connect(new_url, timeout=5)
    try:
        assert await connection.fetchval("SELECT count(*) FROM baskets") == 2
        await connection.execute("INSERT INTO baskets (name) VALUES ('basket-3')")
        assert await connection.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", roles.group)
    finally:
        await connection.close()

    assert not await can_log_in(roles.url(roles.old, OLD_PASSWORD))
    assert not await can_login_flag(roles.old)
    assert await can_login_flag(roles.bot)
    assert await can_log_in(roles.url(roles.bot, BOT_PASSWORD))
    await assert_never_written(bot, caplog, [new_password, new_url, OLD_PASSWORD, BOT_PASSWORD])


@pytest.mark.parametrize(
    ("verb", "resource", "failed_step_text", "remaining"),
    [
        ("patch", "secrets", "DATABASE_URL", "is unused: drop it (`DROP ROLE"),
        ("patch", "deployments", "restart", "finish the rollout"),
    ],
)
async def test_failure_midway_keeps_old_login(
    bot: Sandbox, roles: Roles, verb: str, resource: str, failed_step_text: str, remaining: str
) -> None:
    outcome = await bot.command("rotate db-credentials")
    bot.kubernetes.fail_next(500, verb=verb, resource=resource)
    await approve_twice(bot, outcome)

    assert await run_state(bot) == "failed"
    text = card_text(bot, outcome)
    assert "What remains:" in text
    assert f"{roles.old} still logs in" in text
    assert remaining in text
    assert "skipped because an earlier step failed" in text
    [created] = await new_roles(roles)
    assert created in text
    assert await can_log_in(roles.url(roles.old, OLD_PASSWORD))
    assert await can_login_flag(roles.bot)


async def test_bot_role_is_never_rotated(bot: Sandbox, roles: Roles) -> None:
    values = {**DEFAULT_SECRET_VALUES, "DATABASE_URL": roles.url(roles.bot, BOT_PASSWORD)}
    bot.kubernetes.set_secret_values(SECRET_NAME, values)

    outcome = await bot.command("rotate db-credentials")

    assert await run_state(bot) == "failed"
    assert f"uses {roles.bot}, the bot's own database role, so it is not rotated" in card_text(bot, outcome)
    assert await new_roles(roles) == []
    assert await can_login_flag(roles.bot)


async def test_old_role_outside_group_refused(bot: Sandbox, roles: Roles) -> None:
    await admin_fetch(f"REVOKE {roles.group} FROM {roles.old}")

    outcome = await bot.command("rotate db-credentials")

    assert await run_state(bot) == "failed"
    assert f"is not a member of {roles.group}" in card_text(bot, outcome)
    assert await new_roles(roles) == []


async def test_scram_verifier_matches_postgres() -> None:
    import base64

    from bot.clients.secrets_db_roles import scram_verifier

    role = f"meridian_scram_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute("SET password_encryption = 'scram-sha-256'")
        await admin.execute(f"CREATE ROLE {role} PASSWORD 'correct horse battery staple'")
        stored = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()

    iterations, salt = stored.split("$")[1].split(":")
    computed = scram_verifier("correct horse battery staple", iterations=int(iterations), salt=base64.b64decode(salt))

    assert computed == stored
