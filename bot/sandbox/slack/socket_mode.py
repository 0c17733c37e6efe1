"""Fake Socket Mode: apps.connections.open and the WebSocket that carries envelopes and acks.

Message shapes follow slack_sdk 3.48's aiohttp `SocketModeClient`. The server greets each connection
with a `hello` message and responds to WebSocket pings with pongs (aiohttp does this by itself). It may
send a `disconnect` message, and the client then opens a new connection through apps.connections.open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web

from bot.sandbox.slack.records import Ack
from bot.sandbox.slack.replies import Params
from bot.sandbox.slack.workspace import Workspace

logger = logging.getLogger(__name__)

EnvelopeType = Literal["slash_commands", "interactive", "events_api"]


@dataclass(frozen=True)
class SentEnvelope:
    """An envelope as sent to the app, with `time.monotonic()` at sending."""

    envelope: dict[str, Any]
    sent_at: float

    @property
    def envelope_id(self) -> str:
        return str(self.envelope["envelope_id"])


class SocketModeServer:
    """Hands out WebSocket URLs, keeps the open connections and matches acks to envelopes."""

    def __init__(self, *, app_id: str, notify: Callable[[], None]) -> None:
        self._app_id = app_id
        self._notify = notify
        self._tickets: set[str] = set()
        self._connections: list[web.WebSocketResponse] = []
        self._pending: dict[str, tuple[asyncio.Future[Ack], float]] = {}
        self.envelopes: list[SentEnvelope] = []
        self.acks: list[Ack] = []
        self.connections_opened = 0

    @property
    def connected(self) -> bool:
        return any(not connection.closed for connection in self._connections)

    def open_connection(self, workspace: Workspace, params: Params) -> dict[str, Any]:
        """Return a single-use WebSocket URL on this server, as apps.connections.open does."""
        ticket = secrets.token_hex(8)
        self._tickets.add(ticket)
        ws_root = workspace.root_url.replace("http://", "ws://", 1)
        return {"url": f"{ws_root}/socket-mode/{ticket}"}

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.match_info["ticket"]
        if ticket not in self._tickets:
            return web.Response(status=404, text=f"Socket Mode ticket {ticket} is unknown or already used.\n")
        self._tickets.discard(ticket)

        connection = web.WebSocketResponse(autoping=True)
        await connection.prepare(request)
        self._connections.append(connection)
        self.connections_opened += 1
        await connection.send_json(self._hello())
        logger.info("Socket Mode client connected (%d open)", len(self._open_connections()))
        self._notify()

        try:
            async for frame in connection:
                if frame.type == WSMsgType.TEXT:
                    self._receive(frame.data)
        finally:
            self._connections.remove(connection)
            logger.info("Socket Mode client disconnected (%d open)", len(self._open_connections()))
            self._notify()
        return connection

    async def send_envelope(
        self,
        envelope_type: EnvelopeType,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        envelope_id: str | None = None,
        accepts_response_payload: bool | None = None,
        ack_timeout: float = 3.0,
    ) -> Ack | None:
        """Send one envelope to the newest open connection and wait up to `ack_timeout` seconds for its ack.

        Returns None when no ack arrived in time. Raises RuntimeError when no client is connected.
        """
        connection = self._newest_connection()
        if accepts_response_payload is None:
            # Slack lets the ack carry the reply for slash commands, not for block_actions.
            accepts_response_payload = envelope_type == "slash_commands"
        envelope = {
            "envelope_id": envelope_id or str(uuid.uuid4()),
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        sent = SentEnvelope(envelope=envelope, sent_at=time.monotonic())
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[sent.envelope_id] = (future, sent.sent_at)

        try:
            await connection.send_json(envelope)
            self.envelopes.append(sent)
            self._notify()
            return await asyncio.wait_for(future, ack_timeout)
        except TimeoutError:
            logger.info("No ack for envelope %s within %.1f s", sent.envelope_id, ack_timeout)
            return None
        finally:
            self._pending.pop(sent.envelope_id, None)

    async def disconnect_clients(self, reason: str = "refresh_requested") -> None:
        """Ask every connected client to reconnect, as Slack does before it recycles a connection."""
        for connection in self._open_connections():
            await connection.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "sandbox"}})

    async def close(self) -> None:
        for connection in list(self._connections):
            await connection.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        for future, _ in self._pending.values():
            future.cancel()

    def _receive(self, data: str) -> None:
        try:
            message = json.loads(data)
        except json.JSONDecodeError:
            logger.warning("Ignored a Socket Mode frame that is not JSON: %.200s", data)
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        if not isinstance(envelope_id, str):
            logger.warning("Ignored a Socket Mode frame without envelope_id: %.200s", data)
            return

        future, sent_at = self._pending.get(envelope_id, (None, None))
        ack = Ack(
            envelope_id=envelope_id,
            payload=message.get("payload"),
            elapsed=time.monotonic() - sent_at if sent_at is not None else None,
        )
        self.acks.append(ack)
        if future is None:
            logger.info("Received a late or unknown ack for envelope %s", envelope_id)
        elif not future.done():
            future.set_result(ack)
        self._notify()

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": len(self._open_connections()),
            "debug_info": {"host": "sandbox", "build_number": 1, "approximate_connection_time": 3600},
            "connection_info": {"app_id": self._app_id},
        }

    def _open_connections(self) -> list[web.WebSocketResponse]:
        return [connection for connection in self._connections if not connection.closed]

    def _newest_connection(self) -> web.WebSocketResponse:
        open_connections = self._open_connections()
        if not open_connections:
            raise RuntimeError("No Socket Mode client is connected; await wait_for_socket_client() first.")
        return open_connections[-1]
