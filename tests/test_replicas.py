"""Two bot processes on one PostgreSQL store: one execution per run, and takeover after SIGKILL.

Each test starts a fake Slack Web API in the test process, a fresh PostgreSQL database, and two
replicas (`tests/replica_process.py`) that share both. Replica A starts first and becomes the
scheduler leader before B starts. Clicks reach a replica as Slack delivers them: signed HTTP
requests to its /slack/events.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlencode

import asyncpg
import pytest

from bot.engine.run import RunState, StepState
from bot.sandbox.environment import INCIDENT_CHANNEL, OPS_CHANNEL, SIGNING_SECRET, SandboxUsers
from bot.sandbox.slack.driver import Delivery, SlackDriver
from bot.sandbox.slack.payloads import block_actions_payload, buttons_of
from bot.sandbox.slack.records import Message
from bot.sandbox.slack.web_api import FakeSlack
from bot.slack.ids import RunAction, parse_decision_value
from bot.store import open_store_for
from bot.store.base import Store
from tests.conftest import new_postgres_database

T = TypeVar("T")

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
USERS = SandboxUsers()

# Short leases so that a killed replica is noticed within seconds.
LEASE_SECONDS = 1.0
TICK_SECONDS = 0.2

STARTUP_TIMEOUT = 30.0  # generous, because a cold interpreter imports slack-bolt, asyncpg and aiohttp
STOP_TIMEOUT = 10.0
# Run cards are updated at most once a second per replica, so a card change can take that long.
CARD_TIMEOUT = 10.0
# Lease expiry, leader takeover and the final card update, with room for a slow machine.
TAKEOVER_TIMEOUT = 15.0
POLL_INTERVAL = 0.05
# Leader renewals to wait for before counting side effects, so that late duplicates show up.
SETTLE_TICKS = 3

VERIFICATION_TOKEN = "sandbox-verification-token"  # what SlackDriver puts in payloads


@dataclass
class Replica:
    """A bot process started by a test, and the driver that delivers requests to it."""

    replica_id: str
    process: asyncio.subprocess.Process
    log_path: Path
    slack: FakeSlack
    port: int | None = None
    """The HTTP port the replica printed, or None until it has."""

    @functools.cached_property
    def driver(self) -> SlackDriver:
        if self.port is None:
            raise RuntimeError(f"{self.replica_id} has not printed its port yet.")
        return SlackDriver(
            self.slack,
            signing_secret=SIGNING_SECRET,
            events_url=f"http://127.0.0.1:{self.port}/slack/events",
        )

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Cluster:
    """The fake Slack, the shared store and the two replicas of one test."""

    slack: FakeSlack
    state_url: str
    side_effect_file: Path
    a: Replica
    b: Replica

    def executions(self) -> list[str]:
        """Return the lines the action step appended: `RUN_ID TARGET PID`, one per execution."""
        if not self.side_effect_file.exists():
            return []
        return self.side_effect_file.read_text(encoding="utf-8").splitlines()


# Processes


def replica_environment(*, slack: FakeSlack, state_url: str, replica_id: str, side_effect_file: Path) -> dict[str, str]:
    """Build a replica's whole environment, so that no variable of the test runner leaks in."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPOSITORY_ROOT),
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.base_url,
        "PAGERDUTY_EVENTS_URL": slack.base_url.replace("/api/", "/pagerduty"),
        "BOT_STATE_URL": state_url,
        "INCIDENT_CHANNEL": INCIDENT_CHANNEL,
        "VIEWERS": USERS.viewer,
        "OPERATORS": USERS.operator,
        "APPROVERS": f"{USERS.approver},{USERS.second_approver}",
        "ADMINS": USERS.admin,
        "REPLICA_ID": replica_id,
        "REPLICA_LEASE_SECONDS": str(LEASE_SECONDS),
        "REPLICA_TICK_SECONDS": str(TICK_SECONDS),
        "TEST_SIDE_EFFECT_FILE": str(side_effect_file),
        "LOG_LEVEL": "INFO",
    }


