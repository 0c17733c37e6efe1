"""Incident Response Procedures INC-001 to INC-004: each investigation as one run card.

The evidence steps run in parallel and report a target they cannot reach instead of failing.
The last step sums up which resolution the evidence points to and offers it as buttons that
start the approval-gated procedure as a new run.
"""

from __future__ import annotations

from bot.engine.catalog import Command
from bot.engine.procedure import Parallel, Procedure, Risk, Step
from procedures import investigate_findings as findings
from procedures import investigate_steps as evidence
from procedures.investigate_common import StepFunction, tolerant
from procedures.ratelimit import rate_limit_steps
from procedures.rpc import endpoint_steps

SECTION = "Incident Response Procedures"
STEP_TIMEOUT_SECONDS = 30.0


def _step(name: str, title: str, function: StepFunction) -> Step:
    return Step(name, title, tolerant(function), timeout=STEP_TIMEOUT_SECONDS)


PODS = _step("pods", "Pod status", evidence.check_pods)
DEPLOYMENTS = _step("deployments", "Recent deployments", evidence.check_deployments)
LOGS = _step("logs", 'Logs: "pool exhausted", circuit_breaker, 429', evidence.check_logs)
HEALTH = _step("health", "API /health", evidence.check_health)
POOL = _step("metrics", "Pool metrics", evidence.check_pool_metrics)
CONNECTIONS = _step("connections", "pg_stat_activity by state", evidence.check_connections)
QUERIES = _step("queries", "Long-running queries", evidence.check_long_queries)


def _investigation(name: str, title: str, summary: str, evidence_steps: tuple[Step, ...], conclude: StepFunction) -> Procedure:
    return Procedure(
        name=name,
        title=title,
        summary=summary,
        risk=Risk.READ,
        section=SECTION,
        stages=(Parallel(evidence_steps), Step("findings", "Findings", conclude)),
    )


API_UNRESPONSIVE = _investigation(
    "investigate-api-unresponsive",
    "INC-001: API unresponsive",
    "Investigate an unresponsive API: pods, recent deployments, logs, /health",
    (PODS, DEPLOYMENTS, LOGS, HEALTH),
    findings.api_unresponsive_findings,
)
DB_POOL = _investigation(
    "investigate-db-pool",
    "INC-002: database pool exhaustion",
    "Investigate database pool exhaustion: /health, pool metrics, pg_stat_activity, long queries, logs",
    (HEALTH, POOL, CONNECTIONS, QUERIES, LOGS),
    findings.db_pool_findings,
)
_PRIMARY, _BACKUP = endpoint_steps()
ORACLE_RPC = _investigation(
    "investigate-oracle-rpc",
    "INC-003: oracle RPC failure",
    "Investigate an oracle RPC failure: both endpoints' block number and age, circuit breakers, /health",
    (_PRIMARY, _BACKUP, LOGS, HEALTH),
    findings.oracle_rpc_findings,
)
RATE_LIMIT = _investigation(
    "investigate-rate-limit",
    "INC-004: rate limiting active",
    "Investigate active rate limiting: x-ratelimit headers, 429s in the logs and the client addresses behind them",
    rate_limit_steps(),
    findings.rate_limit_findings,
)

_INVESTIGATIONS = (
    ("api-unresponsive", "inc-001", API_UNRESPONSIVE),
    ("db-pool", "inc-002", DB_POOL),
    ("oracle-rpc", "inc-003", ORACLE_RPC),
    ("rate-limit", "inc-004", RATE_LIMIT),
)

COMMANDS = tuple(
    command
    for name, alias, procedure in _INVESTIGATIONS
    for command in (
        Command(words=("investigate", name), procedure=procedure, examples=(f"/meridian investigate {name}",)),
        Command(words=("investigate", alias), procedure=procedure, examples=(f"/meridian investigate {alias}",)),
    )
)
