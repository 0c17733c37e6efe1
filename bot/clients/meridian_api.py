"""Client for the Meridian API's `/health` and `/metrics` endpoints."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp
from pydantic import SecretStr

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
from bot.errors import TargetRejected, TargetResponseInvalid, TargetUnavailable

logger = logging.getLogger(__name__)

TARGET = "meridian-api"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ApiHealth:
    """The API's health report.

    `status` is "ok" when healthy and "unhealthy" (with `error`) when not; other values
    are kept as sent. Fields that the report left out are None.
    """

    status: str
    version: str | None
    oracle_enabled: bool | None
    baskets_count: int | None
    error: str | None
    http_status: int
    latency_seconds: float

    @property
    def is_healthy(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The x-ratelimit headers of one API response; a header that was missing or not a number is None.

    `reset` is the header's raw number: the API's documentation does not say whether it counts
    seconds until the window resets or a Unix time, so it is shown as sent.
    """

    limit: int | None
    remaining: int | None
    reset: int | None
    retry_after: str | None
    http_status: int
    path: str

    @property
    def is_rate_limited(self) -> bool:
        return self.http_status == 429 or self.remaining == 0


class MeridianApi(Protocol):
    """The Meridian API as the procedures use it."""

    async def health(self) -> ApiHealth: ...

    async def metrics_text(self) -> str: ...

    async def rate_limit_headers(self) -> RateLimitHeaders: ...


class MeridianApiClient:
    """HTTP client for the Meridian API, sharing the caller's aiohttp session."""

    def __init__(
        self,
        *,
        base_url: str,
        session: aiohttp.ClientSession,
        timeout: float,
        metrics_token: SecretStr | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = timeout
        self._metrics_token = metrics_token
        self._label = TargetLabel(
            target=TARGET,
            display_name=f"the Meridian API at {display_url(base_url)}",
        )

    def __repr__(self) -> str:
        return f"MeridianApiClient(base_url={display_url(self._base_url)!r})"

    async def health(self) -> ApiHealth:
        """Fetch `/health`.

        An unhealthy report is a result, whether it comes with HTTP 503 or 200. A 5xx
        without a readable report raises TargetUnavailable, and an unreadable 2xx body
        raises TargetResponseInvalid.
        """
        reply = await self._get("/health")

        if reply.status >= 500:
            try:
                return _parse_health(reply)
            except ValueError as exc:
                raise TargetUnavailable(
                    TARGET,
                    f"The Meridian API returned HTTP {reply.status} without a readable "
                    "health report.",
                    hint="Check the API pods and their logs.",
                ) from exc

        raise_for_error_status(reply, label=self._label)
        try:
            return _parse_health(reply)
        except ValueError as exc:
            raise TargetResponseInvalid(
                TARGET,
                f"The Meridian API's /health returned an invalid health report ({exc}): "
                f'"{excerpt(reply.body, secrets=self._secrets())}"',
            ) from exc

    async def metrics_text(self) -> str:
        """Fetch `/metrics` with the bearer token and return the Prometheus text as sent."""
        headers = {}
        if self._metrics_token is not None:
            headers["Authorization"] = f"Bearer {self._metrics_token.get_secret_value()}"
        reply = await self._get("/metrics", headers=headers)

        if reply.status in (401, 403):
            if self._metrics_token is None:
                raise TargetRejected(
                    TARGET,
                    f"The Meridian API requires a token for /metrics (HTTP {reply.status}), "
                    "and METRICS_TOKEN is not set.",
                    hint="Set METRICS_TOKEN to the API's admin token.",
                )
            raise TargetRejected(
                TARGET,
                f"The Meridian API rejected METRICS_TOKEN for /metrics (HTTP {reply.status}).",
                hint="METRICS_TOKEN is wrong or expired; set it to the current admin token.",
            )
        raise_for_error_status(reply, label=self._label)

        try:
            return reply.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TargetResponseInvalid(
                TARGET,
                "The Meridian API's /metrics returned text that is not UTF-8: "
                f'"{excerpt(reply.body, secrets=self._secrets())}"',
            ) from exc

    async def rate_limit_headers(self) -> RateLimitHeaders:
        """Send `GET /health` and return its x-ratelimit headers, as `curl -v` shows them.

        Any HTTP status is a result here, 429 included; only a failed request raises.
        """
        path = "/health"
        reply = await self._get(path)
        return RateLimitHeaders(
            limit=_header_int(reply, "x-ratelimit-limit"),
            remaining=_header_int(reply, "x-ratelimit-remaining"),
            reset=_header_int(reply, "x-ratelimit-reset"),
            retry_after=reply.headers.get("Retry-After"),
            http_status=reply.status,
            path=path,
        )

    async def _get(self, path: str, *, headers: dict[str, str] | None = None) -> HttpReply:
        return await send_request(
            self._session,
            "GET",
            f"{self._base_url}{path}",
            label=self._label,
            timeout=self._timeout,
            headers=headers,
        )

    def _secrets(self) -> list[str]:
        if self._metrics_token is None:
            return []
        return [self._metrics_token.get_secret_value()]


def _parse_health(reply: HttpReply) -> ApiHealth:
    payload = read_json_object(reply)
    status = _optional_field(payload, "status", str)
    if status is None:
        raise ValueError("status is missing")
    return ApiHealth(
        status=status,
        version=_optional_field(payload, "version", str),
        oracle_enabled=_optional_field(payload, "oracle_enabled", bool),
        baskets_count=_optional_field(payload, "baskets_count", int),
        error=_optional_field(payload, "error", str),
        http_status=reply.status,
        latency_seconds=reply.latency_seconds,
    )


def _optional_field(payload: dict[str, Any], name: str, kind: type[_T]) -> _T | None:
    value = payload.get(name)
    if value is None:
        return None
    # bool is a subclass of int, but `true` is not a count.
    is_boolean_for_count = kind is int and isinstance(value, bool)
    if not isinstance(value, kind) or is_boolean_for_count:
        raise ValueError(f"{name} is a JSON {json_type_name(value)}")
    return value


def _header_int(reply: HttpReply, name: str) -> int | None:
    value = reply.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None
