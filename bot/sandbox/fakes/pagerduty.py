"""Fake PagerDuty Events API v2: records every event and replies with PagerDuty's status codes."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from aiohttp import web

from bot.sandbox.fakes.http_server import FakeHttpServer

EVENTS_PATH = "/v2/enqueue"
_ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})
_SEVERITIES = frozenset({"critical", "error", "warning", "info"})


class FakePagerDuty(FakeHttpServer):
    """POST /v2/enqueue. Modes besides healthy, down and slow: "rate-limited" (HTTP 429).

    A valid event gets 202 with its dedup key; an invalid one gets 400 with the errors, as
    the real API does. `events` holds the accepted events in order.
    """

    modes: ClassVar[frozenset[str]] = FakeHttpServer.modes | {"rate-limited"}
    name: ClassVar[str] = "fake PagerDuty"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events: list[dict[str, Any]] = []

    @property
    def events_url(self) -> str:
        return self.base_url + EVENTS_PATH

    def open_alerts(self) -> set[str]:
        """Dedup keys triggered and not resolved since."""
        open_keys: set[str] = set()
        for event in self.events:
            if event["event_action"] == "trigger":
                open_keys.add(event["dedup_key"])
            elif event["event_action"] == "resolve":
                open_keys.discard(event["dedup_key"])
        return open_keys

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post(EVENTS_PATH, self._enqueue)

    async def _enqueue(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "rate-limited":
            return web.json_response({"status": "throttle event", "message": "Requests for this service are arriving too quickly."}, status=429)
        try:
            event = json.loads(await request.read())
        except ValueError:
            return web.json_response({"status": "invalid event", "message": "Event object is invalid", "errors": ["Malformed JSON"]}, status=400)
        errors = _errors(event)
        if errors:
            return web.json_response({"status": "invalid event", "message": "Event object is invalid", "errors": errors}, status=400)
        self.events.append(event)
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]}, status=202)


def _errors(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["Event must be a JSON object"]
    errors = []
    if not event.get("routing_key"):
        errors.append("'routing_key' is missing or blank")
    if event.get("event_action") not in _ACTIONS:
        errors.append("'event_action' is invalid")
    if event.get("event_action") != "trigger" and not event.get("dedup_key"):
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if event.get("event_action") == "trigger":
        payload = event.get("payload") or {}
        for field in ("summary", "source", "severity"):
            if not payload.get(field):
                errors.append(f"'payload.{field}' is missing or blank")
        if payload.get("severity") and payload["severity"] not in _SEVERITIES:
            errors.append("'payload.severity' is invalid")
    return errors
