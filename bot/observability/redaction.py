"""Scrubbing of secret values from anything the bot writes to Slack or to the log."""

from __future__ import annotations

import re
import threading

_MASK = "***"
_MIN_LENGTH = 6  # shorter values would mask ordinary words

# Passwords inside URLs (postgresql://user:password@host) are masked even when not registered.
_URL_PASSWORD = re.compile(r"(?P<prefix>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)(?=@)", re.IGNORECASE)


class Redactor:
    """A registry of secret values; `scrub` replaces each of them, and URL passwords, with ***."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def register(self, value: str | None) -> None:
        if not value or len(value) < _MIN_LENGTH:
            return
        with self._lock:
            if value in self._secrets:
                return
            self._secrets.add(value)
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(secret) for secret in ordered))

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(_MASK, text)
        return _URL_PASSWORD.sub(lambda match: match.group("prefix") + _MASK, text)


redactor = Redactor()
