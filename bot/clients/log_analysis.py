"""Incident evidence in the Meridian API's log lines: pool exhaustion, circuit breakers, 429s.

The API writes one JSON object per line (LOG_FORMAT=json) with `timestamp`, `level`,
`target`, `message` and extra fields; a panic or a line from before the logger starts is plain
text. Every function here accepts both, so a line the bot cannot parse is still searched as
text. These are pure functions over lines already read; the procedures read the logs.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

POOL_EXHAUSTED = re.compile(r"pool exhausted", re.IGNORECASE)
CIRCUIT = re.compile(r"circuit", re.IGNORECASE)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"

# The circuit breaker's settings in the API (state.rs), as the runbook states them.
FAILURE_THRESHOLD = 5
RECOVERY_TIMEOUT_SECONDS = 30
SUCCESS_THRESHOLD = 2

_STATE_WORDS = r"half[-_ ]?open(?:ed)?|halfopen|open(?:ed)?|closed?"
_STATE_AFTER_ARROW = re.compile(rf"(?:->|→|=>|\bto\b)\s*[\"']?({_STATE_WORDS})\b", re.IGNORECASE)
_STATE_ASSIGNED = re.compile(rf"\bstate\s*[=:]\s*[\"']?({_STATE_WORDS})\b", re.IGNORECASE)
_STATE_ANYWHERE = re.compile(rf"\b({_STATE_WORDS})\b", re.IGNORECASE)
# A lookahead, so "circuit breaker oracle" yields both "breaker" and "oracle" as candidates.
_BREAKER_NAME = re.compile(r"(?=\b(?:breaker|circuit)[= :]+[\"']?([A-Za-z][\w.-]*))", re.IGNORECASE)
_STATE_FIELDS = ("to", "new_state", "state")
_BREAKER_FIELDS = ("breaker", "circuit", "name", "dependency")

_TOO_MANY_REQUESTS = re.compile(r"\b429\b|too many requests|rate limit(?:ed| exceeded)", re.IGNORECASE)
_ADDRESS_FIELDS = ("client_ip", "client_addr", "remote_addr", "peer_addr", "ip", "x_forwarded_for")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


@dataclass(frozen=True)
class LogRecord:
    """One log line of one pod; `at` is None when the line carries no readable timestamp."""

    pod: str
    raw: str
    at: datetime | None
    level: str
    message: str
    fields: Mapping[str, Any] = field(default_factory=dict)


def parse_line(pod: str, line: str) -> LogRecord:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return LogRecord(pod=pod, raw=line, at=None, level="", message=line)
    return LogRecord(
        pod=pod,
        raw=line,
        at=_parse_timestamp(record.get("timestamp")),
        level=str(record.get("level", "")).upper(),
        message=str(record.get("message", "")),
        fields=record,
    )


def parse_lines(pod: str, lines: Iterable[str]) -> list[LogRecord]:
    return [parse_line(pod, line) for line in lines if line.strip()]


def _parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# Database pool exhaustion


def pool_exhausted(records: Iterable[LogRecord]) -> list[LogRecord]:
    """Return the lines that report an exhausted connection pool, as `grep "pool exhausted"` finds them."""
    return [record for record in records if POOL_EXHAUSTED.search(record.raw)]


# Circuit breaker


@dataclass(frozen=True)
class Transition:
    """A circuit breaker entering `state`, as one log line reports it."""

    breaker: str
    state: str
    at: datetime | None
    pod: str
    line: str


def normalize_state(word: str) -> str | None:
    lowered = word.lower().replace("_", "-").replace(" ", "-")
    if lowered.startswith("half"):
        return HALF_OPEN
    if lowered.startswith("open"):
        return OPEN
    if lowered.startswith("close"):
        return CLOSED
    return None


def circuit_transitions(records: Iterable[LogRecord]) -> list[Transition]:
    """Find the circuit breaker state changes, oldest first (lines without a time keep their order).

    A JSON line names the new state in `to`, `new_state` or `state`; a text line in "-> open",
    "state=open" or a lone state word. Lines that mention a circuit but no state are left out.
    """
    transitions = []
    for record in records:
        if not CIRCUIT.search(record.raw):
            continue
        state = _transition_state(record)
        if state is None:
            continue
        transitions.append(
            Transition(breaker=_breaker_name(record), state=state, at=record.at, pod=record.pod, line=record.raw)
        )
    dated = sorted((t for t in transitions if t.at is not None), key=lambda t: t.at or datetime.min.replace(tzinfo=UTC))
    undated = [t for t in transitions if t.at is None]
    return dated + undated


def _transition_state(record: LogRecord) -> str | None:
    for name in _STATE_FIELDS:
        value = record.fields.get(name)
        if isinstance(value, str) and normalize_state(value):
            return normalize_state(value)
    text = record.message if record.fields else record.raw
    for pattern in (_STATE_AFTER_ARROW, _STATE_ASSIGNED, _STATE_ANYWHERE):
        found = pattern.search(text)
        if found:
            return normalize_state(found.group(1))
    return None


def _breaker_name(record: LogRecord) -> str:
    for name in _BREAKER_FIELDS:
        value = record.fields.get(name)
        if isinstance(value, str) and value:
            return value
    text = record.message if record.fields else record.raw
    for found in _BREAKER_NAME.finditer(text):
        word = found.group(1)
        if normalize_state(word) is None and word.lower() not in ("breaker", "state", "breakers"):
            return word
    return "circuit breaker"


def current_states(transitions: Iterable[Transition]) -> dict[str, Transition]:
    """Return the latest transition of each breaker, which is its current state as far as the logs show."""
    latest: dict[str, Transition] = {}
    for transition in transitions:
        latest[transition.breaker] = transition
    return latest


# Rate limiting


@dataclass(frozen=True)
class RateLimitActivity:
    """The 429 responses in the logs: how many, how fast, and which client addresses received them."""

    rejected: int
    window_seconds: float | None  # from the oldest to the newest dated 429 line, at least 60 s
    top_clients: list[tuple[str, int]]
    unattributed: int  # 429 lines without a client address

    @property
    def per_minute(self) -> float | None:
        if self.window_seconds is None:
            return None
        return self.rejected * 60.0 / self.window_seconds

    @property
    def top_share(self) -> float:
        """The share of the attributed 429s that the busiest client address received (0 to 1)."""
        attributed = sum(count for _, count in self.top_clients)
        if not self.top_clients or not attributed:
            return 0.0
        return self.top_clients[0][1] / max(self.rejected - self.unattributed, attributed)


def is_rate_limited(record: LogRecord) -> bool:
    status = record.fields.get("status")
    if status == 429 or status == "429":
        return True
    return bool(_TOO_MANY_REQUESTS.search(record.message if record.fields else record.raw))


def client_address(record: LogRecord) -> str | None:
    """Return the client's IP address from a JSON field or, for a text line, the first IPv4 address in it."""
    for name in _ADDRESS_FIELDS:
        value = record.fields.get(name)
        if isinstance(value, str):
            address = _valid_address(value.split(",")[0].strip())
            if address:
                return address
    text = record.message if record.fields else record.raw
    for candidate in _IPV4.findall(text):
        address = _valid_address(candidate)
        if address:
            return address
    return None


def _valid_address(text: str) -> str | None:
    candidate = text
    if candidate.startswith("[") and "]" in candidate:
        candidate = candidate[1 : candidate.index("]")]
    elif candidate.count(":") == 1:
        candidate = candidate.split(":", 1)[0]  # an IPv4 address with a port
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def rate_limit_activity(records: Iterable[LogRecord], *, top: int = 10) -> RateLimitActivity:
    rejected = [record for record in records if is_rate_limited(record)]
    clients: Counter[str] = Counter()
    unattributed = 0
    for record in rejected:
        address = client_address(record)
        if address is None:
            unattributed += 1
        else:
            clients[address] += 1

    times = [record.at for record in rejected if record.at is not None]
    window = None
    if times:
        window = max((max(times) - min(times)).total_seconds(), timedelta(minutes=1).total_seconds())
    return RateLimitActivity(
        rejected=len(rejected),
        window_seconds=window,
        top_clients=clients.most_common(top),
        unattributed=unattributed,
    )