async def start_replica(
    replica_id: str,
    *,
    slack: FakeSlack,
    state_url: str,
    side_effect_file: Path,
    log_dir: Path,
    started: list[Replica],
    log_files: list[IO[bytes]],
) -> Replica:
    """Start a replica process and wait for its `PORT` line.

    The replica is appended to `started` before the wait, so the fixture stops it even when it
    fails to start.
    """
    log_path = log_dir / f"{replica_id}.log"
    log_file = log_path.open("wb")
    log_files.append(log_file)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.replica_process",
        cwd=REPOSITORY_ROOT,
        env=replica_environment(slack=slack, state_url=state_url, replica_id=replica_id, side_effect_file=side_effect_file),
        stdin=asyncio.subprocess.PIPE,  # the replica stops when this pipe closes
        stdout=asyncio.subprocess.PIPE,
        stderr=log_file,
    )
    replica = Replica(replica_id=replica_id, process=process, log_path=log_path, slack=slack)
    started.append(replica)

    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), STARTUP_TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"{replica_id} printed no PORT line within {STARTUP_TIMEOUT} s:\n{replica.log_tail()}") from None
    words = line.decode().split()
    if len(words) != 2 or words[0] != "PORT":
        raise AssertionError(f"{replica_id} did not start (stdout {line!r}):\n{replica.log_tail()}")

    replica.port = int(words[1])
    return replica


async def stop_replica(replica: Replica) -> None:
    """Stop the process with SIGTERM, or with SIGKILL when it has not exited after STOP_TIMEOUT."""
    process = replica.process
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it exited after the check
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            print(f"{replica.replica_id} ignored SIGTERM for {STOP_TIMEOUT} s; sending SIGKILL")
            process.kill()
            await process.wait()
    if process.stdin is not None:
        process.stdin.close()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    slack = FakeSlack()
    await slack.start()
    started: list[Replica] = []
    log_files: list[IO[bytes]] = []
    try:
        for role, user_id in USERS.names.items():
            slack.add_user(user_id, role, real_name=role.capitalize())

        async with new_postgres_database() as state_url:
            try:
                side_effect_file = tmp_path / "executions.txt"
                common: dict[str, Any] = {
                    "slack": slack,
                    "state_url": state_url,
                    "side_effect_file": side_effect_file,
                    "log_dir": tmp_path,
                    "started": started,
                    "log_files": log_files,
                }
                a = await start_replica("replica-a", **common)
                # A leads from the start, so the kill test covers a takeover of the leadership.
                await wait_for_store(
                    lambda: scheduler_leader(state_url),
                    lambda owner: owner == "replica-a",
                    description="replica-a becomes the scheduler leader",
                )
                b = await start_replica("replica-b", **common)
                yield Cluster(slack=slack, state_url=state_url, side_effect_file=side_effect_file, a=a, b=b)
            finally:
                for replica in started:
                    await stop_replica(replica)
                for replica in started:
                    # pytest shows this output only when the test fails.
                    print(f"---- {replica.replica_id} (exit code {replica.process.returncode}) ----")
                    print(replica.log_tail())
    finally:
        for log_file in log_files:
            log_file.close()
        await slack.stop()


# Reading the store


