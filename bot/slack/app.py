"""The Bolt app: the AsyncApp with the bot's listeners, authorized without I/O on the ack path."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BotIdentity:
    """The bot's identity in the workspace, learned once at start-up through auth.test."""

    team_id: str
    user_id: str
    bot_id: str | None


class StartUpError(Exception):
    """Slack could not be reached or refused the bot's credentials; the message names the fix."""


async def identify(client: AsyncWebClient) -> BotIdentity:
    """Learn the bot's identity with auth.test; raise StartUpError with the fix when it fails."""
    try:
        response = await client.auth_test()
    except SlackApiError as error:
        code = error.response.get("error")
        raise StartUpError(
            f"Slack refused SLACK_BOT_TOKEN ({code}): set it to the app's Bot User OAuth Token (xoxb-...)."
        ) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        raise StartUpError(
            f"Could not reach the Slack Web API at {client.base_url} ({type(error).__name__}): "
            "check SLACK_API_URL and the network."
        ) from None
    identity = BotIdentity(team_id=response["team_id"], user_id=response["user_id"], bot_id=response.get("bot_id"))
    logger.info("Connected to Slack workspace %s as %s", identity.team_id, identity.user_id)
    return identity


def build_app(
    *,
    client: AsyncWebClient,
    bot_token: str | None,
    signing_secret: str | None,
    identity: BotIdentity,
) -> AsyncApp:
    """Build the AsyncApp; listeners are added by `handlers.register`."""

    async def authorize(**_: object) -> AuthorizeResult:
        # Bolt's default authorization calls auth.test on the first request, before the ack;
        # the identity learned at start-up makes that call unnecessary.
        return AuthorizeResult(
            enterprise_id=None,
            team_id=identity.team_id,
            bot_user_id=identity.user_id,
            bot_id=identity.bot_id,
            bot_token=bot_token,
        )

    return AsyncApp(
        client=client,
        signing_secret=signing_secret,
        authorize=authorize,
        request_verification_enabled=signing_secret is not None,
        process_before_response=False,
        logger=logging.getLogger("slack_bolt.meridian"),
    )
