"""A shared budget of chat.update calls: Slack allows about 50 a minute per workspace."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable


class UpdateBudget:
    """At most `per_minute` acquisitions in any 60-second window, across every run card."""

    def __init__(
        self,
        per_minute: int = 50,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._sleep = sleep
        self._recent: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                while self._recent and now - self._recent[0] >= 60:
                    self._recent.popleft()
                if len(self._recent) < self._per_minute:
                    self._recent.append(now)
                    return
                await self._sleep(60 - (now - self._recent[0]))