async def wait_for_store(
    read: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    description: str,
    timeout: float = TAKEOVER_TIMEOUT,
) -> T:
    """Call `read` every POLL_INTERVAL until `accept` takes its value, and return that value.

    Raises TimeoutError after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if accept(value):
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting until {description}; last value {value!r}")
        await asyncio.sleep(POLL_INTERVAL)


async def fetch_row(state_url: str, query: str, *args: Any) -> asyncpg.Record | None:
    connection = await asyncpg.connect(state_url, timeout=5.0)
    try:
        return await connection.fetchrow(query, *args, timeout=5.0)
    finally:
        await connection.close()


async def scheduler_leader(state_url: str) -> str | None:
    row = await fetch_row(state_url, "SELECT owner FROM leases WHERE name = 'scheduler'")
    return row["owner"] if row else None


async def run_owner(state_url: str, run_id: str) -> str | None:
    row = await fetch_row(state_url, "SELECT owner FROM runs WHERE id = $1", run_id)
    return row["owner"] if row else None


async def wait_for_leader_renewals(state_url: str, count: int = SETTLE_TICKS) -> None:
    """Wait until the scheduler lease has been renewed `count` times, so upkeep ran that often."""
    seen: set[float] = set()

    async def read_expiry() -> float | None:
        row = await fetch_row(state_url, "SELECT expires FROM leases WHERE name = 'scheduler'")
        if row is not None:
            seen.add(row["expires"])
        return row["expires"] if row else None

    # The first value read is the renewal before the wait started, so `count` renewals make
    # `count + 1` distinct values.
    await wait_for_store(read_expiry, lambda _: len(seen) > count, description=f"the leader renews {count} times")


@contextlib.asynccontextmanager
async def opened_store(state_url: str) -> AsyncIterator[Store]:
    store = open_store_for(state_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# Slack


def find_card(slack: FakeSlack, procedure: str) -> Message | None:
    """Return the latest version of the run card of `procedure` in the ops channel, if posted."""
    for message in slack.messages_in(OPS_CHANNEL):
        is_card = message.thread_ts is None and not message.is_ephemeral and message.user == slack.bot_user_id
        if is_card and message.text.startswith(f"Test {procedure} ("):
            return message
    return None


def card_state(message: Message) -> str:
    """Return the run state a card's fallback text ends with, e.g. `completed`."""
    return message.text.rsplit(": ", 1)[-1]


def approve_button_run_id(message: Message) -> str | None:
    for button in buttons_of(message.blocks):
        if button.action_id == RunAction.APPROVE:
            run_id, _ = parse_decision_value(str(button.element.get("value", "")))
            return run_id
    return None


async def request_run(cluster: Cluster, text: str) -> tuple[Message, str]:
    """Send `/meridian text` through replica A as the operator and wait for the Approve button.

    Returns the run card and the run id.
    """
    procedure = text.split()[0]
    delivery = await cluster.a.driver.command(text, user_id=USERS.operator, channel_id=OPS_CHANNEL)
    assert delivery.status == 200, delivery.body

    card = await cluster.slack.wait_for(
        lambda slack: (found := find_card(slack, procedure)) is not None and approve_button_run_id(found) and found,
        timeout=CARD_TIMEOUT,
        description=f"the card of {procedure} shows an Approve button",
    )
    run_id = approve_button_run_id(card)
    assert run_id is not None
    return card, run_id


async def wait_for_card_state(slack: FakeSlack, card: Message, state: str, *, timeout: float = CARD_TIMEOUT) -> Message:
    def current_card_in_state(fake: FakeSlack) -> Message | None:
        current = fake.message(card.channel, card.ts)
        return current if card_state(current) == state else None

    return await slack.wait_for(
        current_card_in_state,
        timeout=timeout,
        description=f"the run card shows {state}",
    )


def approve_click_body(slack: FakeSlack, card: Message, *, user_id: str) -> bytes:
    """Build the form body of one click on Approve, to deliver the very same click more than once."""
    button = next(button for button in buttons_of(card.blocks) if button.action_id == RunAction.APPROVE)
    user_name = slack.workspace.directory.users[user_id].name
    payload = block_actions_payload(
        message=card,
        button=button,
        token=VERIFICATION_TOKEN,
        team_id=slack.team_id,
        team_domain="sandbox",
        channel_name=slack.workspace.directory.channels[card.channel].name,
        user_id=user_id,
        user_name=user_name,
        api_app_id=slack.app_id,
        response_url=slack.new_response_url(card.channel, user_id, message_ts=card.ts),
        trigger_id=f"{time.monotonic_ns()}.{slack.team_id}.{user_id}",
        action_ts=f"{time.time():.6f}",
    )
    return urlencode({"payload": json.dumps(payload)}).encode()


