"""Fake Meridian API: `/health`, `/metrics` and rate-limit headers, with switchable failures."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from typing import ClassVar

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.sandbox.fakes.http_server import DEFAULT_SLOW_DELAY_SECONDS, FakeHttpServer

logger = logging.getLogger(__name__)

DEFAULT_METRICS_TOKEN = "sandbox-metrics-token"

# The `error` of the API's unhealthy health report.
DATABASE_FAILURE = "database connection failed"

ERROR_PAGE = (
    "<html><head><title>500 Internal Server Error</title></head>"
    "<body><h1>Internal Server Error</h1></body></html>"
)
# Not JSON: a truncated object followed by control characters and invalid UTF-8.
GARBAGE_BODY = b'{"status": "ok", "vers\x00\x07\r\n\xff\xfe<!channel> \xe2\x28\xa1'


class FakeMeridianApi(FakeHttpServer):
    """The Meridian API's health and metrics endpoints.

    Modes besides healthy, down and slow:
    - "unhealthy": `/health` returns the unhealthy report with `unhealthy_http_status` (503);
    - "pool_exhausted": the same report, and `/metrics` shows no idle pool connection;
    - "error": HTTP 500 with an HTML page;
    - "garbage": HTTP 200 with a body that is not JSON;
    - "rate_limited": HTTP 429 with Retry-After and x-ratelimit-remaining 0.

    Every response carries x-ratelimit-limit, x-ratelimit-remaining and x-ratelimit-reset.
    The remaining count falls by one per request and never refills by itself; call
    `reset_rate_limit`. x-ratelimit-reset is the window's length in seconds, a fixed value.
    """

    modes: ClassVar[frozenset[str]] = FakeHttpServer.modes | {
        "unhealthy",
        "pool_exhausted",
        "error",
        "garbage",
        "rate_limited",
    }
    name: ClassVar[str] = "fake Meridian API"

    def __init__(
        self,
        *,
        metrics_token: str = DEFAULT_METRICS_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "healthy",
        slow_delay: float = DEFAULT_SLOW_DELAY_SECONDS,
    ) -> None:
        super().__init__(host=host, port=port, mode=mode, slow_delay=slow_delay)
        self.metrics_token = metrics_token
        self.version = "0.1.0"
        self.oracle_enabled = True
        self.baskets_count = 5
        self.users_total = 1284
        self.operations_total = {"mint": 3120, "burn": 1475}
        self.pool_size = 10
        self.pool_idle = 7
        self.unhealthy_http_status = 503
        self.rate_limit = 100
        self.rate_limit_window_seconds = 60
        self.retry_after_seconds = 30
        self._rate_limit_used = 0
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_MeridianCollector(self))

    def reset_rate_limit(self) -> None:
        """Refill x-ratelimit-remaining to the full limit."""
        self._rate_limit_used = 0

    @property
    def rate_limit_remaining(self) -> int:
        if self.mode == "rate_limited":
            return 0
        return max(0, self.rate_limit - self._rate_limit_used)

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.on_response_prepare.append(self._add_rate_limit_headers)

    async def _health(self, request: web.Request) -> web.StreamResponse:
        failure = self._failure_response()
        if failure is not None:
            return failure

        if self.mode in ("unhealthy", "pool_exhausted"):
            report = {"status": "unhealthy", "error": DATABASE_FAILURE, "version": self.version}
            return web.json_response(report, status=self.unhealthy_http_status)
        return web.json_response(
            {
                "status": "ok",
                "version": self.version,
                "oracle_enabled": self.oracle_enabled,
                "baskets_count": self.baskets_count,
            }
        )

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "rate_limited":
            return self._rate_limited_response()
        if not self._bearer_token_is_valid(request):
            return web.Response(
                status=401,
                text="Unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )

        failure = self._failure_response()
        if failure is not None:
            return failure
        return web.Response(
            body=generate_latest(self._registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    def _failure_response(self) -> web.Response | None:
        match self.mode:
            case "rate_limited":
                return self._rate_limited_response()
            case "error":
                return web.Response(status=500, text=ERROR_PAGE, content_type="text/html")
            case "garbage":
                return web.Response(body=GARBAGE_BODY, content_type="application/json")
        return None

    def _rate_limited_response(self) -> web.Response:
        return web.Response(
            status=429,
            text="Too Many Requests",
            headers={"Retry-After": str(self.retry_after_seconds)},
        )

    def _bearer_token_is_valid(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.metrics_token.encode())

    async def _add_rate_limit_headers(
        self, request: web.Request, response: web.StreamResponse
    ) -> None:
        self._rate_limit_used += 1
        response.headers["x-ratelimit-limit"] = str(self.rate_limit)
        response.headers["x-ratelimit-remaining"] = str(self.rate_limit_remaining)
        response.headers["x-ratelimit-reset"] = str(self.rate_limit_window_seconds)


class _MeridianCollector:
    """Prometheus collector that reads the fake's current figures at each scrape."""

    def __init__(self, api: FakeMeridianApi) -> None:
        self._api = api

    def collect(self) -> Iterator[Metric]:
        api = self._api
        pool_exhausted = api.mode == "pool_exhausted"

        yield GaugeMetricFamily(
            "meridian_db_pool_size", "Database connection pool size", value=api.pool_size
        )
        yield GaugeMetricFamily(
            "meridian_db_pool_idle",
            "Idle database connections",
            value=0 if pool_exhausted else api.pool_idle,
        )
        yield GaugeMetricFamily(
            "meridian_oracle_enabled",
            "Oracle integration status (1 enabled, 0 disabled)",
            value=1 if api.oracle_enabled else 0,
        )
        yield GaugeMetricFamily(
            "meridian_baskets_total", "Total number of baskets", value=api.baskets_count
        )
        yield GaugeMetricFamily(
            "meridian_users_total", "Total registered users", value=api.users_total
        )

        operations = CounterMetricFamily(
            "meridian_operations", "Operation counts by type", labels=["type"]
        )
        for operation_type, count in api.operations_total.items():
            operations.add_metric([operation_type], count)
        yield operations
