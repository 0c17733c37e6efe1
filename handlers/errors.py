"""The one error handler: an unexpected error gets an id that is in the reply and in the log."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from slack_bolt.app.async_app import AsyncApp

logger = logging.getLogger(__name__)


def register(app: AsyncApp) -> None:
    @app.error
    async def on_error(error: Exception, body: dict[str, Any], respond: Any) -> None:
        error_id = secrets.token_hex(4)
        logger.error("Unexpected error %s while handling a Slack request", error_id, exc_info=error)
        if body.get("response_url"):
            try:
                await respond(
                    response_type="ephemeral",
                    text=f"Something went wrong on my side (error id `{error_id}`). The bot's log has the details.",
                )
            except Exception:
                logger.exception("Could not tell the user about error %s", error_id)
