"""State of the simulated workspace that the fake Web API methods read and change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from bot.sandbox.slack.directory import Directory
from bot.sandbox.slack.messages import MessageStore
from bot.sandbox.slack.records import Message, UploadedFile

StoreEvent = Literal["posted", "updated", "deleted", "file"]
Publish = Callable[[StoreEvent, Any], None]


class Workspace:
    """Directory, messages and files of one team, plus the URL root the fake server listens on."""

    def __init__(
        self,
        *,
        team_id: str,
        team_domain: str,
        bot_user_id: str,
        bot_id: str,
        clock: Callable[[], float],
        publish: Publish,
    ) -> None:
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.publish = publish
        self.directory = Directory()
        self.messages = MessageStore(clock=clock, publish=publish)
        self.files: list[UploadedFile] = []
        self.root_url = ""
        """`http://127.0.0.1:PORT`, set when the server starts; upload, hook and permalink URLs use it."""

    def live_message(self, channel: str, ts: str) -> Message | None:
        """Return the message at (channel, ts) unless it is missing or deleted."""
        message = self.messages.get(channel, ts)
        if message is None or message.deleted:
            return None
        return message

    def permalink(self, message: Message) -> str:
        link = f"{self.root_url}/archives/{message.channel}/p{message.ts.replace('.', '')}"
        if message.thread_ts is not None and message.thread_ts != message.ts:
            link += f"?thread_ts={message.thread_ts}&cid={message.channel}"
        return link
