"""Roles: viewer < operator < approver < admin, each with the rights of the ones before it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import IntEnum
from typing import Protocol

from bot.engine.procedure import Risk
from bot.errors import BotError, PermissionDenied

logger = logging.getLogger(__name__)


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    APPROVER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def setting(self) -> str:
        return self.name + "S"


class GroupDirectory(Protocol):
    async def members(self, group_id: str) -> frozenset[str]:
        """Return the user ids in a Slack user group (S...)."""
        ...


def role_to_request(risk: Risk) -> Role:
    """Read-only commands need a viewer; anything that writes needs an operator."""
    return Role.VIEWER if risk is Risk.READ else Role.OPERATOR


class Policy:
    def __init__(
        self,
        *,
        viewers: Sequence[str],
        operators: Sequence[str],
        approvers: Sequence[str],
        admins: Sequence[str],
        groups: GroupDirectory,
    ) -> None:
        self._members = {
            Role.VIEWER: tuple(viewers),
            Role.OPERATOR: tuple(operators),
            Role.APPROVER: tuple(approvers),
            Role.ADMIN: tuple(admins),
        }
        self._groups = groups

    async def has(self, user_id: str, role: Role) -> bool:
        """Tell whether `user_id` has `role` or a higher one, directly or through a user group.

        Direct listings are checked first, so an unreadable user group only matters for users
        who could get the role through it alone; then the error is raised, never ignored.
        """
        if role is Role.VIEWER and not self._members[Role.VIEWER]:
            return True  # an empty VIEWERS lets every member read
        granting = [entry for level in Role if level >= role for entry in self._members[level]]
        if user_id in granting:
            return True

        unreadable: BotError | None = None
        for group in (entry for entry in granting if entry.startswith("S")):
            try:
                if user_id in await self._groups.members(group):
                    return True
            except BotError as error:
                unreadable = error
        if unreadable is not None:
            raise unreadable
        return False

    async def require(self, user_id: str, role: Role, *, action: str) -> None:
        """Raise PermissionDenied naming the role that `action` needs, unless the user has it."""
        if await self.has(user_id, role):
            return
        logger.info("Refused %s to %s: needs the %s role", action, user_id, role.label)
        raise PermissionDenied(
            f"You need the {role.label} role to {action}.",
            role=role.label,
            hint=f"An admin can add you, or a user group you are in, to {role.setting}.",
        )
