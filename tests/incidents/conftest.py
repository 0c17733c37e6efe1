"""Fixtures for the incident procedures: the sandbox with the Kubernetes fake enforcing the Role,
a seeded Meridian database, and real local Ethereum nodes (ganache from the npm registry)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.engine.run import Run
from bot.sandbox.environment import Sandbox
from bot.sandbox.slack.records import Message
from bot.sandbox.text_render import message_text
from tests.database.conftest import api_sessions, meridian  # noqa: F401  (fixtures reused here)
from tests.kubernetes.conftest import SESSION_CALLS, fast_rollouts, role_rules

GANACHE = Path(__file__).resolve().parents[1] / "ethereum" / "node_modules" / ".bin" / "ganache"
GANACHE_START_SECONDS = 60.0


@pytest.fixture
async def bot() -> AsyncIterator[Sandbox]:
    """The sandbox without a database; the Kubernetes fake enforces deploy/role.yaml."""
    async with Sandbox(database_url=None, target_timeout=2.0, card_interval=0.02, on_bot_start=[fast_rollouts]) as sandbox:
        sandbox.kubernetes.enforce(role_rules())
        yield sandbox
        SESSION_CALLS.extend(sandbox.kubernetes.calls)


@pytest.fixture
async def db_bot(meridian) -> AsyncIterator[Sandbox]:  # noqa: F811
    """The sandbox on a seeded Meridian database, connected as the bot's own role."""
    async with Sandbox(database_url=meridian.bot_url, target_timeout=2.0, card_interval=0.02, on_bot_start=[fast_rollouts]) as sandbox:
        sandbox.kubernetes.enforce(role_rules())
        yield sandbox
        SESSION_CALLS.extend(sandbox.kubernetes.calls)


# Reading what the bot posted


async def latest_run(sandbox: Sandbox) -> Run:
    runs = await sandbox.runtime.store.list_runs(limit=1)
    assert runs, "no run was started"
    return runs[0]


def card_of(sandbox: Sandbox, run_id: str) -> Message:
    for message in reversed(sandbox.slack.messages):
        if message.thread_ts is None and not message.is_ephemeral and f"Run `{run_id}`" in message_text(message):
            return sandbox.slack.message(message.channel, message.ts)
    raise LookupError(f"no card for run {run_id}")


def card_text(sandbox: Sandbox, run_id: str) -> str:
    return message_text(card_of(sandbox, run_id)).replace("*", "")


def thread_text(sandbox: Sandbox, run_id: str) -> str:
    root = card_of(sandbox, run_id)
    return "\n".join(message_text(m) for m in sandbox.slack.messages if m.thread_ts == root.ts and m.ts != root.ts)


def button_labels(sandbox: Sandbox, run_id: str) -> list[str]:
    labels = []
    for block in card_of(sandbox, run_id).blocks:
        if block.get("type") == "actions":
            labels += [element["text"]["text"] for element in block["elements"]]
    return labels


async def investigate(sandbox: Sandbox, text: str) -> Run:
    await sandbox.command(text)
    return await latest_run(sandbox)


async def press_button(sandbox: Sandbox, run_id: str, label: str, *, user: str) -> str:
    """Press the button labelled `label` on the run's card; return the ephemeral reply to `user`."""
    message = card_of(sandbox, run_id)
    action_id = None
    for block in message.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element["text"]["text"] == label:
                action_id = element["action_id"]
    assert action_id is not None, f"no button {label!r}: {button_labels(sandbox, run_id)}"
    before = len(sandbox.slack.messages)
    await sandbox.driver.press(message, user_id=user, action_id=action_id)
    await sandbox.runtime.engine.wait_idle()
    replies = [m for m in sandbox.slack.messages[before:] if m.is_ephemeral and m.visible_to == user]
    return replies[-1].text if replies else ""


async def approve(sandbox: Sandbox, run_id: str) -> str:
    return await press_run_action(sandbox, run_id, "approve", user=sandbox.users.approver)


async def press_run_action(sandbox: Sandbox, run_id: str, action: str, *, user: str) -> str:
    before = len(sandbox.slack.messages)
    await sandbox.driver.press(card_of(sandbox, run_id), user_id=user, action_id=f"run.{action}")
    await sandbox.runtime.engine.wait_idle()
    replies = [m for m in sandbox.slack.messages[before:] if m.is_ephemeral and m.visible_to == user]
    return replies[-1].text if replies else ""


# A real Ethereum node


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _block_number(url: str) -> int | None:
    request = urllib.request.Request(
        url,
        data=json.dumps({"jsonrpc": "2.0", "method": "eth_blockNumber", "params": [], "id": 1}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(json.loads(response.read())["result"], 16)
    except (OSError, ValueError, KeyError):
        return None


@contextlib.contextmanager
def ganache_node(*, block_time: int = 0, chain_time: str | None = None) -> Iterator[str]:
    """Start ganache on 127.0.0.1 with deterministic accounts; yield its URL; stop it.

    `block_time` mines a block every so many seconds (0: only for transactions), and
    `chain_time` (ISO 8601) dates the genesis block, which makes an idle chain look stale.
    """
    if not GANACHE.exists():
        pytest.skip("ganache is not installed: `make test` installs it with npm (tests/ethereum/package.json)")
    port = free_port()
    command = [
        str(GANACHE),
        "--server.host", "127.0.0.1",
        "--server.port", str(port),
        "--wallet.deterministic",
        "--chain.chainId", "1337",
        "--miner.blockTime", str(block_time),
        "--logging.quiet",
    ]
    if chain_time is not None:
        command += ["--chain.time", chain_time]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + GANACHE_START_SECONDS
        while _block_number(url) is None:
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                pytest.fail(f"ganache exited with status {process.returncode} before it answered: {error[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"ganache did not answer on {url} within {GANACHE_START_SECONDS:g} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture(scope="module")
def live_chain() -> Iterator[str]:
    """A ganache node that mines a block every second: a current chain."""
    with ganache_node(block_time=1) as url:
        yield url


@pytest.fixture(scope="module")
def stale_chain() -> Iterator[str]:
    """A ganache node whose only block is two hours old: it responds but is stale."""
    two_hours_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 7_200))
    with ganache_node(block_time=0, chain_time=two_hours_ago) as url:
        yield url
