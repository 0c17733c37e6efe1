"""Client for the Next.js frontend's `/api/health` endpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from bot.clients.excerpt import excerpt
from bot.clients.http_request import (
    HttpReply,
    TargetLabel,
    display_url,
    json_type_name,
    raise_for_error_status,
    read_json_object,
    send_request,
)
from bot.errors import TargetResponseInvalid, TargetUnavailable

logger = logging.getLogger(__name__)

TARGET = "frontend"


@dataclass(frozen=True, slots=True)
class FrontendHealth:
    """The frontend's health report: `status` is "ok" when healthy, other values as sent."""

    status: str
    http_status: int
    latency_seconds: float

    @property
    def is_healthy(self) -> bool:
        return self.status == "ok"


class Frontend(Protocol):
    """The frontend as the procedures use it."""

    async def health(self) -> FrontendHealth: ...


class FrontendClient:
    """HTTP client for the frontend, sharing the caller's aiohttp session."""

    def __init__(self, *, base_url: str, session: aiohttp.ClientSession, timeout: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = timeout
        self._label = TargetLabel(
            target=TARGET,
            display_name=f"the frontend at {display_url(base_url)}",
        )

    def __repr__(self) -> str:
        return f"FrontendClient(base_url={display_url(self._base_url)!r})"

    async def health(self) -> FrontendHealth:
        """Fetch `/api/health`.

        A 5xx response that still contains a JSON status is a result, and one without it
        raises TargetUnavailable. An unreadable 2xx body raises TargetResponseInvalid.
        """
        reply = await send_request(
            self._session,
            "GET",
            f"{self._base_url}/api/health",
            label=self._label,
            timeout=self._timeout,
        )

        if reply.status >= 500:
            try:
                return _parse_health(reply)
            except ValueError as exc:
                raise TargetUnavailable(
                    TARGET,
                    f"The frontend returned HTTP {reply.status} without a readable health report.",
                    hint="Check the frontend's deployment and logs.",
                ) from exc

        raise_for_error_status(reply, label=self._label)
        try:
            return _parse_health(reply)
        except ValueError as exc:
            raise TargetResponseInvalid(
                TARGET,
                f"The frontend's /api/health returned an invalid health report ({exc}): "
                f'"{excerpt(reply.body)}"',
            ) from exc


def _parse_health(reply: HttpReply) -> FrontendHealth:
    payload = read_json_object(reply)
    status = payload.get("status")
    if status is None:
        raise ValueError("status is missing")
    if not isinstance(status, str):
        raise ValueError(f"status is a JSON {json_type_name(status)}")
    return FrontendHealth(
        status=status,
        http_status=reply.status,
        latency_seconds=reply.latency_seconds,
    )
