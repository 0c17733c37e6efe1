"""Posts from scheduled jobs and backup checks to INCIDENT_CHANNEL through the bot's Slack client."""

from __future__ import annotations

import logging
from typing import Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import TargetRejected, TargetUnavailable

logger = logging.getLogger(__name__)

TARGET = "Slack"


class IncidentNotifier(Protocol):
    async def post(self, text: str) -> None:
        """Post `text` (mrkdwn, already escaped by the caller) to the incident channel."""
        ...


class SlackIncidentNotifier:
    def __init__(self, client: AsyncWebClient, *, channel: str) -> None:
        self._client = client
        self.channel = channel

    async def post(self, text: str) -> None:
        try:
            await self._client.chat_postMessage(channel=self.channel, text=text, unfurl_links=False)
        except SlackApiError as error:
            code = error.response.get("error", "unknown") if error.response is not None else "unknown"
            if code in ("ratelimited", "fatal_error", "internal_error", "service_unavailable"):
                raise TargetUnavailable(TARGET, f"Slack did not take the post to {self.channel}: {code}.") from error
            raise TargetRejected(
                TARGET,
                f"Slack rejected the post to {self.channel}: {code}.",
                hint="Invite the bot to INCIDENT_CHANNEL, or correct the channel id.",
            ) from error
        except (OSError, TimeoutError, aiohttp.ClientError) as error:
            raise TargetUnavailable(TARGET, f"Slack could not be reached to post to {self.channel}.") from error
