"""Latency samples and their summary: count, failures, p50, p99 and max."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One slash command sent to one app and its outcome."""

    app: str
    status: int | None
    """HTTP status of the response, or None when no response came back."""
    elapsed: float | None
    """Seconds from sending the request to reading the whole response, or None without a response."""
    error: str | None = None
    """Why the request failed: the exception, or the status and an excerpt of the body."""

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class LatencySummary:
    """Ack latency of one app over the requests that got HTTP 200, in seconds."""

    app: str
    sent: int
    ok: int
    p50: float | None
    p99: float | None
    max: float | None

    @property
    def failed(self) -> int:
        return self.sent - self.ok


def summarize(app: str, samples: Sequence[Sample]) -> LatencySummary:
    latencies = [sample.elapsed for sample in samples if sample.ok and sample.elapsed is not None]
    return LatencySummary(
        app=app,
        sent=len(samples),
        ok=len(latencies),
        p50=percentile(latencies, 50),
        p99=percentile(latencies, 99),
        max=max(latencies, default=None),
    )


def percentile(values: Sequence[float], rank: int) -> float | None:
    """Return the `rank`-th percentile (1 to 99), interpolated between the two nearest values.

    This is `statistics.quantiles(method="inclusive")`, so the 50th percentile is the median.
    Returns None for no values and the value itself for one.
    """
    if not 1 <= rank <= 99:
        raise ValueError(f"Percentile rank must be between 1 and 99, got {rank}.")
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[rank - 1]
