"""The baseline: a Bolt app whose `/meridian` listener only acks, served the way the bot is served.

It runs slack-bolt's AsyncApp behind aiohttp on 127.0.0.1, with the bot's signing secret, the
same `process_before_response` setting and an `authorize` function without I/O. The difference
between its ack latency and the bot's is the cost of what the bot adds.
"""

from __future__ import annotations

import logging
from typing import Any, Self

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient

from bot.engine.catalog import SLASH_COMMAND
from bot.sandbox.environment import SIGNING_SECRET
from bot.sandbox.slack.driver import SlackDriver
from bot.sandbox.slack.web_api import FakeSlack
from bot.slack.server import EVENTS_PATH

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"


class BaselineApp:
    """Start with `await baseline.start()`, send commands through `baseline.driver`, then `stop()`.

    It has its own FakeSlack, which issues the response URLs the driver puts in each command
    and is the Web API base URL of the app's client, so no request leaves 127.0.0.1.
    """

    def __init__(self) -> None:
        self.slack = FakeSlack()
        self._runner: web.AppRunner | None = None
        self._driver: SlackDriver | None = None

    @property
    def driver(self) -> SlackDriver:
        if self._driver is None:
            raise RuntimeError("BaselineApp has no driver before start().")
        return self._driver

    async def start(self) -> None:
        await self.slack.start()
        app = _build_ack_only_app(self.slack)

        async def slack_events(request: web.Request) -> web.Response:
            bolt_response = await app.async_dispatch(await to_bolt_request(request))
            return await to_aiohttp_response(bolt_response)

        web_app = web.Application()
        web_app.router.add_post(EVENTS_PATH, slack_events)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, 0).start()
        self._runner = runner

        port = runner.addresses[0][1]
        events_url = f"http://{HOST}:{port}{EVENTS_PATH}"
        self._driver = SlackDriver(self.slack, signing_secret=SIGNING_SECRET, events_url=events_url)
        logger.info("Baseline app listening on %s", events_url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.slack.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _build_ack_only_app(slack: FakeSlack) -> AsyncApp:
    # No token here: Bolt gives each request a client with the token from `authorize`.
    client = AsyncWebClient(base_url=slack.base_url)
    authorization = AuthorizeResult(
        enterprise_id=None,
        team_id=slack.team_id,
        bot_user_id=slack.bot_user_id,
        bot_token=slack.bot_token,
    )

    async def authorize(**_: object) -> AuthorizeResult:
        return authorization

    app = AsyncApp(
        client=client,
        signing_secret=SIGNING_SECRET,
        authorize=authorize,
        # The bot's setting: Bolt sends the HTTP response once ack() is called, and the listener keeps running.
        process_before_response=False,
        logger=logging.getLogger("slack_bolt.bench_baseline"),
    )

    @app.command(SLASH_COMMAND)
    async def ack_only(ack: Any) -> None:
        await ack()

    return app
