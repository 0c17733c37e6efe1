"""Buttons on run cards: Approve, Deny and Cancel. The engine enforces every rule."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.app.async_app import AsyncApp

from bot.engine.decisions import Decision, decide
from bot.engine.runner import Engine
from bot.errors import BotError
from bot.observability import context
from bot.slack.ids import RunAction, parse_decision_value
from bot.slack.mrkdwn import escape

logger = logging.getLogger(__name__)

_DECISIONS = {RunAction.APPROVE: Decision.APPROVE, RunAction.DENY: Decision.DENY, RunAction.CANCEL: Decision.CANCEL}
_ACTION_IDS = re.compile("^(" + "|".join(re.escape(action.value) for action in RunAction) + ")$")


def register(app: AsyncApp, *, engine: Engine) -> None:
    @app.action(_ACTION_IDS)
    async def on_decision(ack: Any, body: dict[str, Any], respond: Any) -> None:
        with engine.busy():
            await ack()
            context.correlation_id.set(context.new_correlation_id())
            action = body["actions"][0]
            user_id = body.get("user", {}).get("id", "")
            run_id, digest = parse_decision_value(action.get("value", ""))
            decision = _DECISIONS[RunAction(action["action_id"])]
            logger.info("%s pressed %s on run %s", user_id, decision.value, run_id)

            try:
                reply = await decide(engine, run_id=run_id, user=user_id, decision=decision, digest=digest)
            except BotError as error:
                logger.info("Refused %s by %s on run %s: %s", decision.value, user_id, run_id, error.message)
                reply = error.user_message
            await respond(response_type="ephemeral", replace_original=False, text=escape(reply))