def body_of(delivery: Delivery) -> bytes:
    """Return the form body that carried an interaction `delivery`, to send it again."""
    return urlencode({"payload": json.dumps(delivery.payload)}).encode()


async def deliver(replica: Replica, body: bytes) -> Delivery:
    """POST an interaction body, signed now, to `replica`."""
    return await replica.driver.post_raw(body, replica.driver.signed_headers(body))


def replies_to(slack: FakeSlack, user_id: str) -> list[str]:
    """Return the ephemeral replies the bot sent `user_id` in the ops channel, oldest first."""
    return [
        message.text
        for message in slack.messages_in(OPS_CHANNEL)
        if message.is_ephemeral and message.visible_to == user_id
    ]


async def wait_for_replies(slack: FakeSlack, count: int) -> list[str]:
    """Wait until the approvers got `count` ephemeral replies in all, and return them."""

    def all_replies_once_complete(fake: FakeSlack) -> list[str] | None:
        replies = replies_to(fake, USERS.approver) + replies_to(fake, USERS.second_approver)
        return replies if len(replies) >= count else None

    return await slack.wait_for(
        all_replies_once_complete,
        timeout=CARD_TIMEOUT,
        description=f"{count} ephemeral replies to the approvers",
    )


def incident_posts_about(slack: FakeSlack, run_id: str, word: str) -> list[str]:
    """Return the texts of accepted chat.postMessage calls to the incident channel naming `run_id` and `word`."""
    texts = []
    for call in slack.calls_to("chat.postMessage"):
        text = str(call.params.get("text", ""))
        if call.ok and call.params.get("channel") == INCIDENT_CHANNEL and run_id in text and word in text:
            texts.append(text)
    return texts


# Tests


async def test_two_replicas_one_execution_simultaneous_approvals(cluster: Cluster) -> None:
    card, run_id = await request_run(cluster, "test-critical X")

    # Two approvers click at the same moment, one on each replica.
    first, second = await asyncio.gather(
        cluster.a.driver.press(card, user_id=USERS.approver, action_id=RunAction.APPROVE),
        cluster.b.driver.press(card, user_id=USERS.second_approver, action_id=RunAction.APPROVE),
    )
    assert first.status == 200, first.body
    assert second.status == 200, second.body

    # Then each of those clicks arrives again, twice at each replica, all at once.
    repeats = []
    for click in (first, second):
        for replica in (cluster.a, cluster.b, cluster.a, cluster.b):
            repeats.append(deliver(replica, body_of(click)))
    for repeat in await asyncio.gather(*repeats):
        assert repeat.status == 200, repeat.body

    final_card = await wait_for_card_state(cluster.slack, card, "completed")
    replies = await wait_for_replies(cluster.slack, 2 + len(repeats))
    await wait_for_leader_renewals(cluster.state_url)

    executions = cluster.executions()
    assert len(executions) == 1, executions
    assert executions[0].split()[:2] == [run_id, "X"]
    starting = [reply for reply in replies if reply == f"Approved. Run `{run_id}` is starting."]
    assert len(starting) == 1, replies
    assert card_state(cluster.slack.message(card.channel, card.ts)) == "completed"
    assert not any(button.action_id == RunAction.APPROVE for button in buttons_of(final_card.blocks))

    async with opened_store(cluster.state_url) as store:
        runs = await store.list_runs()
        approvals = await store.list_approvals(run_id)
        actions = [entry.action for entry in await store.list_audit(run_id=run_id, limit=100)]
    assert [(run.id, run.state) for run in runs] == [(run_id, RunState.COMPLETED)]
    assert {approval.approver for approval in approvals} == {USERS.approver, USERS.second_approver}
    assert len(approvals) == 2
    assert sorted(runs[0].approvals) == [USERS.approver, USERS.second_approver]
    assert actions.count("approved") == 2, actions
    assert actions.count("started") == 1, actions
    assert actions.count("finished") == 1, actions


