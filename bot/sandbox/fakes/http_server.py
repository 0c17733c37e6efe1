"""Base for the sandbox's HTTP fakes: a loopback aiohttp server with a switchable mode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self

from aiohttp import web
from multidict import CIMultiDict

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Longer than any timeout the bot's clients use, so a "slow" fake always makes them time out.
DEFAULT_SLOW_DELAY_SECONDS = 300.0

# How long stopping the server waits for handlers to finish. Handlers of a slow fake end as
# soon as the server stops, so this is reached only by a handler that is stuck.
_SHUTDOWN_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request that the fake received, in arrival order."""

    method: str
    path: str
    query: str
    headers: CIMultiDict[str]
    body: bytes


class FakeHttpServer:
    """An HTTP server on a loopback address whose behavior follows `mode`.

    Every subclass supports "healthy", "down" (the port stops listening, so connections
    are refused) and "slow" (each request waits `slow_delay` seconds before the healthy
    response, or gets HTTP 503 as soon as the server stops). Subclasses add their routes and
    further modes.
    The port stays the same across "down" and back, so clients need no new URL.
    """

    modes: ClassVar[frozenset[str]] = frozenset({"healthy", "down", "slow"})
    name: ClassVar[str] = "fake"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "healthy",
        slow_delay: float = DEFAULT_SLOW_DELAY_SECONDS,
    ) -> None:
        self._check_mode(mode)
        self._host = host
        self._port = port
        self._mode = mode
        self._slow_delay = slow_delay
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._started = False
        self._request_recorded = asyncio.Condition()
        self.requests: list[RecordedRequest] = []

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError(f"The {self.name} has no port until it has been started.")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind the port and serve; in "down" mode bind once to reserve the port, then close."""
        if self._started:
            return
        self._started = True
        await self._listen()
        if self._mode == "down":
            await self._close()

    async def stop(self) -> None:
        """Stop serving and end every request still in progress."""
        self._started = False
        await self._close()

    async def set_mode(self, mode: str) -> None:
        """Switch the mode; entering or leaving "down" closes or reopens the port."""
        self._check_mode(mode)
        previous, self._mode = self._mode, mode
        self._on_mode_change(previous, mode)
        logger.info(
            "The %s on port %s switched from %s to %s", self.name, self._port, previous, mode
        )
        if not self._started:
            return
        if mode == "down" and previous != "down":
            await self._close()
        elif previous == "down" and mode != "down":
            await self._listen()

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Return the recorded requests for one path."""
        return [request for request in self.requests if request.path == path]

    async def wait_for_requests(self, count: int, *, timeout: float = 5.0) -> None:
        """Wait until at least `count` requests are recorded, at most `timeout` seconds.

        Raises TimeoutError when fewer arrive in time.
        """
        async with asyncio.timeout(timeout), self._request_recorded:
            await self._request_recorded.wait_for(lambda: len(self.requests) >= count)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _add_routes(self, app: web.Application) -> None:
        """Register the fake's routes and signals on a new application."""
        raise NotImplementedError

    def _on_mode_change(self, previous: str, mode: str) -> None:
        """Adjust state when the mode changes; called before the port opens or closes."""

    async def _listen(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._record_and_delay])
        self._add_routes(app)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_SECONDS,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]
        logger.info("The %s is listening on %s", self.name, self.base_url)

    async def _close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        await runner.cleanup()
        logger.info("The %s on port %s stopped listening", self.name, self._port)

    @web.middleware
    async def _record_and_delay(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=request.query_string,
                headers=CIMultiDict(request.headers),
                body=body,
            )
        )
        async with self._request_recorded:
            self._request_recorded.notify_all()
        if self._mode == "slow":
            stopped = await self._wait_unless_stopped(self._slow_delay)
            if stopped:
                return web.Response(status=503, text="The server is shutting down.")
        return await handler(request)

    async def _wait_unless_stopped(self, seconds: float) -> bool:
        """Wait `seconds`, or less if the server stops first; return whether it stopped."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    def _check_mode(self, mode: str) -> None:
        if mode not in self.modes:
            valid = ", ".join(sorted(self.modes))
            raise ValueError(f"Unknown mode {mode!r} for the {self.name}; valid modes: {valid}.")
