"""PostgreSQL login roles of the Meridian API, for rotating its database credentials.

The API's privileges belong to a NOLOGIN group role. A rotation creates a new LOGIN role that
is a member of the group, and later removes the old role's LOGIN. The bot does this through
its own connection (the bot's DATABASE_URL), whose role needs CREATEROLE; on PostgreSQL 16 and
later it also needs ADMIN OPTION on the group role and on the API's current login role.

Passwords are sent as SCRAM-SHA-256 verifiers computed here (RFC 5802, RFC 7677), so the
plain password never reaches the server, its statement log or pg_stat_activity.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg
from pydantic import SecretStr

from bot.clients.database_errors import translate_database_error
from bot.clients.dsn import redact_dsn
from bot.errors import BotError, Refused, TargetRejected, TargetResponseInvalid

logger = logging.getLogger(__name__)

TARGET = "database"
SCRAM_ITERATIONS = 4096  # PostgreSQL's default scram_iterations
MAX_ROLE_NAME_LENGTH = 63  # NAMEDATALEN - 1


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def scram_verifier(password: str, *, iterations: int = SCRAM_ITERATIONS, salt: bytes | None = None) -> str:
    """Compute the SCRAM-SHA-256 verifier PostgreSQL stores in pg_authid.rolpassword (a random salt by default)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def encode(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{encode(salt)}${encode(stored_key)}:{encode(server_key)}"


def url_user(url: str) -> str:
    """Return the user name of a postgresql:// URL, or raise TargetResponseInvalid."""
    user = urlsplit(url).username
    if not user:
        raise TargetResponseInvalid(TARGET, f"DATABASE_URL of the API names no user: {redact_dsn(url)}")
    return unquote(user)


def url_with_credentials(url: str, *, user: str, password: str) -> str:
    """Return `url` with its user and password replaced; host, database and parameters stay."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class RoleFacts:
    """The facts about the roles that a rotation checks before it changes any of them."""

    bot_role: str
    group_role: str
    group_exists: bool
    group_can_login: bool
    old_role: str
    old_role_exists: bool
    old_role_can_login: bool
    old_role_in_group: bool
    bot_can_create_roles: bool
    direct_grants_of_old_role: int  # table privileges granted to the old role itself, not the group
    old_role_sessions: int


class ApiRoles:
    """Connects as the bot (DATABASE_URL) for each operation, within `timeout` seconds."""

    def __init__(self, *, dsn: SecretStr, timeout: float) -> None:
        self._dsn = dsn
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"ApiRoles(dsn={redact_dsn(self._dsn.get_secret_value())!r})"

    def _error(self, error: Exception, *, doing: str, dsn: str | None = None) -> BotError:
        """Translate an asyncpg or socket error; the server's message never quotes a password here."""
        redacted = redact_dsn(dsn or self._dsn.get_secret_value())
        translated = translate_database_error(error, redacted_dsn=redacted, timeout=self._timeout)
        if translated is not None:
            return translated
        if isinstance(error, asyncpg.PostgresError):
            return TargetRejected(TARGET, f"PostgreSQL rejected {doing}: {error.args[0] if error.args else type(error).__name__}.")
        raise error

    async def _connect(self, dsn: str | None = None) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(
                dsn or self._dsn.get_secret_value(),
                timeout=self._timeout,
                command_timeout=self._timeout,
                server_settings={"application_name": "meridian-bot"},
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as error:
            raise self._error(error, doing="the connection", dsn=dsn) from error

    async def inspect(self, *, group_role: str, old_role: str) -> RoleFacts:
        connection = await self._connect()
        try:
            row = await connection.fetchrow(
                """
                SELECT current_user AS bot_role,
                       (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user) AS bot_can_create_roles,
                       g.oid IS NOT NULL AS group_exists,
                       coalesce(g.rolcanlogin, false) AS group_can_login,
                       o.oid IS NOT NULL AS old_role_exists,
                       coalesce(o.rolcanlogin, false) AS old_role_can_login,
                       EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = g.oid AND m.member = o.oid) AS old_role_in_group,
                       (SELECT count(*) FROM information_schema.table_privileges p WHERE p.grantee = $2) AS direct_grants,
                       (SELECT count(*) FROM pg_stat_activity a WHERE a.usename = $2) AS sessions
                FROM (SELECT 1) AS one
                LEFT JOIN pg_roles g ON g.rolname = $1
                LEFT JOIN pg_roles o ON o.rolname = $2
                """,
                group_role,
                old_role,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise self._error(error, doing="reading the roles") from error
        finally:
            await connection.close()
        assert row is not None
        return RoleFacts(
            bot_role=row["bot_role"],
            group_role=group_role,
            group_exists=row["group_exists"],
            group_can_login=row["group_can_login"],
            old_role=old_role,
            old_role_exists=row["old_role_exists"],
            old_role_can_login=row["old_role_can_login"],
            old_role_in_group=row["old_role_in_group"],
            bot_can_create_roles=bool(row["bot_can_create_roles"]),
            direct_grants_of_old_role=int(row["direct_grants"]),
            old_role_sessions=int(row["sessions"]),
        )

    async def create_login_role(self, *, name: str, password: str, group_role: str) -> None:
        """CREATE ROLE `name` LOGIN with the password's SCRAM verifier, as a member of `group_role`."""
        verifier = scram_verifier(password)
        statement = (
            f"CREATE ROLE {quote_identifier(name)} LOGIN INHERIT PASSWORD '{verifier}' "
            f"IN ROLE {quote_identifier(group_role)}"
        )
        connection = await self._connect()
        try:
            await connection.execute(statement)
        except asyncpg.DuplicateObjectError as error:
            raise Refused(f"The role {name} already exists, so no role was created.", hint="Start a new run; it picks another name.") from error
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise self._error(error, doing=f"CREATE ROLE {name}") from error
        finally:
            await connection.close()
        logger.info("Created login role %s in group %s", name, group_role)

    async def check_login(self, url: str, *, group_role: str) -> str:
        """Log in with `url` and return its user, after checking it is a member of `group_role`."""
        connection = await self._connect(url)
        try:
            user, member = await connection.fetchrow(
                "SELECT current_user, pg_has_role(current_user, $1, 'MEMBER')", group_role
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise self._error(error, doing="the login check", dsn=url) from error
        finally:
            await connection.close()
        if not member:
            raise Refused(f"The role {user} logged in but is not a member of {group_role}, so it lacks the API's privileges.")
        return str(user)

    async def disable_login(self, *, role: str, never: str) -> int:
        """ALTER ROLE `role` NOLOGIN and return how many of its sessions are still open.

        `never` is the bot's own role, which this refuses to change.
        """
        if role == never:
            raise Refused(f"The role {role} is the bot's own database role, so its login was not removed.")
        connection = await self._connect()
        try:
            await connection.execute(f"ALTER ROLE {quote_identifier(role)} NOLOGIN")
            sessions = await connection.fetchval("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise self._error(error, doing=f"ALTER ROLE {role} NOLOGIN") from error
        finally:
            await connection.close()
        logger.info("Removed the login of role %s (%d sessions still open)", role, sessions)
        return int(sessions)
