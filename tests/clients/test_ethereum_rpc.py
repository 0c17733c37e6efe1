"""EthereumRpcClient against FakeEthereumRpc, with an API key in the URL kept secret."""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from bot.clients.ethereum_rpc import EthereumRpcClient
from bot.errors import (
    TargetError,
    TargetRejected,
    TargetResponseInvalid,
    TargetTimeout,
    TargetUnavailable,
)
from bot.sandbox.fakes.ethereum_rpc import SANDBOX_CHAIN_ID, FakeEthereumRpc

KEY_CANARY = "canarykey0b7d2e9f4a"
QUERY_CANARY = "canaryquery5c1f8a"
CLIENT_TIMEOUT = 0.5
START_TIME = 1_750_000_000.0


class ManualClock:
    """A clock for the fake chain that moves only when a test advances it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_TIME)


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeEthereumRpc]:
    async with FakeEthereumRpc(clock=clock, start_block=100) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def client(fake: FakeEthereumRpc, session: aiohttp.ClientSession) -> EthereumRpcClient:
    return EthereumRpcClient(
        url=f"{fake.base_url}/v3/{KEY_CANARY}?apikey={QUERY_CANARY}",
        session=session,
        timeout=CLIENT_TIMEOUT,
        name="primary",
    )


def assert_no_secrets(error: BaseException) -> None:
    """Check the message, hint, repr and the whole traceback including causes."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, TargetError):
        texts.append(error.user_message)
    for text in texts:
        assert KEY_CANARY not in text
        assert QUERY_CANARY not in text


async def test_block_number_advances_with_clock(
    clock: ManualClock, client: EthereumRpcClient
) -> None:
    first = await client.block_number()
    clock.advance(12 * 3 + 5)
    second = await client.block_number()

    assert first == 100
    assert second == 103


async def test_latest_block_number_and_time(clock: ManualClock, client: EthereumRpcClient) -> None:
    clock.advance(30)

    block = await client.latest_block()

    assert block.number == 102
    assert block.timestamp == datetime.fromtimestamp(START_TIME + 24, tz=UTC)


async def test_chain_id(client: EthereumRpcClient) -> None:
    assert await client.chain_id() == SANDBOX_CHAIN_ID


async def test_set_head_moves_chain(
    clock: ManualClock, fake: FakeEthereumRpc, client: EthereumRpcClient
) -> None:
    fake.set_head(5_000)
    clock.advance(12)

    assert await client.block_number() == 5_001


async def test_request_is_json_rpc(fake: FakeEthereumRpc, client: EthereumRpcClient) -> None:
    await client.block_number()
    await client.block_number()

    bodies = [request.body for request in fake.requests]
    assert bodies[0] == b'{"jsonrpc": "2.0", "method": "eth_blockNumber", "params": [], "id": 1}'
    assert b'"id": 2' in bodies[1]
    assert fake.requests[0].path == f"/v3/{KEY_CANARY}"
    assert fake.requests[0].query == f"apikey={QUERY_CANARY}"


async def test_stale_head_is_frozen_and_old(
    clock: ManualClock, fake: FakeEthereumRpc, client: EthereumRpcClient
) -> None:
    clock.advance(120)
    await fake.set_mode("stale")
    clock.advance(600)

    block = await client.latest_block()
    number = await client.block_number()

    assert block.number == 110
    assert number == 110
    assert block.timestamp == datetime.fromtimestamp(START_TIME + 120 - 3600, tz=UTC)


async def test_stale_chain_resumes_from_frozen_head(
    clock: ManualClock, fake: FakeEthereumRpc, client: EthereumRpcClient
) -> None:
    await fake.set_mode("stale")
    clock.advance(600)
    await fake.set_mode("healthy")
    clock.advance(12)

    assert await client.block_number() == 101


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (-32005, TargetUnavailable),
        (-32603, TargetUnavailable),
        (-32002, TargetUnavailable),
        (-32601, TargetRejected),
        (-32602, TargetRejected),
        (-32000, TargetRejected),
    ],
)
async def test_rpc_error_classified_by_code(
    fake: FakeEthereumRpc, client: EthereumRpcClient, code: int, error_class: type[TargetError]
) -> None:
    await fake.set_mode("error")
    fake.rpc_error = (code, f"provider failure for /v3/{KEY_CANARY}")

    with pytest.raises(error_class) as caught:
        await client.block_number()

    error = caught.value
    assert type(error) is error_class
    assert f"error {code}" in error.message
    assert "eth_blockNumber" in error.message
    assert "provider failure for /v3/***" in error.message
    assert error.target == "ethereum-rpc:primary"
    assert_no_secrets(error)


