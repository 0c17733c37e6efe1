"""Users, user groups and channels of the simulated workspace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.sandbox.slack.replies import ApiError


@dataclass(frozen=True)
class User:
    id: str
    name: str
    real_name: str
    is_bot: bool = False

    def to_api(self, team_id: str) -> dict[str, Any]:
        """Build the user object as users.info returns it."""
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "real_name": self.real_name,
            "deleted": False,
            "is_bot": self.is_bot,
            "profile": {"real_name": self.real_name, "display_name": self.name},
        }


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    is_member: bool = True
    is_private: bool = False
    is_im: bool = False

    def to_api(self) -> dict[str, Any]:
        """Build the conversation object as conversations.info returns it."""
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private and not self.is_im,
            "is_group": self.is_private and not self.is_im,
            "is_im": self.is_im,
            "is_private": self.is_private or self.is_im,
            "is_member": self.is_member,
            "is_archived": False,
        }


class Directory:
    """Lookup tables for users, user groups and channels, keyed by id."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.usergroups: dict[str, tuple[str, ...]] = {}
        self.channels: dict[str, Channel] = {}

    def add_user(self, user: User) -> None:
        self.users[user.id] = user

    def add_usergroup(self, group_id: str, members: list[str] | tuple[str, ...]) -> None:
        self.usergroups[group_id] = tuple(members)

    def add_channel(self, channel: Channel) -> None:
        self.channels[channel.id] = channel

    def user(self, user_id: str) -> User:
        """Return the user or raise `user_not_found`."""
        try:
            return self.users[user_id]
        except KeyError:
            raise ApiError("user_not_found") from None

    def resolve_channel(self, reference: str) -> Channel:
        """Return the channel for an id, a `#name` or a user id (the bot's direct message with them).

        Raises `channel_not_found` for anything else, as Slack does.
        """
        if reference in self.channels:
            return self.channels[reference]

        name = reference.removeprefix("#")
        for channel in self.channels.values():
            if channel.name == name and not channel.is_im:
                return channel

        if reference in self.users:
            return self._direct_message_with(reference)
        raise ApiError("channel_not_found")

    def _direct_message_with(self, user_id: str) -> Channel:
        # Slack opens the app's direct message channel on the first post to a user id.
        channel = Channel(id=f"D{user_id.removeprefix('U')}", name=user_id, is_im=True)
        self.channels.setdefault(channel.id, channel)
        return self.channels[channel.id]
