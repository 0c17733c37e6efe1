"""Reading incidents from log lines: circuit breaker transitions, 429s and their client addresses."""

from __future__ import annotations

import json

import pytest

from bot.clients.log_analysis import (
    client_address,
    circuit_transitions,
    current_states,
    parse_line,
    pool_exhausted,
    rate_limit_activity,
)


def json_line(message: str, **fields: object) -> str:
    return json.dumps({"timestamp": "2025-12-30T15:30:00Z", "level": "WARN", "target": "meridian_api", "message": message, **fields})


@pytest.mark.parametrize(
    ("line", "breaker", "state"),
    [
        (json_line("circuit_breaker state changed", breaker="oracle", **{"from": "closed", "to": "open"}), "oracle", "open"),
        (json_line("circuit_breaker state changed", breaker="oracle", to="half_open"), "oracle", "half-open"),
        (json_line("circuit breaker oracle: Open -> HalfOpen"), "oracle", "half-open"),
        ("2025-12-30 15:30:00 WARN circuit_breaker breaker=rpc state=closed", "rpc", "closed"),
        ("circuit breaker opened after 5 failures", "circuit breaker", "open"),
    ],
)
def test_transition_formats(line: str, breaker: str, state: str) -> None:
    (transition,) = circuit_transitions([parse_line("pod-a", line)])

    assert transition.breaker == breaker
    assert transition.state == state


def test_current_state_is_latest() -> None:
    lines = [
        json.dumps({"timestamp": "2025-12-30T15:30:05Z", "message": "circuit_breaker state changed", "breaker": "oracle", "to": "half_open"}),
        json.dumps({"timestamp": "2025-12-30T15:30:00Z", "message": "circuit_breaker state changed", "breaker": "oracle", "to": "open"}),
        json_line("circuit check without a state"),
    ]

    transitions = circuit_transitions(parse_line("pod-a", line) for line in lines)

    assert [t.state for t in transitions] == ["open", "half-open"]
    assert current_states(transitions)["oracle"].state == "half-open"


def test_pool_exhausted_matches_text_and_json() -> None:
    records = [
        parse_line("pod-a", json_line("database connection failed: pool exhausted")),
        parse_line("pod-a", "thread 'main' panicked at src/db/pool.rs:88:14: Pool Exhausted"),
        parse_line("pod-a", json_line("GET /health 200")),
    ]

    assert len(pool_exhausted(records)) == 2


@pytest.mark.parametrize(
    ("line", "address"),
    [
        (json_line("rate limit exceeded", client_ip="203.0.113.7", status=429), "203.0.113.7"),
        (json_line("rate limit exceeded", remote_addr="203.0.113.7:51234"), "203.0.113.7"),
        (json_line("rate limit exceeded", x_forwarded_for="2001:db8::1, 10.0.0.1"), "2001:db8::1"),
        ("203.0.113.9 - - GET /api/v1/orders 429", "203.0.113.9"),
        (json_line("rate limit exceeded", client_ip="not-an-address"), None),
    ],
)
def test_client_address(line: str, address: str | None) -> None:
    assert client_address(parse_line("pod-a", line)) == address


def test_rate_limit_activity_counts_and_ranks() -> None:
    lines = [json.dumps({"timestamp": f"2025-12-30T15:{minute:02d}:00Z", "message": "rate limit exceeded", "client_ip": ip, "status": 429})
             for minute, ip in [(0, "203.0.113.66"), (2, "203.0.113.66"), (4, "203.0.113.66"), (5, "198.51.100.1"), (10, "198.51.100.2")]]
    lines.append(json_line("GET /api/v1/baskets 200", status=200))
    lines.append("GET /api/v1/orders 429 Too Many Requests")

    activity = rate_limit_activity(parse_line("pod-a", line) for line in lines)

    assert activity.rejected == 6
    assert activity.unattributed == 1
    assert activity.top_clients[0] == ("203.0.113.66", 3)
    assert activity.top_share == pytest.approx(0.6)
    assert activity.per_minute == pytest.approx(6 / 10)
