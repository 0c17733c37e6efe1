"""Failure scenarios the console can switch the sandbox into, for rehearsing incidents."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.sandbox.environment import Sandbox


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


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("healthy", "every target answers normally", _modes()),
        Scenario("api-down", "the API refuses connections (INC-001)", _modes(api="down")),
        Scenario("api-slow", "the API answers after its timeout", _modes(api="slow")),
        Scenario("pool-exhausted", "the API reports `database connection failed` (INC-002)", _modes(api="pool_exhausted")),
        Scenario("rpc-down", "the primary Ethereum RPC refuses connections (INC-003)", _modes(rpc="down")),
        Scenario("rpc-stale", "the primary Ethereum RPC answers with an old block (INC-003)", _modes(rpc="stale")),
        Scenario("rate-limited", "the API answers 429 Too Many Requests (INC-004)", _modes(api="rate_limited")),
    )
}
