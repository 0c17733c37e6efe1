"""Garbage-collector pauses, recorded through `gc.callbacks` while a `GcPauses` block is active."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class GcSummary:
    """The collections of one recording: how many, and their total and longest pause in seconds."""

    collections: int = 0
    total: float = 0.0
    longest: float = 0.0
    full_collections: int = 0
    """Collections of the oldest generation (2), the ones that walk every tracked object."""


@dataclass
class GcPauses:
    """Record each collection's duration while the `with` block runs.

    Collections that another thread starts count too: they hold the GIL, so they stop the event loop as well.
    """

    pauses: list[tuple[int, float]] = field(default_factory=list)
    """(generation, seconds) of each collection, in order."""
    _started: float | None = None

    def __enter__(self) -> Self:
        gc.callbacks.append(self._on_collection)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        gc.callbacks.remove(self._on_collection)

    def summary(self) -> GcSummary:
        durations = [seconds for _, seconds in self.pauses]
        return GcSummary(
            collections=len(durations),
            total=sum(durations),
            longest=max(durations, default=0.0),
            full_collections=sum(1 for generation, _ in self.pauses if generation == 2),
        )

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))
            self._started = None
