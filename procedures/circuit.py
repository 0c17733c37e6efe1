"""Circuit Breaker Operations: each breaker's state and recent transitions, from the pods' logs.

The API has no endpoint for its breakers and no manual reset. A breaker opens after
FAILURE_THRESHOLD failures, tries half-open after RECOVERY_TIMEOUT_SECONDS and closes after
SUCCESS_THRESHOLD successes. A rolling restart starts every breaker closed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.clients.log_analysis import (
    CLOSED,
    FAILURE_THRESHOLD,
    HALF_OPEN,
    OPEN,
    RECOVERY_TIMEOUT_SECONDS,
    SUCCESS_THRESHOLD,
    Transition,
    circuit_transitions,
    current_states,
)
from bot.durations import format_duration
from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult
from procedures.deployments import cluster_or_skip
from procedures.investigate_common import (
    RESOLUTIONS_KEY,
    Resolution,
    all_records,
    read_recent_logs,
)

STEP_TIMEOUT_SECONDS = 30.0
RECENT_TRANSITIONS = 20
SETTINGS_TEXT = (
    f"Settings: opens after {FAILURE_THRESHOLD} failures, half-open after {RECOVERY_TIMEOUT_SECONDS} s, "
    f"closes after {SUCCESS_THRESHOLD} successes. There is no manual reset: a rolling restart starts "
    f"every breaker closed, or it recovers by itself {RECOVERY_TIMEOUT_SECONDS} s after opening."
)
RESTART = Resolution(
    command="restart",
    label="Rolling restart",
    reason="A rolling restart is the only way to reset a circuit breaker before it recovers by itself.",
)


def transition_line(transition: Transition) -> str:
    when = transition.at.strftime("%Y-%m-%d %H:%M:%S") if transition.at else "time unknown"
    return f"{when}  {transition.breaker}: {transition.state}  ({transition.pod})"


def describe_breakers(transitions: list[Transition], *, now: datetime) -> tuple[list[str], dict[str, Any]]:
    """Describe each breaker's current state and how long it has lasted, and return the data behind it."""
    states = current_states(transitions)
    phrases = []
    for breaker, latest in sorted(states.items()):
        held = f" for {format_duration(now - latest.at)}" if latest.at else ""
        phrases.append(f"{breaker} {latest.state}{held}")
    data = {
        "states": {breaker: latest.state for breaker, latest in states.items()},
        "opened": sum(transition.state == OPEN for transition in transitions),
        "transitions": len(transitions),
    }
    return phrases, data


async def read_circuit_breakers(ctx: StepContext) -> StepResult:
    cluster = cluster_or_skip(ctx)
    logs = await read_recent_logs(ctx, cluster)
    transitions = circuit_transitions(all_records(logs))
    phrases, data = describe_breakers(transitions, now=datetime.now(UTC))
    unreadable = [log.pod for log in logs if log.error]

    not_closed = [breaker for breaker, state in data["states"].items() if state in (OPEN, HALF_OPEN)]
    if not transitions:
        summary = f"no state changes in the logs of {len(logs)} pods in the last hour: every breaker is presumably {CLOSED}"
        level = Level.OK
    else:
        summary = "; ".join(phrases) + f" · {len(transitions)} state changes in the last hour"
        level = Level.WARNING if not_closed else Level.OK
        if any(data["states"][breaker] == OPEN for breaker in not_closed):
            level = Level.CRITICAL
    if unreadable:
        summary += f" · no logs from {len(unreadable)} pods"
        level = Level.WARNING if level is Level.OK else level

    recent = transitions[-RECENT_TRANSITIONS:]
    detail_lines = [SETTINGS_TEXT, ""]
    detail_lines += [transition_line(transition) for transition in recent] or ["No circuit breaker state changes in the last hour."]
    if not_closed:
        detail_lines += ["", f"Not closed: {', '.join(not_closed)}. The rolling restart button below resets them."]
        data[RESOLUTIONS_KEY] = [RESTART.to_json()]
    return StepResult(summary=summary, level=level, detail="\n".join(detail_lines), detail_title="Circuit breaker transitions", data=data)


async def explain_reset(ctx: StepContext) -> StepResult:
    return StepResult(summary=SETTINGS_TEXT, level=Level.INFO)


CIRCUIT = Procedure(
    name="circuit",
    title="Circuit breakers",
    summary="Show each circuit breaker's state and recent transitions from the pods' logs",
    risk=Risk.READ,
    section="Circuit Breaker Operations",
    stages=(
        Step("breakers", "State from the logs", read_circuit_breakers, timeout=STEP_TIMEOUT_SECONDS),
        Step("settings", "Settings and reset", explain_reset),
    ),
)

COMMANDS = (Command(words=("circuit",), procedure=CIRCUIT, examples=("/meridian circuit",)),)
