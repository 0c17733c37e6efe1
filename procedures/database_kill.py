"""INC-002 resolution "kill long-running queries": cancel a backend's query or terminate it."""

from __future__ import annotations

from bot.clients.meridian_db import ACTIVE, Backend, BackendIdentity, query_digest
from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.arguments import Argument, Option
from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult
from bot.errors import Refused
from procedures.database_common import STEP_TIMEOUT_SECONDS, age, database, shorten

# PostgreSQL stores pids as int4.
MAX_PID = 2_147_483_647
# How long the bot watches a signalled backend before it reports it as still there.
SIGNAL_WAIT_SECONDS = 5.0
_FULL_QUERY_CHARS = 1000


def _action(terminate: bool) -> str:
    return "pg_terminate_backend" if terminate else "pg_cancel_backend"


def check_killable(backend: Backend | None, *, pid: int, database_name: str, terminate: bool) -> Backend:
    """Return the backend when the bot may signal it; raise Refused with the reason otherwise."""
    if backend is None:
        raise Refused(
            f"There is no backend with pid {pid}.",
            hint="`/meridian db long-queries` lists the running queries with their pids.",
        )
    if not backend.is_client:
        raise Refused(f"pid {pid} is a {backend.backend_type}, not a client backend; the bot signals only client sessions.")
    if backend.database != database_name:
        raise Refused(
            f"Backend {pid} is connected to database {backend.database or '(none)'}, not {database_name}; "
            "the bot acts only on the database of DATABASE_URL."
        )
    if backend.is_own:
        raise Refused(f"Backend {pid} is one of the bot's own connections.")
    if not backend.can_signal:
        raise Refused(
            f"The bot's database role may not signal backend {pid} (role {backend.user or 'unknown'}).",
            hint="Grant pg_signal_backend to the bot's role; only a superuser may signal a superuser's backend.",
        )
    if not terminate and backend.state != ACTIVE:
        raise Refused(
            f"Backend {pid} is {backend.state or 'in an unknown state'}, so it runs no query to cancel.",
            hint=f"`/meridian db kill {pid} --terminate` ends its session and rolls back any open transaction.",
        )
    return backend


def _describe(backend: Backend) -> str:
    lines = [
        f"pid {backend.pid} · user {backend.user or '-'} · application {backend.application or '-'} · "
        f"client {backend.client_address or 'local socket'}",
        f"state {backend.state or 'unknown'} for {age(backend.state_duration)} · query running {age(backend.query_duration)} · "
        f"transaction open {age(backend.transaction_duration)} · wait {backend.wait}",
        f"query: {shorten(backend.query, _FULL_QUERY_CHARS)}",
    ]
    return "\n".join(lines)


async def read_backend(ctx: StepContext) -> StepResult:
    pid = ctx.args["pid"]
    found, database_name = await database(ctx).backend(pid)
    backend = check_killable(found, pid=pid, database_name=database_name, terminate=ctx.args["terminate"])
    return StepResult(
        summary=(
            f"pid {pid} · {backend.user} · {backend.application or 'no application'} · {backend.state} "
            f"for {age(backend.state_duration)} · {shorten(backend.query, 60)}"
        ),
        detail=_describe(backend),
        detail_title=f"Backend {pid}",
        data={"database": database_name, "state": backend.state},
    )


async def plan_kill(ctx: StepContext) -> Plan:
    pid = ctx.args["pid"]
    terminate = ctx.args["terminate"]
    found, database_name = await database(ctx).backend(pid)
    target = f"postgres-backend:{database_name}/{pid}"
    try:
        backend = check_killable(found, pid=pid, database_name=database_name, terminate=terminate)
    except Refused as refusal:
        if ctx.run.plan is None:
            raise
        # Read again at an approval click: the backend vanished or changed, so this identity
        # can never match the approved one and the engine voids the run.
        return Plan(
            summary=f"Backend {pid} changed: {refusal.message}",
            targets=(target,),
            identity={"pid": pid, "changed": refusal.message, "query_sha256": query_digest(found.query) if found else None},
            preview=refusal.message,
        )

    identity = backend.identity
    effect = (
        "pg_terminate_backend closes this session; its open transaction, if any, is rolled back."
        if terminate
        else "pg_cancel_backend stops the running query; the session stays connected."
    )
    verb = "Terminate backend" if terminate else "Cancel the query of backend"
    return Plan(
        summary=f"{verb} {pid} ({backend.user}, {backend.application or 'no application'})",
        targets=(target,),
        identity=identity.to_json(),
        preview=f"{_describe(backend)}\n{effect}",
        facts={"backend": identity.to_json()},
    )


async def signal(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    terminate = ctx.args["terminate"]
    identity = BackendIdentity.from_json(dict(ctx.plan.facts["backend"]))
    client = database(ctx)

    await ctx.progress(f"sending {_action(terminate)} to backend {identity.pid}")
    outcome = await client.signal_backend(identity, terminate=terminate, wait_seconds=SIGNAL_WAIT_SECONDS)
    if not outcome.signalled:
        found, _ = await client.backend(identity.pid)
        raise Refused(f"Nothing was signalled: {_why_unchanged(found, identity, terminate=terminate)}.")

    waited = f"{outcome.waited_seconds:.1f} s"
    if not outcome.ended:
        return StepResult(
            summary=(
                f"sent {_action(terminate)} to backend {identity.pid}, but after {waited} it is still "
                f"{outcome.state}; check `/meridian db long-queries`"
            ),
            level=Level.WARNING,
            data={"signalled": True, "ended": False, "state": outcome.state},
        )
    if outcome.state is None:
        summary = f"{'terminated' if terminate else 'cancelled'} backend {identity.pid}: its session is gone ({waited})"
    else:
        summary = f"cancelled the query of backend {identity.pid}; the session is now {outcome.state} ({waited})"
    return StepResult(summary=summary, data={"signalled": True, "ended": True, "state": outcome.state})


def _why_unchanged(found: Backend | None, identity: BackendIdentity, *, terminate: bool) -> str:
    if found is None:
        return f"backend {identity.pid} had already ended"
    if found.backend_start != identity.backend_start:
        return f"pid {identity.pid} now belongs to another session, started {found.backend_start}"
    if query_digest(found.query) != identity.query_sha256:
        return f"backend {identity.pid} had moved on to another query"
    if not terminate and found.state != ACTIVE:
        return f"the query of backend {identity.pid} had already finished (state {found.state})"
    return f"PostgreSQL reported no process with pid {identity.pid}"


KILL = Procedure(
    name="db-kill",
    title="Cancel or terminate a database backend",
    summary="Cancel a backend's query (pg_cancel_backend), or end its session with --terminate",
    risk=Risk.HIGH,
    section="Incident Response Procedures",
    stages=(
        Step("backend", "Read the backend", read_backend, timeout=STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_kill),
        Step("signal", "Signal the backend", signal, timeout=STEP_TIMEOUT_SECONDS),
    ),
)

COMMANDS = (
    Command(
        words=("db", "kill"),
        procedure=KILL,
        arguments=(Argument("PID", "count", "the backend's process id, from `/meridian db long-queries`", maximum=MAX_PID),),
        options=(
            Option(
                "--terminate",
                "flag",
                "end the whole session (pg_terminate_backend) instead of cancelling its query",
            ),
        ),
        examples=("/meridian db kill 4242", "/meridian db kill 4242 --terminate"),
    ),
)
