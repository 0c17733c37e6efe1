"""Fake frontend: the Next.js dashboard's `/api/health`, with switchable failures."""

from __future__ import annotations

import logging
from typing import ClassVar

from aiohttp import web

from bot.sandbox.fakes.http_server import FakeHttpServer

logger = logging.getLogger(__name__)

ERROR_PAGE = "<!DOCTYPE html><html><body><h1>500 - Internal Server Error</h1></body></html>"
GARBAGE_BODY = b"<!DOCTYPE html><html><body>Loading\x00\x1b[0m\xff</body></html>"


class FakeFrontend(FakeHttpServer):
    """The frontend's health endpoint.

    Modes besides healthy, down and slow: "unhealthy" (HTTP 503 with status "unhealthy"),
    "error" (HTTP 500 with an HTML page) and "garbage" (HTTP 200 with a body that is not
    JSON).
    """

    modes: ClassVar[frozenset[str]] = FakeHttpServer.modes | {"unhealthy", "error", "garbage"}
    name: ClassVar[str] = "fake frontend"

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self._health)

    async def _health(self, request: web.Request) -> web.StreamResponse:
        match self.mode:
            case "unhealthy":
                return web.json_response({"status": "unhealthy"}, status=503)
            case "error":
                return web.Response(status=500, text=ERROR_PAGE, content_type="text/html")
            case "garbage":
                return web.Response(body=GARBAGE_BODY, content_type="application/json")
        return web.json_response({"status": "ok"})
