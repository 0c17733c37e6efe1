"""Client for an Ethereum JSON-RPC 2.0 endpoint over HTTP.

The endpoint URL often carries the provider's API key in its path or query, so the client
names the endpoint only by its label ("primary", "backup") in messages, logs and repr.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp

from bot.clients.excerpt import excerpt
from bot.clients.http_request import (
    HttpReply,
    TargetLabel,
    json_type_name,
    raise_for_error_status,
    read_json_object,
    send_request,
    url_secrets,
)
from bot.errors import TargetError, TargetRejected, TargetResponseInvalid, TargetUnavailable

logger = logging.getLogger(__name__)

# JSON-RPC error codes after which the same request may succeed later: internal error
# (JSON-RPC 2.0), resource unavailable and limit exceeded (EIP-1474). The other codes
# mean that the request itself is wrong or unsupported.
RETRYABLE_ERROR_CODES = frozenset({-32603, -32002, -32005})

ERROR_CODE_NAMES = {
    -32700: "parse error",
    -32600: "invalid request",
    -32601: "method not found",
    -32602: "invalid params",
    -32603: "internal error",
    -32000: "invalid input",
    -32001: "resource not found",
    -32002: "resource unavailable",
    -32003: "transaction rejected",
    -32004: "method not supported",
    -32005: "limit exceeded",
    -32006: "JSON-RPC version not supported",
}


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """A block's number and its timestamp (UTC)."""

    number: int
    timestamp: datetime


class EthereumRpc(Protocol):
    """An Ethereum JSON-RPC endpoint as the procedures use it."""

    @property
    def name(self) -> str: ...

    async def block_number(self) -> int: ...

    async def latest_block(self) -> BlockInfo: ...

    async def chain_id(self) -> int: ...

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any: ...


class EthereumRpcClient:
    """JSON-RPC 2.0 client for one endpoint, sharing the caller's aiohttp session."""

    def __init__(
        self,
        *,
        url: str,
        session: aiohttp.ClientSession,
        timeout: float,
        name: str = "primary",
    ) -> None:
        self._url = url
        self._session = session
        self._timeout = timeout
        self._name = name
        self._request_ids = itertools.count(1)
        self._label = TargetLabel(
            target=f"ethereum-rpc:{name}",
            display_name=f"the {name} Ethereum RPC endpoint",
        )
        self._url_secrets = url_secrets(url)

    def __repr__(self) -> str:
        return f"EthereumRpcClient(name={self._name!r})"

    @property
    def name(self) -> str:
        return self._name

    async def block_number(self) -> int:
        """Return the number of the most recent block (eth_blockNumber)."""
        result = await self.call("eth_blockNumber")
        return self._quantity(result, field="eth_blockNumber result")

    async def chain_id(self) -> int:
        """Return the chain id (eth_chainId)."""
        result = await self.call("eth_chainId")
        return self._quantity(result, field="eth_chainId result")

    async def latest_block(self) -> BlockInfo:
        """Return the number and timestamp of the latest block (eth_getBlockByNumber)."""
        result = await self.call("eth_getBlockByNumber", ["latest", False])
        if not isinstance(result, dict):
            raise self._invalid(
                f"eth_getBlockByNumber returned {self._describe(result)}, not a block"
            )

        number = self._quantity(result.get("number"), field="block number")
        seconds = self._quantity(result.get("timestamp"), field="block timestamp")
        return BlockInfo(number=number, timestamp=datetime.fromtimestamp(seconds, tz=UTC))

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """Send one JSON-RPC request and return its `result`.

        A JSON-RPC error raises TargetUnavailable for the codes in RETRYABLE_ERROR_CODES and
        TargetRejected for the others. HTTP 429 and 5xx raise TargetUnavailable, 401/403
        raise TargetRejected, and a body that is not a JSON-RPC response raises
        TargetResponseInvalid.
        """
        request_id = next(self._request_ids)
        request = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": request_id}
        # Redirects are not followed, so the API key never travels to another host.
        reply = await send_request(
            self._session,
            "POST",
            self._url,
            label=self._label,
            timeout=self._timeout,
            json_body=request,
            allow_redirects=False,
        )

        if reply.status in (401, 403, 429):
            raise_for_error_status(reply, label=self._label)
        try:
            response = read_json_object(reply)
        except ValueError as exc:
            raise_for_error_status(reply, label=self._label)
            raise self._invalid(f"{method} returned an invalid response ({exc})", reply) from exc

        error = response.get("error")
        if error is not None:
            raise self._rpc_error(method, error, reply)
        raise_for_error_status(reply, label=self._label)

        if response.get("id") != request_id:
            raise self._invalid(f"{method} returned a response with another request id", reply)
        if "result" not in response:
            raise self._invalid(f"{method} returned neither a result nor an error", reply)
        return response["result"]

    def _rpc_error(self, method: str, error: Any, reply: HttpReply) -> TargetError:
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            return self._invalid(f"{method} returned a malformed JSON-RPC error", reply)

        code: int = error["code"]
        code_name = ERROR_CODE_NAMES.get(code, "server error")
        provider_message = excerpt(str(error.get("message", "")), secrets=self._url_secrets)
        message = (
            f"The {self._name} Ethereum RPC endpoint returned error {code} ({code_name}) "
            f'for {method}: "{provider_message}"'
        )
        if code in RETRYABLE_ERROR_CODES:
            return TargetUnavailable(
                self._label.target,
                message,
                hint="Retry later, or switch to the other RPC endpoint if it persists.",
            )
        return TargetRejected(self._label.target, message)

    def _quantity(self, value: Any, *, field: str) -> int:
        """Decode a JSON-RPC quantity: a hex string with a 0x prefix."""
        if not isinstance(value, str) or not value.startswith("0x"):
            raise self._invalid(f"the {field} is {self._describe(value)}, not a hex quantity")
        try:
            return int(value, 16)
        except ValueError as exc:
            raise self._invalid(f"the {field} is not a hex quantity") from exc

    def _describe(self, value: Any) -> str:
        if isinstance(value, str):
            return f'"{excerpt(value, max_chars=40, secrets=self._url_secrets)}"'
        return f"a JSON {json_type_name(value)}"

    def _invalid(self, reason: str, reply: HttpReply | None = None) -> TargetResponseInvalid:
        message = f"The {self._name} Ethereum RPC endpoint sent an invalid response: {reason}."
        if reply is not None:
            message += f' Body: "{excerpt(reply.body, secrets=self._url_secrets)}"'
        return TargetResponseInvalid(self._label.target, message)