async def test_duplicate_click_across_replicas(cluster: Cluster) -> None:
    card, run_id = await request_run(cluster, "test-high Y")

    # One click, delivered twice to each replica at the same moment. Four deliveries stay within
    # the five replies that a response_url accepts.
    click = approve_click_body(cluster.slack, card, user_id=USERS.approver)
    replicas = (cluster.a, cluster.b, cluster.a, cluster.b)
    deliveries = await asyncio.gather(*(deliver(replica, click) for replica in replicas))
    for delivery in deliveries:
        assert delivery.status == 200, delivery.body

    await wait_for_card_state(cluster.slack, card, "completed")
    replies = await wait_for_replies(cluster.slack, len(deliveries))
    await wait_for_leader_renewals(cluster.state_url)

    executions = cluster.executions()
    assert len(executions) == 1, executions
    assert executions[0].split()[:2] == [run_id, "Y"]
    starting = [reply for reply in replies if reply == f"Approved. Run `{run_id}` is starting."]
    assert len(starting) == 1, replies

    async with opened_store(cluster.state_url) as store:
        run = await store.get_run(run_id)
        approvals = await store.list_approvals(run_id)
        actions = [entry.action for entry in await store.list_audit(run_id=run_id, limit=100)]
    assert run is not None
    assert run.state is RunState.COMPLETED
    assert [approval.approver for approval in approvals] == [USERS.approver]
    assert actions.count("approved") == 1, actions
    assert actions.count("started") == 1, actions
    assert actions.count("finished") == 1, actions


async def test_killed_replica_is_interrupted_once(cluster: Cluster) -> None:
    card, run_id = await request_run(cluster, "test-high Z --sleep 30s")

    approval = await cluster.a.driver.press(card, user_id=USERS.approver, action_id=RunAction.APPROVE)
    assert approval.status == 200, approval.body
    await cluster.slack.wait_for(
        lambda fake: ":hourglass_flowing_sand: *Act*" in json.dumps(fake.message(card.channel, card.ts).blocks),
        timeout=CARD_TIMEOUT,
        description="the card shows the action step running",
    )
    assert await run_owner(cluster.state_url, run_id) == "replica-a"
    assert await scheduler_leader(cluster.state_url) == "replica-a"

    cluster.a.process.kill()
    await asyncio.wait_for(cluster.a.process.wait(), STOP_TIMEOUT)
    assert cluster.a.process.returncode == -signal.SIGKILL

    final_card = await wait_for_card_state(cluster.slack, card, "interrupted", timeout=TAKEOVER_TIMEOUT)
    await wait_for_store(
        lambda: scheduler_leader(cluster.state_url),
        lambda owner: owner == "replica-b",
        description="replica-b takes over as the scheduler leader",
    )
    await cluster.slack.wait_for(
        lambda fake: incident_posts_about(fake, run_id, "interrupted"),
        timeout=CARD_TIMEOUT,
        description="the incident channel receives the interruption post",
    )
    await wait_for_leader_renewals(cluster.state_url)

    assert cluster.executions() == []
    assert len(incident_posts_about(cluster.slack, run_id, "interrupted")) == 1
    assert "interrupted: the bot stopped while this step ran" in json.dumps(final_card.blocks)

    async with opened_store(cluster.state_url) as store:
        run = await store.get_run(run_id)
        entries = await store.list_audit(run_id=run_id, limit=100)
    assert run is not None
    assert run.state is RunState.INTERRUPTED
    assert run.step("act").state is StepState.FAILED
    interrupted = [entry for entry in entries if entry.action == "interrupted"]
    assert len(interrupted) == 1, [entry.action for entry in entries]
    assert interrupted[0].actor == "meridian-bot"
    assert await run_owner(cluster.state_url, run_id) is None
