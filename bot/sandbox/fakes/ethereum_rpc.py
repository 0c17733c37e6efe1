"""Fake Ethereum JSON-RPC endpoint: a chain that grows one block per interval of its clock."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

from aiohttp import web

from bot.sandbox.fakes.http_server import DEFAULT_SLOW_DELAY_SECONDS, FakeHttpServer

logger = logging.getLogger(__name__)

SANDBOX_CHAIN_ID = 31337
BLOCK_INTERVAL_SECONDS = 12.0
DEFAULT_STALE_AGE_SECONDS = 3600.0

GARBAGE_BODY = b"<html><body>502 Bad Gateway</body></html>\x00\xff"


class FakeEthereumRpc(FakeHttpServer):
    """JSON-RPC 2.0 over HTTP: eth_blockNumber, eth_getBlockByNumber and eth_chainId.

    The head advances one block per `block_interval` seconds of `clock`, which tests can
    replace to control time. Modes besides healthy, down and slow:
    - "stale": the head stops where it is and its timestamp is `stale_age` seconds old;
    - "error": every call returns the JSON-RPC error in `rpc_error` (code, message);
    - "garbage": HTTP 200 with a body that is not JSON;
    - "rate_limited": HTTP 429 with Retry-After and a -32005 error body.
    """

    modes: ClassVar[frozenset[str]] = FakeHttpServer.modes | {
        "stale",
        "error",
        "garbage",
        "rate_limited",
    }
    name: ClassVar[str] = "fake Ethereum RPC"

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        start_block: int = 19_000_000,
        block_interval: float = BLOCK_INTERVAL_SECONDS,
        chain_id: int = SANDBOX_CHAIN_ID,
        stale_age: float = DEFAULT_STALE_AGE_SECONDS,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "healthy",
        slow_delay: float = DEFAULT_SLOW_DELAY_SECONDS,
    ) -> None:
        super().__init__(host=host, port=port, mode=mode, slow_delay=slow_delay)
        self._clock = clock
        self._block_interval = block_interval
        self._base_block = start_block
        self._base_time = clock()
        self._stale_head: tuple[int, float] | None = None
        self.chain_id = chain_id
        self.stale_age = stale_age
        self.rpc_error: tuple[int, str] = (-32603, "internal error")
        self.retry_after_seconds = 10
        if mode == "stale":
            self._on_mode_change("healthy", "stale")

    @property
    def head(self) -> int:
        """The number of the latest block."""
        if self._stale_head is not None:
            return self._stale_head[0]
        elapsed = max(0.0, self._clock() - self._base_time)
        return self._base_block + int(elapsed // self._block_interval)

    def set_head(self, number: int) -> None:
        """Make `number` the latest block, produced now; the chain grows on from there."""
        self._base_block = number
        self._base_time = self._clock()
        if self._stale_head is not None:
            self._stale_head = (number, self._stale_head[1])

    def block_timestamp(self, number: int) -> float:
        """Return the Unix time at which block `number` was produced."""
        if self._stale_head is not None and number == self._stale_head[0]:
            return self._stale_head[1]
        return self._base_time + (number - self._base_block) * self._block_interval

    def _on_mode_change(self, previous: str, mode: str) -> None:
        if mode == "stale" and self._stale_head is None:
            self._stale_head = (self.head, self._clock() - self.stale_age)
        elif mode != "stale" and self._stale_head is not None:
            # The chain resumes from the frozen head, as a node does once it catches up.
            frozen_head = self._stale_head[0]
            self._stale_head = None
            self.set_head(frozen_head)

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/{path:.*}", self._rpc)

    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "garbage":
            return web.Response(body=GARBAGE_BODY, content_type="application/json")

        try:
            call = json.loads(await request.read())
        except ValueError:
            return _error_response(None, -32700, "parse error")
        if not isinstance(call, dict):
            # NOTE: batch requests (a JSON array) are valid JSON-RPC, but no client uses them.
            return _error_response(None, -32600, "batch requests are not supported by this fake")
        request_id = call.get("id")

        if self.mode == "rate_limited":
            return _error_response(
                request_id,
                -32005,
                "request rate limited",
                status=429,
                headers={"Retry-After": str(self.retry_after_seconds)},
            )
        if self.mode == "error":
            code, message = self.rpc_error
            return _error_response(request_id, code, message)

        method = call.get("method")
        params = call.get("params") or []
        match method:
            case "eth_blockNumber":
                return _result_response(request_id, hex(self.head))
            case "eth_chainId":
                return _result_response(request_id, hex(self.chain_id))
            case "eth_getBlockByNumber":
                return self._get_block_by_number(request_id, params)
        return _error_response(request_id, -32601, f"the method {method} does not exist")

    def _get_block_by_number(self, request_id: Any, params: list[Any]) -> web.Response:
        if not params or not isinstance(params[0], str):
            return _error_response(request_id, -32602, "missing block number")

        tag = params[0]
        if tag == "latest":
            number = self.head
        elif tag.startswith("0x"):
            try:
                number = int(tag, 16)
            except ValueError:
                return _error_response(request_id, -32602, f"invalid block number {tag}")
        else:
            return _error_response(request_id, -32602, f"unsupported block tag {tag}")

        if number > self.head or number < 0:
            return _result_response(request_id, None)
        return _result_response(request_id, self._block(number))

    def _block(self, number: int) -> dict[str, Any]:
        return {
            "number": hex(number),
            "hash": _block_hash(number),
            "parentHash": _block_hash(number - 1),
            "timestamp": hex(int(self.block_timestamp(number))),
            "gasLimit": hex(30_000_000),
            "gasUsed": hex(0),
            "transactions": [],
        }


def _block_hash(number: int) -> str:
    return "0x" + hashlib.sha256(f"fake-block-{number}".encode()).hexdigest()


def _result_response(request_id: Any, result: Any) -> web.Response:
    return web.json_response({"jsonrpc": "2.0", "id": request_id, "result": result})


def _error_response(
    request_id: Any,
    code: int,
    message: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}},
        status=status,
        headers=headers,
    )
