"""Message storage of the fake Slack: timestamps, posts, updates and deletions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal

from bot.sandbox.slack.records import Block, Message, MessageSource, MessageVersion

MessageEvent = Literal["posted", "updated", "deleted"]
Publish = Callable[[MessageEvent, Message], None]


class MessageStore:
    """Messages keyed by (channel, ts), kept in the order they were first posted."""

    def __init__(self, *, clock: Callable[[], float], publish: Publish) -> None:
        self._clock = clock
        self._publish = publish
        self._messages: dict[tuple[str, str], Message] = {}
        self._last_ts_micros = 0

    def next_ts(self) -> str:
        """Return a message timestamp in Slack's `seconds.micros` form, later than any before it."""
        micros = max(int(self._clock() * 1_000_000), self._last_ts_micros + 1)
        self._last_ts_micros = micros
        seconds, fraction = divmod(micros, 1_000_000)
        return f"{seconds}.{fraction:06d}"

    def post(
        self,
        *,
        channel: str,
        text: str,
        blocks: Sequence[Block],
        user: str,
        source: MessageSource,
        thread_ts: str | None = None,
        visible_to: str | None = None,
        response_url_id: str | None = None,
    ) -> Message:
        message = Message(
            channel=channel,
            ts=self.next_ts(),
            text=text,
            blocks=tuple(blocks),
            user=user,
            source=source,
            thread_ts=thread_ts,
            visible_to=visible_to,
            response_url_id=response_url_id,
        )
        self._messages[(channel, message.ts)] = message
        self._publish("posted", message)
        return message

    def replace(
        self,
        message: Message,
        *,
        text: str,
        blocks: Sequence[Block],
        replaced_by: Literal["chat.update", "response_url"],
    ) -> Message:
        """Store a new version of `message` and keep the old text and blocks in its history."""
        previous = MessageVersion(text=message.text, blocks=message.blocks, replaced_by=replaced_by)
        updated = dataclasses.replace(
            message,
            text=text,
            blocks=tuple(blocks),
            versions=(*message.versions, previous),
        )
        self._messages[(message.channel, message.ts)] = updated
        self._publish("updated", updated)
        return updated

    def delete(self, message: Message) -> Message:
        deleted = dataclasses.replace(message, deleted=True)
        self._messages[(message.channel, message.ts)] = deleted
        self._publish("deleted", deleted)
        return deleted

    def get(self, channel: str, ts: str) -> Message | None:
        return self._messages.get((channel, ts))

    def all(self) -> list[Message]:
        return list(self._messages.values())

    def in_channel(self, channel: str) -> list[Message]:
        return [message for message in self._messages.values() if message.channel == channel]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """Return the parent message (when stored) followed by its replies, oldest first."""
        return [
            message
            for message in self._messages.values()
            if message.channel == channel and (message.ts == thread_ts or message.thread_ts == thread_ts)
        ]
