"""`SlackDriver`: sends the app what Slack sends, over signed HTTP or through Socket Mode."""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import aiohttp

from bot.sandbox.slack.payloads import Button, block_actions_payload, buttons_of, slash_command_fields
from bot.sandbox.slack.records import Ack, Message
from bot.sandbox.slack.signing import sign
from bot.sandbox.slack.web_api import FakeSlack

logger = logging.getLogger(__name__)

Via = Literal["http", "socket"]
DeliveryKind = Literal["slash_commands", "interactive", "raw"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


@dataclass(frozen=True)
class Delivery:
    """One request delivered to the app and what came back."""

    via: Via
    kind: DeliveryKind
    payload: dict[str, Any]
    """Slash command fields or interaction payload as sent, so a test can send it again."""
    status: int | None
    """HTTP status of the app's response, or None for Socket Mode."""
    body: str
    """Response body over HTTP, or the ack payload as JSON over Socket Mode (empty when it had none)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    elapsed: float = 0.0
    """Seconds until the app responded, or until the ack timed out."""
    envelope_id: str | None = None
    retry_attempt: int = 0
    ack: Ack | None = None

    @property
    def acknowledged(self) -> bool:
        """Whether the app acknowledged in time: HTTP 200, or an ack over Socket Mode."""
        if self.via == "socket":
            return self.ack is not None
        return self.status == 200

    def json(self) -> Any:
        """Return the body parsed as JSON, or None for an empty body."""
        return json.loads(self.body) if self.body else None


class SlackDriver:
    """Plays the Slack side of slash commands and button clicks against the app under test."""

    def __init__(
        self,
        fake: FakeSlack,
        *,
        signing_secret: str,
        events_url: str | None = None,
        team_domain: str = "sandbox",
        api_app_id: str | None = None,
        verification_token: str = "sandbox-verification-token",
        clock: Callable[[], float] = time.time,
        request_timeout: float = 10.0,
        ack_timeout: float = 3.0,
    ) -> None:
        if events_url is not None:
            _require_loopback(events_url)
        self._fake = fake
        self._signing_secret = signing_secret
        self._events_url = events_url
        self._team_domain = team_domain
        self._api_app_id = api_app_id or fake.app_id
        self._verification_token = verification_token
        self._clock = clock
        self._request_timeout = request_timeout
        self._ack_timeout = ack_timeout
        self._trigger_counter = itertools.count(1)

    async def command(
        self,
        text: str,
        *,
        user_id: str,
        channel_id: str,
        command: str = "/meridian",
        via: Via | None = None,
    ) -> Delivery:
        """Send a slash command as `user_id` typed it in `channel_id`."""
        fields = slash_command_fields(
            token=self._verification_token,
            team_id=self._fake.team_id,
            team_domain=self._team_domain,
            channel_id=channel_id,
            channel_name=self._channel_name(channel_id),
            user_id=user_id,
            user_name=self._user_name(user_id),
            command=command,
            text=text,
            api_app_id=self._api_app_id,
            response_url=self._fake.new_response_url(channel_id, user_id),
            trigger_id=self._new_trigger_id(),
        )
        if self._transport(via) == "socket":
            return await self._send_envelope("slash_commands", fields)
        return await self._post_signed("slash_commands", fields, urlencode(fields).encode())

    async def press(
        self,
        message: Message,
        *,
        user_id: str,
        action_id: str | None = None,
        index: int | None = None,
        via: Via | None = None,
    ) -> Delivery:
        """Click a button of `message`, chosen by `action_id` or by `index` among its buttons.

        With neither given, the message must have exactly one button. Raises LookupError otherwise.
        """
        button = _find_button(message, action_id=action_id, index=index)
        payload = block_actions_payload(
            message=message,
            button=button,
            token=self._verification_token,
            team_id=self._fake.team_id,
            team_domain=self._team_domain,
            channel_name=self._channel_name(message.channel),
            user_id=user_id,
            user_name=self._user_name(user_id),
            api_app_id=self._api_app_id,
            response_url=self._fake.new_response_url(message.channel, user_id, message_ts=message.ts),
            trigger_id=self._new_trigger_id(),
            action_ts=f"{self._clock():.6f}",
        )
        if self._transport(via) == "socket":
            return await self._send_envelope("interactive", payload)
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self._post_signed("interactive", payload, body)

    async def redeliver(self, delivery: Delivery) -> Delivery:
        """Send a Socket Mode envelope again, as Slack does when the app did not ack it in time."""
        if delivery.via != "socket" or delivery.kind == "raw":
            raise ValueError("Only Socket Mode deliveries are redelivered; Slack does not retry these over HTTP.")
        return await self._send_envelope(
            delivery.kind,
            delivery.payload,
            envelope_id=delivery.envelope_id,
            retry_attempt=delivery.retry_attempt + 1,
            retry_reason="timeout",
        )

    async def post_raw(self, body: bytes, headers: Mapping[str, str]) -> Delivery:
        """POST `body` with exactly `headers` to the events URL, for signature and parsing tests."""
        return await self._post("raw", {}, body, dict(headers))

    def signed_headers(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """Build the headers Slack sends with `body`, signed at `timestamp` (default: the driver's clock)."""
        request_timestamp = int(self._clock()) if timestamp is None else timestamp
        return {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": SLACK_USER_AGENT,
            "X-Slack-Request-Timestamp": str(request_timestamp),
            "X-Slack-Signature": sign(self._signing_secret, request_timestamp, body),
        }

    async def _post_signed(self, kind: DeliveryKind, payload: dict[str, Any], body: bytes) -> Delivery:
        return await self._post(kind, payload, body, self.signed_headers(body))

    async def _post(
        self,
        kind: DeliveryKind,
        payload: dict[str, Any],
        body: bytes,
        headers: dict[str, str],
    ) -> Delivery:
        if self._events_url is None:
            raise RuntimeError("SlackDriver has no events_url, so it can deliver only through Socket Mode.")

        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=self._request_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(self._events_url, data=body, headers=headers) as response:
                text = await response.text()
                response_headers = dict(response.headers)
                status = response.status
        elapsed = time.monotonic() - started
        logger.debug("Delivered %s over HTTP: status %d after %.3f s", kind, status, elapsed)
        return Delivery(
            via="http",
            kind=kind,
            payload=payload,
            status=status,
            body=text,
            headers=response_headers,
            elapsed=elapsed,
        )

    async def _send_envelope(
        self,
        kind: Literal["slash_commands", "interactive"],
        payload: dict[str, Any],
        *,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> Delivery:
        envelope_id = envelope_id or secrets.token_hex(16)
        started = time.monotonic()
        ack = await self._fake.send_envelope(
            kind,
            payload,
            envelope_id=envelope_id,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
            ack_timeout=self._ack_timeout,
        )
        elapsed = time.monotonic() - started
        body = json.dumps(ack.payload) if ack is not None and ack.payload is not None else ""
        return Delivery(
            via="socket",
            kind=kind,
            payload=payload,
            status=None,
            body=body,
            elapsed=elapsed,
            envelope_id=envelope_id,
            retry_attempt=retry_attempt,
            ack=ack,
        )

    def _transport(self, via: Via | None) -> Via:
        if via is not None:
            return via
        return "http" if self._events_url is not None else "socket"

    def _new_trigger_id(self) -> str:
        return f"{next(self._trigger_counter)}.{self._fake.team_id}.{secrets.token_hex(16)}"

    def _channel_name(self, channel_id: str) -> str:
        channel = self._fake.workspace.directory.channels.get(channel_id)
        if channel is None:
            return channel_id
        # Slack names direct message channels this way in slash command and interaction payloads.
        return "directmessage" if channel.is_im else channel.name

    def _user_name(self, user_id: str) -> str:
        user = self._fake.workspace.directory.users.get(user_id)
        return user.name if user is not None else user_id


def _find_button(message: Message, *, action_id: str | None, index: int | None) -> Button:
    buttons = buttons_of(message.blocks)
    available = ", ".join(button.action_id or "(no action_id)" for button in buttons) or "none"

    if action_id is not None:
        for button in buttons:
            if button.action_id == action_id:
                return button
        raise LookupError(f"Message {message.ts} has no button with action_id {action_id!r}; buttons: {available}.")
    if index is not None:
        if not 0 <= index < len(buttons):
            raise LookupError(f"Message {message.ts} has no button at index {index}; buttons: {available}.")
        return buttons[index]
    if len(buttons) != 1:
        raise LookupError(
            f"Message {message.ts} has {len(buttons)} buttons ({available}); pass action_id or index to pick one."
        )
    return buttons[0]


def _require_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"events_url must point at a loopback address (127.0.0.1, ::1 or localhost), got {url!r}.")
