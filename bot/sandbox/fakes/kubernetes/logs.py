"""Log lines of the fake pods, shaped like the Meridian API's JSON logs."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class LogLine:
    """One line a container wrote, with the time it was written (seconds since the epoch)."""

    at: float
    text: str


def _json_line(at: float, level: str, target: str, message: str, correlation_id: str | None) -> LogLine:
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    record = {"timestamp": stamp, "level": level, "target": target, "message": message}
    if correlation_id is not None:
        record["correlation_id"] = correlation_id
    return LogLine(at=at, text=json.dumps(record))


_REQUESTS = (
    ("INFO", "meridian_api::http", "GET /health 200 (2 ms)"),
    ("INFO", "meridian_api::http", "GET /api/v1/baskets 200 (14 ms)"),
    ("INFO", "meridian_api::http", "POST /api/v1/orders 201 (38 ms)"),
    ("INFO", "meridian_api::oracle", "price feed updated for 5 baskets"),
    ("WARN", "meridian_api::db", "slow query: 812 ms"),
)


def generate_logs(
    *,
    behaviour: str,
    until: float,
    rng: random.Random,
    count: int = 40,
    span_seconds: float = 3_600.0,
) -> list[LogLine]:
    """Write `count` lines spread over the `span_seconds` before `until`, oldest first."""
    lines: list[LogLine] = [_json_line(until - span_seconds, "INFO", "meridian_api", "listening on 0.0.0.0:8080", None)]
    for number in range(1, count):
        at = until - span_seconds + span_seconds * number / count
        correlation_id = f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}"
        level, target, message = _REQUESTS[rng.randrange(len(_REQUESTS))]
        if behaviour == "crash-looping" and number % 3 == 0:
            level, target, message = "ERROR", "meridian_api::db", "database connection failed: pool exhausted (max 20 connections)"
        if behaviour == "oom-killed" and number % 4 == 0:
            level, target, message = "WARN", "meridian_api::runtime", "memory usage at 97% of the 512Mi limit"
        lines.append(_json_line(at, level, target, message, correlation_id))
    if behaviour == "crash-looping":
        # A panic is written by the runtime, not the logger, so it is not JSON.
        lines.append(LogLine(at=until, text="thread 'main' panicked at src/db/pool.rs:88:14: pool exhausted"))
    return lines


# The API's log line (target, message) for credentials made with a value that was rotated.
AUTH_ERRORS_BY_KEY = {
    "JWT_SECRET": ("meridian_api::auth", "401 Unauthorized: invalid JWT signature"),
    "SESSION_TOKEN_SALT": ("meridian_api::auth", "401 Unauthorized: session token not found"),
    "API_KEY_SALT": ("meridian_api::auth", "401 Unauthorized: invalid API key"),
    "DATABASE_URL": ("meridian_api::db", "database authentication failed: password authentication failed for user"),
}


def auth_error_lines(*, keys: list[str], at: float, rng: random.Random, per_key: int = 3) -> list[LogLine]:
    """Write the authentication errors a new pod logs after the values of `keys` changed."""
    lines: list[LogLine] = []
    for key in sorted(keys):
        if key not in AUTH_ERRORS_BY_KEY:
            continue
        target, message = AUTH_ERRORS_BY_KEY[key]
        for _ in range(per_key):
            correlation_id = f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}"
            lines.append(_json_line(at, "WARN", target, message, correlation_id))
    return lines


# Incident lines the sandbox scenarios add to the pods' logs.

# Documentation addresses (RFC 5737), so no real host is ever named.
ATTACKER_ADDRESS = "203.0.113.66"
_CLIENT_ADDRESSES = tuple(f"198.51.100.{number}" for number in range(10, 40))


def pool_exhausted_lines(*, until: float, rng: random.Random, count: int = 6) -> list[LogLine]:
    """Write the errors an API with an exhausted connection pool logs over the last five minutes."""
    return [
        _json_line(until - 300 + 300 * number / count, "ERROR", "meridian_api::db",
                   "database connection failed: pool exhausted (max 20 connections, waited 30s)", _correlation_id(rng))
        for number in range(count)
    ]


def circuit_breaker_lines(*, until: float, rng: random.Random, breaker: str = "oracle", recovered: bool = False) -> list[LogLine]:
    """Write the lines of a breaker that opened after 5 failures, tried half-open and opened again.

    With `recovered`, it then goes half-open once more and closes.
    """
    lines = [
        _json_line(until - 240 + seconds, "WARN", "meridian_api::oracle", f"eth_blockNumber failed: connection refused ({number} of 5)", _correlation_id(rng))
        for number, seconds in enumerate((0, 5, 10, 15, 20), start=1)
    ]
    changes = [(25, "closed", "open"), (56, "open", "half_open"), (57, "half_open", "open")]
    if recovered:
        changes += [(90, "open", "half_open"), (95, "half_open", "closed")]
    for seconds, previous, state in changes:
        record_at = until - 240 + seconds
        lines.append(_circuit_line(record_at, breaker=breaker, previous=previous, state=state))
    return sorted(lines, key=lambda line: line.at)


def _circuit_line(at: float, *, breaker: str, previous: str, state: str) -> LogLine:
    line = _json_line(at, "WARN", "meridian_api::circuit_breaker", "circuit_breaker state changed", None)
    record = json.loads(line.text)
    record.update({"breaker": breaker, "from": previous, "to": state})
    return LogLine(at=at, text=json.dumps(record))


def rate_limited_lines(*, until: float, rng: random.Random, attack: bool, count: int = 60) -> list[LogLine]:
    """Write 429 responses over the last ten minutes, to many clients (a spike) or mostly to one (`attack`)."""
    lines = []
    for number in range(count):
        if attack and number % 6 != 0:
            address = ATTACKER_ADDRESS
        else:
            address = _CLIENT_ADDRESSES[rng.randrange(len(_CLIENT_ADDRESSES))]
        line = _json_line(until - 600 + 600 * number / count, "WARN", "meridian_api::rate_limit", "rate limit exceeded", _correlation_id(rng))
        record = json.loads(line.text)
        record.update({"client_ip": address, "path": "/api/v1/orders", "status": 429})
        lines.append(LogLine(at=line.at, text=json.dumps(record)))
    return lines


def _correlation_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}"
