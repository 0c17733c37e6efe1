"""`emergency smart-contract` against a local ganache chain with a pausable contract compiled by solc.

The contract's ABI and bytecode are in pausable.json, made by compile_pausable.js from
Pausable.sol with the npm solc package. ganache comes from tests/ethereum (npm install there).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import to_checksum_address

from bot.clients.contract import PAUSED_SELECTOR
from bot.sandbox.environment import INCIDENT_CHANNEL, Sandbox
from bot.sandbox.fakes.pagerduty import FakePagerDuty
from bot.sandbox.text_render import message_text
from tests.emergency.conftest import emergency_sandbox
from tests.kubernetes.helpers import approve, card_text, press, run_state, thread_text
from tests.secrets.conftest import assert_never_written

HERE = Path(__file__).resolve().parent
GANACHE = HERE.parent / "ethereum" / "node_modules" / ".bin" / "ganache"
FIXTURE = json.loads((HERE / "pausable.json").read_text(encoding="utf-8"))
CHAIN_ID = 1337
START_TIMEOUT_SECONDS = 30.0

pytestmark = pytest.mark.skipif(
    not GANACHE.exists() or shutil.which("node") is None,
    reason="ganache is not installed: run `npm install` in tests/ethereum",
)


@dataclass(frozen=True)
class Chain:
    url: str
    key: str  # the funded account, which is also the contract's pauser
    address: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def rpc(url: str, method: str, params: list[Any]) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=aiohttp.ClientTimeout(total=10)) as response:
            body = await response.json()
    if "error" in body:
        raise AssertionError(f"{method} failed: {body['error']}")
    return body["result"]


@pytest.fixture(scope="module")
def ganache() -> Iterator[tuple[str, str]]:
    """Start ganache on a loopback port with one funded account; yield its URL and the account's key."""
    key = "0x" + bytes(Account.create().key).hex()
    port = free_port()
    process = subprocess.Popen(
        [
            str(GANACHE),
            "--server.host", "127.0.0.1",
            "--server.port", str(port),
            "--chain.chainId", str(CHAIN_ID),
            "--wallet.accounts", f"{key},{10**21}",
            "--logging.quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_wait_until_ready(url))
        yield url, key
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def _wait_until_ready(url: str) -> None:
    async with asyncio.timeout(START_TIMEOUT_SECONDS):
        while True:
            try:
                await rpc(url, "eth_chainId", [])
                return
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.2)


async def deploy_pausable(url: str, key: str) -> str:
    """Deploy a new Pausable whose pauser is the key's account; return its address."""
    account = Account.from_key(key)
    constructor = encode(["address"], [account.address]).hex()
    nonce = int(await rpc(url, "eth_getTransactionCount", [account.address, "pending"]), 16)
    gas_price = int(await rpc(url, "eth_gasPrice", []), 16)
    transaction = {"data": FIXTURE["bytecode"] + constructor, "value": 0, "nonce": nonce, "gas": 1_000_000, "gasPrice": gas_price, "chainId": CHAIN_ID}
    signed = Account.sign_transaction(transaction, key)
    transaction_hash = await rpc(url, "eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
    receipt = await rpc(url, "eth_getTransactionReceipt", [transaction_hash])
    assert receipt is not None and receipt["status"] == "0x1"
    return to_checksum_address(receipt["contractAddress"])


async def paused(url: str, address: str) -> bool:
    return int(await rpc(url, "eth_call", [{"to": address, "data": PAUSED_SELECTOR}, "latest"]), 16) != 0


@pytest.fixture
async def chain(ganache: tuple[str, str]) -> Chain:
    url, key = ganache
    return Chain(url=url, key=key, address=await deploy_pausable(url, key))


async def contract_bot(pagerduty: FakePagerDuty, chain: Chain, *, with_key: bool) -> Sandbox:
    settings: dict[str, Any] = {"ethereum_rpc_url": chain.url, "contract_address": chain.address, "chain_id": CHAIN_ID}
    if with_key:
        settings["pauser_key"] = chain.key
    sandbox = emergency_sandbox(pagerduty, **settings)
    await sandbox.start()
    return sandbox


@pytest.fixture
async def keyed_bot(pagerduty: FakePagerDuty, chain: Chain, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Sandbox]:
    caplog.set_level(logging.DEBUG)
    sandbox = await contract_bot(pagerduty, chain, with_key=True)
    try:
        yield sandbox
    finally:
        await sandbox.stop()


@pytest.fixture
async def keyless_bot(pagerduty: FakePagerDuty, chain: Chain) -> AsyncIterator[Sandbox]:
    sandbox = await contract_bot(pagerduty, chain, with_key=False)
    try:
        yield sandbox
    finally:
        await sandbox.stop()


async def test_pause_after_two_approvals(keyed_bot: Sandbox, chain: Chain, caplog: pytest.LogCaptureFixture) -> None:
    outcome = await keyed_bot.command("emergency smart-contract")

    assert await run_state(keyed_bot) == "waiting_for_approval", card_text(keyed_bot, outcome)
    text = card_text(keyed_bot, outcome)
    assert "is NOT paused" in text
    assert f"Send pause() to {chain.address}" in text
    await approve(keyed_bot, outcome)
    assert not await paused(chain.url, chain.address)

    await press(keyed_bot, outcome, user=keyed_bot.users.second_approver)

    assert await run_state(keyed_bot) == "completed", card_text(keyed_bot, outcome)
    assert await paused(chain.url, chain.address)
    text = card_text(keyed_bot, outcome)
    assert "pause() mined in block" in text
    assert f"paused() on {chain.address} is true" in text
    await assert_never_written(keyed_bot, caplog, [chain.key, chain.key.removeprefix("0x")])


async def test_without_key_posts_transaction_data(keyless_bot: Sandbox, chain: Chain) -> None:
    outcome = await keyless_bot.command("emergency smart-contract")

    assert await run_state(keyless_bot) == "completed", "no key is a finding, not a failure"
    thread = thread_text(keyless_bot, outcome)
    assert f"to:       {chain.address}" in thread
    assert "data:     0x8456cb59" in thread
    assert f"chain id: {CHAIN_ID}" in thread
    assert "value:    0" in thread
    assert "nothing to approve: no PAUSER_KEY is configured" in card_text(keyless_bot, outcome)
    incident = "\n".join(message_text(m) for m in keyless_bot.slack.messages_in(INCIDENT_CHANNEL))
    assert "0x8456cb59" in incident
    assert chain.address in incident
    assert not await paused(chain.url, chain.address)


async def test_already_paused_offers_nothing(keyed_bot: Sandbox, chain: Chain) -> None:
    first = await keyed_bot.command("emergency smart-contract")
    await approve(keyed_bot, first)
    await press(keyed_bot, first, user=keyed_bot.users.second_approver)
    assert await paused(chain.url, chain.address)

    outcome = await keyed_bot.command("emergency smart-contract")

    assert await run_state(keyed_bot) == "completed"
    text = card_text(keyed_bot, outcome)
    assert "is already paused, so there is nothing to send" in text
    assert "Approve" not in text
