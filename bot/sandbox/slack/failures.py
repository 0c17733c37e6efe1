"""Failures a test queues up for the next calls of one Web API method."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

FailureKind = Literal["error", "rate_limit", "http_error"]


@dataclass(frozen=True)
class InjectedFailure:
    """One planned failure: an `ok: false` error, an HTTP 429 with Retry-After, or another HTTP status."""

    kind: FailureKind
    error: str = ""
    status: int = 200
    retry_after: int | None = None


class FailurePlan:
    """Queues of injected failures per method, used up first in, first out."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[InjectedFailure]] = {}

    def add(self, method: str, failure: InjectedFailure, *, times: int) -> None:
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        self._queues.setdefault(method, deque()).extend([failure] * times)

    def take(self, method: str) -> InjectedFailure | None:
        """Remove and return the next failure planned for `method`, or None when none is left."""
        queue = self._queues.get(method)
        if not queue:
            return None
        return queue.popleft()

    def clear(self) -> None:
        self._queues.clear()
