"""A pausable contract over JSON-RPC: read `paused()` with eth_call and send a signed `pause()`.

The transaction is signed locally with eth-account as an EIP-155 legacy transaction, so the
chain id is part of the signature. It is sent with eth_sendRawTransaction, and the key never
leaves the process. Without a key, `pause_call` gives the exact transaction for a multisig to send.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from eth_account import Account
from eth_utils import keccak, to_checksum_address

from bot.clients.ethereum_rpc import EthereumRpc
from bot.errors import Refused, TargetRejected, TargetResponseInvalid, TargetTimeout
from bot.observability.redaction import redactor

logger = logging.getLogger(__name__)

TARGET = "ethereum"
PAUSED_SELECTOR = "0x" + keccak(text="paused()")[:4].hex()
PAUSE_SELECTOR = "0x" + keccak(text="pause()")[:4].hex()
# Gas estimates are raised by this factor, because state can change between estimate and mining.
GAS_MARGIN = 1.2


@dataclass(frozen=True)
class PauseCall:
    """The exact `pause()` transaction: what a multisig proposes, or what the bot signs."""

    to: str
    data: str
    value: int
    chain_id: int

    def describe(self) -> str:
        return "\n".join(
            [
                f"to:       {self.to}",
                f"value:    {self.value}",
                f"data:     {self.data}  (pause())",
                f"chain id: {self.chain_id}",
            ]
        )


@dataclass(frozen=True)
class Receipt:
    transaction_hash: str
    block_number: int
    succeeded: bool
    gas_used: int


def pauser_address(key: str) -> str:
    """Return the address of a private key, without the key in any error."""
    try:
        return str(Account.from_key(key).address)
    except (ValueError, TypeError):
        # `from None`: the parser's message may quote the key.
        raise Refused("PAUSER_KEY is not a valid private key (64 hexadecimal digits).", hint="Correct PAUSER_KEY.") from None


class PausableContract:
    """The contract at `address`, read and paused through `rpc`."""

    def __init__(self, *, rpc: EthereumRpc, address: str, receipt_timeout: float = 120.0, poll_interval: float = 1.0) -> None:
        self._rpc = rpc
        self.address = to_checksum_address(address)
        self.receipt_timeout = receipt_timeout
        self.poll_interval = poll_interval

    async def paused(self) -> bool:
        """Call `paused()` with eth_call on the latest block."""
        result = await self._rpc.call("eth_call", [{"to": self.address, "data": PAUSED_SELECTOR}, "latest"])
        if not isinstance(result, str) or not result.startswith("0x") or len(result) != 66:
            raise TargetResponseInvalid(
                TARGET,
                f"paused() on {self.address} returned {str(result)[:80]!r}, not a bool; the contract may not be pausable.",
            )
        return int(result, 16) != 0

    async def pause_call(self, *, chain_id: int | None = None) -> PauseCall:
        chain = chain_id if chain_id is not None else await self._rpc.chain_id()
        return PauseCall(to=self.address, data=PAUSE_SELECTOR, value=0, chain_id=chain)

    async def send_pause(self, *, key: str, call: PauseCall) -> str:
        """Sign `call` with `key`, send it and return the transaction hash."""
        redactor.register(key)
        sender = pauser_address(key)
        nonce = int(await self._rpc.call("eth_getTransactionCount", [sender, "pending"]), 16)
        estimate = {"from": sender, "to": call.to, "data": call.data, "value": hex(call.value)}
        gas = int(int(await self._rpc.call("eth_estimateGas", [estimate]), 16) * GAS_MARGIN)
        gas_price = int(await self._rpc.call("eth_gasPrice"), 16)
        transaction = {
            "to": call.to,
            "data": call.data,
            "value": call.value,
            "nonce": nonce,
            "gas": gas,
            "gasPrice": gas_price,
            "chainId": call.chain_id,
        }
        signed = Account.sign_transaction(transaction, key)
        raw = "0x" + bytes(signed.raw_transaction).hex()
        transaction_hash = await self._rpc.call("eth_sendRawTransaction", [raw])
        if not isinstance(transaction_hash, str):
            raise TargetResponseInvalid(TARGET, "eth_sendRawTransaction returned no transaction hash.")
        logger.info("Sent pause() to %s from %s: %s", self.address, sender, transaction_hash)
        return transaction_hash

    async def wait_for_receipt(self, transaction_hash: str) -> Receipt:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.receipt_timeout
        while True:
            receipt = await self._rpc.call("eth_getTransactionReceipt", [transaction_hash])
            if isinstance(receipt, dict):
                return Receipt(
                    transaction_hash=transaction_hash,
                    block_number=int(receipt.get("blockNumber", "0x0"), 16),
                    succeeded=receipt.get("status") == "0x1",
                    gas_used=int(receipt.get("gasUsed", "0x0"), 16),
                )
            if loop.time() >= deadline:
                raise TargetTimeout(
                    TARGET,
                    f"Transaction {transaction_hash} was not mined within {self.receipt_timeout:g} s; it may still be mined.",
                    hint="Check it on a block explorer before sending pause() again.",
                )
            await asyncio.sleep(self.poll_interval)


def require_success(receipt: Receipt) -> None:
    if not receipt.succeeded:
        raise TargetRejected(
            TARGET,
            f"pause() was mined in block {receipt.block_number} but reverted (transaction {receipt.transaction_hash}).",
            hint="The key may not be the contract's pauser, or the contract was already paused.",
        )
