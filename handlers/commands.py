"""The `/meridian` slash command: parse, ack, hand over to the engine."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.app.async_app import AsyncApp

from bot.engine.catalog import SLASH_COMMAND, Catalog, HelpRequest, Invocation
from bot.engine.runner import Engine
from bot.errors import BotError, UsageError
from bot.observability import context
from bot.observability.metrics import BotMetrics
from bot.slack.help import render_help
from bot.slack.mrkdwn import escape
from handlers.builtins import answer_builtin

logger = logging.getLogger(__name__)


def register(app: AsyncApp, *, engine: Engine, catalog: Catalog, metrics: BotMetrics) -> None:
    @app.command(SLASH_COMMAND)
    async def on_command(ack: Any, body: dict[str, Any], respond: Any) -> None:
        with engine.busy():
            await _handle(ack, body, respond)

    async def _handle(ack: Any, body: dict[str, Any], respond: Any) -> None:
        context.correlation_id.set(context.new_correlation_id())
        text = body.get("text", "")
        user_id, channel_id = body.get("user_id", ""), body.get("channel_id", "")

        # Parsing is pure computation, so usage errors and help go back in the ack itself.
        try:
            parsed = catalog.parse(text)
            if isinstance(parsed, HelpRequest):
                await ack(response_type="ephemeral", text=render_help(catalog, parsed.topic))
                metrics.commands.labels(command="help", outcome="answered").inc()
                return
        except UsageError as error:
            await ack(response_type="ephemeral", text=escape(error.user_message))
            metrics.commands.labels(command="invalid", outcome="usage_error").inc()
            logger.info("Usage error from %s: %s", user_id, error.message)
            return
        await ack()

        # Socket Mode redelivers an envelope that was not acked in time; its trigger_id repeats.
        delivery_key = f"command:{body.get('trigger_id') or hash(text + user_id + channel_id)}"
        if not await engine.store.claim_delivery(delivery_key):
            logger.info("Ignored a redelivered command %s", delivery_key)
            return

        command_name = parsed.command.name
        try:
            if parsed.command.builtin is not None:
                reply = await answer_builtin(engine, parsed, user_id=user_id)
                await respond(response_type="ephemeral", text=reply)
            else:
                await _start_run(parsed, user_id=user_id, channel_id=channel_id, response_url=body.get("response_url"))
        except BotError as error:
            metrics.commands.labels(command=command_name, outcome="refused").inc()
            logger.info("Refused %s to %s: %s", command_name, user_id, error.message)
            await respond(response_type="ephemeral", text=escape(error.user_message))
            return
        metrics.commands.labels(command=command_name, outcome="started").inc()

    async def _start_run(invocation: Invocation, *, user_id: str, channel_id: str, response_url: str | None) -> None:
        await engine.submit(invocation, requester=user_id, channel_id=channel_id, response_url=response_url)
