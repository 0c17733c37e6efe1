"""HTTP mode: POST /slack/events, GET /healthz and GET /metrics on one aiohttp server."""

from __future__ import annotations

import logging

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp

from bot.observability.metrics import CONTENT_TYPE, BotMetrics
from bot.slack.guard import check_body, check_signature

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
MAX_BODY_BYTES = 1 << 20


def build_web_app(*, app: AsyncApp, signing_secret: str, metrics: BotMetrics) -> web.Application:
    async def slack_events(request: web.Request) -> web.Response:
        body = await request.read()
        rejection = check_signature(
            body=body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp"),
            signature=request.headers.get("X-Slack-Signature"),
            signing_secret=signing_secret,
        )
        if rejection is None:
            rejection = check_body(body=body, content_type=request.headers.get("Content-Type", ""))
        if rejection is not None:
            metrics.rejected_requests.labels(reason=rejection.reason).inc()
            logger.warning("Rejected a request to %s: %s", EVENTS_PATH, rejection.reason)
            return web.Response(status=rejection.status, text=rejection.reason)

        bolt_response = await app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def prometheus(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    web_app = web.Application(client_max_size=MAX_BODY_BYTES)
    web_app.router.add_post(EVENTS_PATH, slack_events)
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/metrics", prometheus)
    return web_app
