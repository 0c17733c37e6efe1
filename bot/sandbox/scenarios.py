"""Failure scenarios the console can switch the sandbox into, for rehearsing incidents."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.kubernetes.logs import circuit_breaker_lines, pool_exhausted_lines, rate_limited_lines
from bot.sandbox.meridian_schema import ApiSessions

IDLE_IN_TRANSACTION_SESSIONS = 3


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    apply: Callable[[Sandbox], Awaitable[None]]


async def _set_modes(sandbox: Sandbox, *, api: str, frontend: str, rpc: str) -> None:
    await sandbox.api.set_mode(api)
    await sandbox.frontend.set_mode(frontend)
    await sandbox.rpc.set_mode(rpc)


def _modes(api: str = "healthy", frontend: str = "healthy", rpc: str = "healthy") -> Callable[[Sandbox], Awaitable[None]]:
    async def apply(sandbox: Sandbox) -> None:
        await _set_modes(sandbox, api=api, frontend=frontend, rpc=rpc)

    return apply


async def _close_api_sessions(sandbox: Sandbox) -> None:
    if sandbox.api_sessions is not None:
        await sandbox.api_sessions.close()


async def _open_api_sessions(sandbox: Sandbox) -> None:
    """Hold database sessions as a stuck API would: idle in transaction, and one long query."""
    if sandbox.database_url is None:
        return
    await _close_api_sessions(sandbox)
    sandbox.api_sessions = ApiSessions(url=sandbox.database_url)
    for _ in range(IDLE_IN_TRANSACTION_SESSIONS):
        await sandbox.api_sessions.idle_in_transaction()
    await sandbox.api_sessions.sleeping()


def _with_database(
    apply_modes: Callable[[Sandbox], Awaitable[None]],
    database: Callable[[Sandbox], Awaitable[None]],
) -> Callable[[Sandbox], Awaitable[None]]:
    async def apply(sandbox: Sandbox) -> None:
        await apply_modes(sandbox)
        await database(sandbox)

    return apply


def _pods(state: str, *, api: str = "healthy") -> Callable[[Sandbox], Awaitable[None]]:
    """Switch the Kubernetes fake's deployment into `state`, and the API fake into `api`."""

    async def apply(sandbox: Sandbox) -> None:
        await _set_modes(sandbox, api=api, frontend="healthy", rpc="healthy")
        sandbox.kubernetes.scenario(state)

    return apply


def _with_incident_logs(
    apply_modes: Callable[[Sandbox], Awaitable[None]], kind: str
) -> Callable[[Sandbox], Awaitable[None]]:
    """Apply the modes, then add the incident's lines to the logs of every pod of the deployment."""

    async def apply(sandbox: Sandbox) -> None:
        await apply_modes(sandbox)
        cluster = sandbox.kubernetes.cluster
        for pod in sandbox.kubernetes.deployment.pods:
            now = cluster.clock()
            if kind == "pool-exhausted":
                extra = pool_exhausted_lines(until=now, rng=cluster.rng)
            elif kind == "circuit-open":
                extra = circuit_breaker_lines(until=now, rng=cluster.rng)
            else:
                extra = rate_limited_lines(until=now, rng=cluster.rng, attack=kind == "rate-limit-attack")
            pod.logs = sorted([*pod.logs, *extra], key=lambda line: line.at)

    return apply


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("healthy", "every target answers normally", _with_database(_pods("healthy"), _close_api_sessions)),
        Scenario("api-down", "the API refuses connections (INC-001)", _modes(api="down")),
        Scenario("api-slow", "the API answers after its timeout", _modes(api="slow")),
        Scenario(
            "pool-exhausted",
            "the API reports `database connection failed` (INC-002), and the sandbox database has "
            "sessions idle in transaction and a long pg_sleep query",
            _with_incident_logs(_with_database(_modes(api="pool_exhausted"), _open_api_sessions), "pool-exhausted"),
        ),
        Scenario("rpc-down", "the primary Ethereum RPC refuses connections and the oracle's circuit breaker opens (INC-003)", _with_incident_logs(_modes(rpc="down"), "circuit-open")),
        Scenario("rpc-stale", "the primary Ethereum RPC answers with an old block and the oracle's circuit breaker opens (INC-003)", _with_incident_logs(_modes(rpc="stale"), "circuit-open")),
        Scenario("rate-limited", "the API answers 429 Too Many Requests to many clients: a traffic spike (INC-004)", _with_incident_logs(_modes(api="rate_limited"), "rate-limited")),
        Scenario("rate-limit-attack", "the API answers 429, most of them to one client address (INC-004)", _with_incident_logs(_modes(api="rate_limited"), "rate-limit-attack")),
        Scenario("crash-looping", "the API's pods are in CrashLoopBackOff and the API is down (INC-001)", _pods("crash-looping", api="down")),
        Scenario("oom-killed", "the API's pods are OOMKilled and restart over and over", _pods("oom-killed", api="down")),
        Scenario("bad-deploy", "a new revision's image cannot be pulled, so its rollout never progresses", _pods("bad-deploy")),
    )
}
