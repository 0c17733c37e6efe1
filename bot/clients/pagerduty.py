"""PagerDuty Events API v2: trigger and resolve alerts identified by a dedup key.

An event is a JSON POST of `routing_key`, `event_action` (trigger, acknowledge, resolve),
`dedup_key` and, for a trigger, a `payload` with `summary`, `source` and `severity`
(critical, error, warning or info). PagerDuty answers 202 when it accepted the event.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol

import aiohttp

from bot.errors import TargetRejected, TargetTimeout, TargetUnavailable
from bot.observability.redaction import redactor

logger = logging.getLogger(__name__)

TARGET = "PagerDuty"
SOURCE = "meridian-bot"
# The Events API rejects a summary longer than 1024 characters.
_SUMMARY_LIMIT = 1024
Severity = Literal["critical", "error", "warning", "info"]


class PagerDuty(Protocol):
    async def trigger(self, *, dedup_key: str, summary: str, severity: Severity, details: dict[str, Any]) -> None: ...

    async def resolve(self, *, dedup_key: str) -> None: ...


class PagerDutyEvents:
    """Sends events to PAGERDUTY_EVENTS_URL with the integration's routing key."""

    def __init__(self, *, url: str, routing_key: str, session: aiohttp.ClientSession, timeout: float) -> None:
        self._url = url
        self._routing_key = routing_key
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        redactor.register(routing_key)

    async def trigger(self, *, dedup_key: str, summary: str, severity: Severity, details: dict[str, Any]) -> None:
        await self._send(
            {
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "payload": {
                    "summary": summary[:_SUMMARY_LIMIT],
                    "source": SOURCE,
                    "severity": severity,
                    "custom_details": details,
                },
            }
        )

    async def resolve(self, *, dedup_key: str) -> None:
        await self._send({"event_action": "resolve", "dedup_key": dedup_key})

    async def _send(self, event: dict[str, Any]) -> None:
        body = {"routing_key": self._routing_key, **event}
        action = event["event_action"]
        try:
            async with self._session.post(self._url, json=body, timeout=self._timeout) as response:
                text = await response.text()
                status = response.status
        except TimeoutError as error:
            raise TargetTimeout(TARGET, f"PagerDuty did not answer the {action} event in time.") from error
        except aiohttp.ClientError as error:
            raise TargetUnavailable(TARGET, f"PagerDuty could not be reached to send the {action} event.") from error

        if status == 202:
            logger.info("PagerDuty accepted the %s event for %s", action, event["dedup_key"])
            return
        detail = redactor.scrub(text)[:200]
        if status == 429 or status >= 500:
            raise TargetUnavailable(TARGET, f"PagerDuty answered HTTP {status} to the {action} event: {detail}", hint="Retry later.")
        raise TargetRejected(
            TARGET,
            f"PagerDuty rejected the {action} event with HTTP {status}: {detail}",
            hint="Check PAGERDUTY_ROUTING_KEY (an Events API v2 integration key).",
        )
