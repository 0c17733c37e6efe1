"""Immutable records of what the fake Slack stored and served, read by tests and the console."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

MessageSource = Literal["chat.postMessage", "chat.postEphemeral", "response_url", "user"]
"""Origin of a message: the Web API method, a response_url, or `user` for a message a test posted as a person."""

Block = dict[str, Any]


@dataclass(frozen=True)
class MessageVersion:
    """Text and blocks of a message before one update, and what replaced them."""

    text: str
    blocks: tuple[Block, ...]
    replaced_by: Literal["chat.update", "response_url"]


@dataclass(frozen=True)
class Message:
    """Current state of a stored message. An update stores a new record with one more version."""

    channel: str
    ts: str
    text: str
    blocks: tuple[Block, ...]
    user: str
    source: MessageSource
    thread_ts: str | None = None
    visible_to: str | None = None
    """Id of the only user who can see this ephemeral message, or None for a message visible to the channel."""
    response_url_id: str | None = None
    """Id of the response_url that posted this message, or None when a Web API method did."""
    versions: tuple[MessageVersion, ...] = ()
    """Earlier versions, oldest first."""
    deleted: bool = False

    @property
    def is_ephemeral(self) -> bool:
        return self.visible_to is not None

    def to_api(self) -> dict[str, Any]:
        """Build the message object as Slack returns it in API responses and interaction payloads."""
        body: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "ts": self.ts,
            "text": self.text,
            "blocks": list(self.blocks),
        }
        if self.thread_ts is not None:
            body["thread_ts"] = self.thread_ts
        return body


@dataclass(frozen=True)
class UploadedFile:
    """A file uploaded through files.getUploadURLExternal and shared by files.completeUploadExternal."""

    id: str
    filename: str
    title: str
    content: bytes
    channel: str | None
    thread_ts: str | None = None
    initial_comment: str | None = None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Call:
    """One request the fake responded to, in arrival order."""

    method: str
    """Web API method name, or `response_url` and `file_upload` for those two endpoints."""
    params: dict[str, Any]
    """Request parameters without the token."""
    at: float
    """`time.monotonic()` when the response was ready."""
    ok: bool
    error: str | None
    status: int
    """HTTP status of the response."""


@dataclass(frozen=True)
class Ack:
    """A Socket Mode acknowledgement the app sent for one envelope."""

    envelope_id: str
    payload: dict[str, Any] | None
    elapsed: float | None
    """Seconds from sending the envelope to receiving the ack, or None for a late ack that no sender was waiting for."""
