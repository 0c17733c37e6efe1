"""Resolution buttons on finished investigation cards: each press starts that procedure as a new run.

The button carries only the run id and the offer's index. The command itself is read from the
stored run, so a press can start only what the findings offered. The engine checks the
presser's role, and the new run waits for its own approval.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.app.async_app import AsyncApp

from bot.engine.catalog import Catalog, Invocation
from bot.engine.resolutions import offered_resolutions
from bot.engine.runner import Engine
from bot.errors import BotError, Refused
from bot.observability import context
from bot.slack.mrkdwn import escape
from bot.slack.resolutions import ACTION_PATTERN, parse_resolution_value

logger = logging.getLogger(__name__)


def register(app: AsyncApp, *, engine: Engine, catalog: Catalog) -> None:
    @app.action(ACTION_PATTERN)
    async def on_resolution(ack: Any, body: dict[str, Any], respond: Any) -> None:
        with engine.busy():
            await ack()
            context.correlation_id.set(context.new_correlation_id())
            action = body["actions"][0]
            user_id = body.get("user", {}).get("id", "")
            channel_id = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id", "")

            # Socket Mode redelivers an envelope that was not acked in time; its trigger_id repeats.
            delivery_key = f"resolution:{body.get('trigger_id') or action.get('action_ts')}"
            if not await engine.store.claim_delivery(delivery_key):
                logger.info("Ignored a redelivered resolution press %s", delivery_key)
                return
            try:
                invocation = await _offered_invocation(engine, catalog, action.get("value", ""))
                logger.info("%s pressed the resolution `%s`", user_id, invocation.text)
                await engine.submit(invocation, requester=user_id, channel_id=channel_id, response_url=body.get("response_url"))
            except BotError as error:
                logger.info("Refused a resolution press by %s: %s", user_id, error.message)
                await respond(response_type="ephemeral", replace_original=False, text=escape(error.user_message))


async def _offered_invocation(engine: Engine, catalog: Catalog, value: str) -> Invocation:
    parsed_value = parse_resolution_value(value)
    run = await engine.store.get_run(parsed_value[0]) if parsed_value else None
    offers = offered_resolutions(run) if run is not None else []
    if parsed_value is None or not 0 <= parsed_value[1] < len(offers):
        raise Refused("This button no longer matches a resolution the run offered.", hint="Run the investigation again.")
    parsed = catalog.parse(offers[parsed_value[1]].command)
    if not isinstance(parsed, Invocation) or parsed.command.procedure is None:
        raise Refused(f"`{offers[parsed_value[1]].command}` is not a procedure the bot can start.")
    return parsed
