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
