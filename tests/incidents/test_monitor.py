"""The health monitor: one incident post per real transition, none while a target flaps, a recovery
post with the outage's duration, and with two replicas on one PostgreSQL store only the leader posts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.engine.runner import EngineTiming
from bot.monitor.health import Health, HealthMonitor, Observation
from bot.runtime import Runtime
from bot.sandbox.environment import INCIDENT_CHANNEL, Sandbox
from bot.sandbox.fakes.kubernetes.logs import circuit_breaker_lines
from bot.sandbox.text_render import mrkdwn_to_text
from bot.targets import Targets
from procedures.ratelimit import UNTIL_ANNOTATION

POLL_SECONDS = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def incident_posts(sandbox: Sandbox) -> list[str]:
    return [mrkdwn_to_text(message.text).replace("*", "") for message in sandbox.slack.messages_in(INCIDENT_CHANNEL) if message.thread_ts is None]


@pytest.fixture
async def monitored() -> AsyncIterator[Sandbox]:
    async with Sandbox(database_url=None, target_timeout=1.0, card_interval=0.02) as sandbox:
        yield sandbox


def api_posts(sandbox: Sandbox) -> list[str]:
    return [text for text in incident_posts(sandbox) if "API /health" in text]


async def poll(sandbox: Sandbox, times: int = 1) -> None:
    monitor = sandbox.runtime.health_monitor
    assert monitor is not None
    for _ in range(times):
        await monitor.poll()


async def test_one_post_per_transition(monitored: Sandbox) -> None:
    await poll(monitored, 3)
    assert incident_posts(monitored) == []

    await monitored.api.set_mode("down")
    await poll(monitored, 2)
    assert api_posts(monitored) == []  # two failing polls are not yet an outage
    await poll(monitored, 5)

    (down,) = api_posts(monitored)
    assert "API /health is unhealthy since" in down
    assert "Could not connect" in down

    await monitored.api.set_mode("healthy")
    await poll(monitored, 6)

    down_again, recovered = api_posts(monitored)
    assert down_again == down
    assert "API /health recovered at" in recovered
    assert "after" in recovered


async def test_flapping_target_posts_nothing(monitored: Sandbox) -> None:
    await poll(monitored, 3)

    for _ in range(6):
        await monitored.api.set_mode("unhealthy")
        await poll(monitored, 2)
        await monitored.api.set_mode("healthy")
        await poll(monitored)

    assert incident_posts(monitored) == []


def test_recovery_reports_outage_duration() -> None:
    monitor = HealthMonitor(targets=Targets(session=None), notifier=None, clock=lambda: 0.0, interval=POLL_SECONDS, threshold=2)
    down, up = Observation(Health.UNHEALTHY, "HTTP 503"), Observation(Health.HEALTHY, "ok")
    timeline = [(0, up), (60, up), (120, down), (180, up), (240, down), (300, down), (360, down), (420, up), (480, up)]

    posts = [(at, monitor.record("API", observation, now=float(at))) for at, observation in timeline]

    texts = [(at, text) for at, text in posts if text is not None]
    assert [at for at, _ in texts] == [300, 480]
    assert "unhealthy since 00:04:00 UTC: HTTP 503" in texts[0][1]
    assert "recovered at 00:07:00 UTC after 3m (unhealthy since 00:04:00 UTC)" in texts[1][1]


def test_first_state_healthy_posts_nothing() -> None:
    monitor = HealthMonitor(targets=Targets(session=None), notifier=None, clock=lambda: 0.0, interval=POLL_SECONDS, threshold=1)

    assert monitor.record("API", Observation(Health.HEALTHY, "ok"), now=0.0) is None
    assert monitor.record("API", Observation(Health.HEALTHY, "ok"), now=60.0) is None


async def test_circuit_breaker_opening_posted(monitored: Sandbox) -> None:
    await poll(monitored)  # sets the starting point in the logs

    await monitored.rpc.set_mode("down")
    cluster = monitored.kubernetes.cluster
    for pod in monitored.kubernetes.deployment.pods:
        # Lines the pods write during the next interval: the breaker opens 25 s from now.
        pod.logs += circuit_breaker_lines(until=cluster.clock() + 240, rng=cluster.rng)
    await poll(monitored)

    openings = [text for text in incident_posts(monitored) if "Circuit breaker" in text]
    assert len(openings) == 1
    assert "Circuit breaker oracle opened on 3 pods" in openings[0]
    await poll(monitored)
    assert len([text for text in incident_posts(monitored) if "Circuit breaker" in text]) == 1


async def test_expired_rate_limit_increase_reminded(monitored: Sandbox) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    monitored.kubernetes.deployment.document["metadata"]["annotations"][UNTIL_ANNOTATION] = past

    await poll(monitored, 2)

    reminders = [text for text in incident_posts(monitored) if "ratelimit restore" in text]
    assert len(reminders) == 1


async def test_only_leader_posts(postgres_database: str) -> None:
    clock = FakeClock()
    # Upkeep ticks by hand: the loop's own tick waits an hour, and the lease outlasts the test.
    timing = EngineTiming(lease_seconds=3_600.0, tick_seconds=3_600.0)
    overrides = {"health_poll_interval": f"{POLL_SECONDS:.0f}s"}
    async with Sandbox(database_url=None, state_url=postgres_database, timing=timing, clock=clock, replica_id="replica-a", settings_overrides=overrides) as sandbox:
        second = await Runtime.create(sandbox.settings, timing=timing, clock=clock, replica_id="replica-b")
        try:
            await sandbox.api.set_mode("down")
            for _ in range(6):
                clock.now += POLL_SECONDS
                await sandbox.runtime.upkeep.tick()
                await second.upkeep.tick()

            assert sandbox.runtime.upkeep.is_leader
            assert not second.upkeep.is_leader
            assert len(api_posts(sandbox)) == 1
            assert second.health_monitor is not None
            assert second.health_monitor.tracks == {}

            # The leader stops; the other replica takes over once the lease has run out.
            await sandbox.runtime.upkeep.stop()
            await sandbox.api.set_mode("healthy")
            for _ in range(6):
                clock.now += POLL_SECONDS
                await second.upkeep.tick()
            assert second.upkeep.is_leader
            assert len(api_posts(sandbox)) == 1  # a new leader does not post a recovery it did not see start
        finally:
            await second.close()
