"""Members of Slack user groups, for roles granted to a group; cached for a short time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import TargetUnavailable

logger = logging.getLogger(__name__)

MEMBERS_TTL_SECONDS = 60.0


class SlackGroupDirectory:
    """Resolve user groups through usergroups.users.list, caching each for `ttl` seconds.

    When Slack cannot be reached, the last known members are used if there are any; otherwise
    the check fails, so nobody gains a role by an outage.
    """

    def __init__(self, client: AsyncWebClient, *, ttl: float = MEMBERS_TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def members(self, group_id: str) -> frozenset[str]:
        cached = self._cache.get(group_id)
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        try:
            response = await self._client.usergroups_users_list(usergroup=group_id)
        except SlackApiError as error:
            code = error.response.get("error")
            if cached is not None:
                logger.warning("usergroups.users.list failed for %s (%s); using members from earlier", group_id, code)
                return cached[1]
            raise TargetUnavailable("slack", f"Could not read the members of user group {group_id} ({code}).", hint="Try again in a minute.") from error
        members = frozenset(response.get("users", []))
        self._cache[group_id] = (self._clock(), members)
        return members