async def test_limit_exceeded_hints_retry(fake: FakeEthereumRpc, client: EthereumRpcClient) -> None:
    await fake.set_mode("error")
    fake.rpc_error = (-32005, "daily request count exceeded")

    with pytest.raises(TargetUnavailable) as caught:
        await client.block_number()

    assert "limit exceeded" in caught.value.message
    assert caught.value.retryable
    assert "Retry later" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("mode", "error_class", "expected_text"),
    [
        ("down", TargetUnavailable, "connection was refused"),
        ("slow", TargetTimeout, f"within {CLIENT_TIMEOUT:g} seconds"),
        ("garbage", TargetResponseInvalid, "the body is not JSON"),
        ("rate_limited", TargetUnavailable, "HTTP 429"),
    ],
)
async def test_failure_modes(
    fake: FakeEthereumRpc,
    client: EthereumRpcClient,
    mode: str,
    error_class: type[TargetError],
    expected_text: str,
) -> None:
    await fake.set_mode(mode)

    with pytest.raises(error_class) as caught:
        await client.latest_block()

    error = caught.value
    assert type(error) is error_class
    assert expected_text in error.message
    assert "primary Ethereum RPC endpoint" in error.message
    assert error.message.isprintable()
    assert_no_secrets(error)


async def test_rate_limited_names_retry_after(
    fake: FakeEthereumRpc, client: EthereumRpcClient
) -> None:
    await fake.set_mode("rate_limited")

    with pytest.raises(TargetUnavailable) as caught:
        await client.block_number()

    assert caught.value.hint == "Retry after 10 seconds."


async def test_unknown_method_rejected(client: EthereumRpcClient) -> None:
    with pytest.raises(TargetRejected) as caught:
        await client.call("eth_doesNotExist", [])

    assert "error -32601 (method not found)" in caught.value.message


async def test_call_returns_raw_result(client: EthereumRpcClient) -> None:
    block = await client.call("eth_getBlockByNumber", ["0x64", False])

    assert block["number"] == "0x64"
    assert block["transactions"] == []


async def test_invalid_url_rejected(session: aiohttp.ClientSession) -> None:
    client = EthereumRpcClient(
        url=f"http://[::1/v3/{KEY_CANARY}", session=session, timeout=CLIENT_TIMEOUT, name="backup"
    )

    with pytest.raises(TargetRejected) as caught:
        await client.block_number()

    assert "backup Ethereum RPC endpoint" in caught.value.message
    assert_no_secrets(caught.value)


async def test_url_absent_from_repr_and_logs(
    fake: FakeEthereumRpc, client: EthereumRpcClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await client.block_number()
    await fake.set_mode("down")
    with pytest.raises(TargetUnavailable):
        await client.block_number()

    assert repr(client) == "EthereumRpcClient(name='primary')"
    assert caplog.records
    assert KEY_CANARY not in caplog.text
    assert QUERY_CANARY not in caplog.text


@pytest.mark.parametrize(
    ("body", "expected_text"),
    [
        ('{"jsonrpc": "2.0", "id": 1}', "neither a result nor an error"),
        ('{"jsonrpc": "2.0", "id": 99, "result": "0x1"}', "another request id"),
        ('{"jsonrpc": "2.0", "id": 1, "result": 12}', "eth_blockNumber result is a JSON number"),
        ('{"jsonrpc": "2.0", "id": 1, "result": "0xzz"}', "not a hex quantity"),
        ('{"jsonrpc": "2.0", "id": 1, "error": "boom"}', "malformed JSON-RPC error"),
    ],
)
async def test_malformed_response_invalid(
    session: aiohttp.ClientSession, body: str, expected_text: str
) -> None:
    async def handler(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text=body, content_type="application/json")

    app = aiohttp.web.Application()
    app.router.add_post("/", handler)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        client = EthereumRpcClient(
            url=f"http://127.0.0.1:{runner.addresses[0][1]}/",
            session=session,
            timeout=CLIENT_TIMEOUT,
        )
        with pytest.raises(TargetResponseInvalid) as caught:
            await client.block_number()
    finally:
        await runner.cleanup()

    assert expected_text in caught.value.message


class ConnectTimeoutSession:
    """A stand-in session whose requests fail as aiohttp's do when connecting times out.

    A connect timeout cannot be produced on loopback, where a closed port refuses at once.
    """

    def request(self, method: str, url: str, **kwargs: object) -> object:
        raise aiohttp.ConnectionTimeoutError(f"Connection timeout to host {url}")


async def test_connect_timeout_hides_url() -> None:
    client = EthereumRpcClient(
        url=f"http://127.0.0.1:9/v3/{KEY_CANARY}?apikey={QUERY_CANARY}",
        session=ConnectTimeoutSession(),  # type: ignore[arg-type]
        timeout=CLIENT_TIMEOUT,
    )

    with pytest.raises(TargetTimeout) as caught:
        await client.block_number()

    assert caught.value.__cause__ is None
    assert "within 0.5 seconds" in caught.value.message
    assert_no_secrets(caught.value)
