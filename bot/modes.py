"""The long-running modes: HTTP (`serve`) and Socket Mode (`socket`)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.app import StartUpError
from bot.slack.server import build_web_app

logger = logging.getLogger(__name__)


async def start_http(runtime: Runtime, *, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the HTTP server and return its runner and the port it listens on."""
    signing_secret = runtime.settings.slack_signing_secret
    if signing_secret is None:
        raise ValueError("HTTP mode needs SLACK_SIGNING_SECRET")
    web_app = build_web_app(app=runtime.app, signing_secret=signing_secret.get_secret_value(), metrics=runtime.metrics)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host=host, port=port)
    await site.start()
    bound_port = site._server.sockets[0].getsockname()[1]  # port 0 picks a free port
    logger.info("Serving /slack/events, /healthz and /metrics on %s:%d", host, bound_port)
    return runner, bound_port


async def serve(runtime: Runtime, *, host: str, port: int, stop: asyncio.Event) -> None:
    runner, _ = await start_http(runtime, host=host, port=port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def start_socket(runtime: Runtime) -> AsyncSocketModeHandler:
    app_token = runtime.settings.slack_app_token
    if app_token is None:
        raise ValueError("Socket Mode needs SLACK_APP_TOKEN")
    # The Socket Mode client retries a refused token forever, so the token is checked first.
    checker = AsyncWebClient(base_url=runtime.settings.slack_api_base_url)
    try:
        await checker.apps_connections_open(app_token=app_token.get_secret_value())
    except SlackApiError as error:
        raise StartUpError(
            f"Slack refused SLACK_APP_TOKEN ({error.response.get('error')}): "
            "set it to an app-level token (xapp-...) with the connections:write scope."
        ) from None
    finally:
        if checker.session is not None:
            await checker.session.close()
    handler = AsyncSocketModeHandler(runtime.app, app_token.get_secret_value(), web_client=runtime.client)
    await handler.connect_async()
    logger.info("Connected to Slack over Socket Mode")
    return handler


async def socket(runtime: Runtime, *, stop: asyncio.Event) -> None:
    handler = await start_socket(runtime)
    try:
        await stop.wait()
    finally:
        await handler.close_async()
