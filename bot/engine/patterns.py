"""Regular expressions typed by users, matched with a time budget.

Python's `re` cannot be interrupted and holds the event loop, so one pattern with nested
repeats such as `(.+)+Z` would stall every request. The `regex` package takes a timeout.
"""

from __future__ import annotations

import time

import regex

from bot.errors import UsageError

# The whole search of one command's output must finish within this many seconds.
SEARCH_BUDGET_SECONDS = 2.0


def check_pattern(text: str) -> str:
    """Return `text` when it is a valid regular expression; raise UsageError otherwise."""
    try:
        regex.compile(text)
    except regex.error as error:
        raise UsageError(f"`{text}` is not a valid regular expression ({error}).") from None
    return text


class LinePattern:
    """A user's pattern searched line by line within one shared time budget."""

    def __init__(self, text: str, *, budget_seconds: float = SEARCH_BUDGET_SECONDS) -> None:
        self.pattern = check_pattern(text)
        self._compiled = regex.compile(text)
        self._deadline = time.monotonic() + budget_seconds

    def search(self, line: str) -> bool:
        remaining = self._deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            return self._compiled.search(line, timeout=remaining) is not None
        except TimeoutError:
            raise UsageError(
                f"`{self.pattern}` took too long to match.",
                hint="Simplify it: nested repeats such as `(.+)+` can take exponential time.",
            ) from None
