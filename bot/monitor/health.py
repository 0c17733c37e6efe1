"""The health monitor: polls every target and posts its transitions to INCIDENT_CHANNEL.

Only the scheduler leader runs it (an upkeep Job), so several replicas post once. A target's
new state is posted once it has held for `threshold` polls in a row, so a flapping target
posts nothing. A recovery post gives the outage's duration, from the first failing poll to the
first healthy one. The monitor also posts circuit breaker openings found in the pods' logs,
and reminds the channel when a temporary rate-limit increase has run out.

The first poll comes one interval after the replica becomes the leader. The state lives in
the leader's memory. A new leader starts without it and posts again any
target that is still unhealthy; it never posts a recovery it did not see start.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.clients.incident_channel import IncidentNotifier
from bot.clients.log_analysis import OPEN, circuit_transitions, parse_lines
from bot.durations import format_duration
from bot.engine.upkeep import Job
from bot.errors import BotError, TargetError
from bot.slack.mrkdwn import escape
from bot.targets import Targets

logger = logging.getLogger(__name__)

# Polls in a row a new state must hold before it is posted.
DEFAULT_FLAP_THRESHOLD = 3
PROBE_TIMEOUT_SECONDS = 15.0
# A head block older than this counts as a stale (unhealthy) RPC node, as in `rpc status`.
STALE_BLOCK_AGE_SECONDS = 120.0
LOG_TAIL_LINES = 500


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class Observation:
    health: Health
    detail: str


@dataclass
class TargetTrack:
    """The monitor's record of one target: the posted state and the state it may change to."""

    confirmed: Health | None = None
    candidate: Health | None = None
    streak: int = 0
    candidate_since: float = 0.0
    outage_started: float | None = None


Probe = Callable[[], Awaitable[Observation]]


class HealthMonitor:
    def __init__(
        self,
        *,
        targets: Targets,
        notifier: IncidentNotifier | None,
        clock: Callable[[], float],
        interval: float,
        threshold: int = DEFAULT_FLAP_THRESHOLD,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be 1 or more")
        self._targets = targets
        self._notifier = notifier
        self._clock = clock
        self.interval = interval
        self.threshold = threshold
        self.tracks: dict[str, TargetTrack] = {}
        self._breakers_seen_until: datetime | None = None
        self._reminded_expiry: str | None = None
        self._scheduled = False
        self.probes: dict[str, Probe] = self._default_probes()

    def jobs(self) -> list[Job]:
        return [Job("health-monitor", self.interval, self._scheduled_poll)]

    async def _scheduled_poll(self) -> None:
        # Upkeep runs a job at once when a replica becomes the leader. The first poll waits one
        # interval, so a replica that starts and stops at once probes nothing.
        if not self._scheduled:
            self._scheduled = True
            return
        await self.poll()

    def _default_probes(self) -> dict[str, Probe]:
        targets = self._targets
        probes: dict[str, Probe] = {}
        if targets.meridian_api is not None:
            probes["API /health"] = self._probe_api
        if targets.database is not None:
            probes["Database"] = self._probe_database
        if targets.rpc_primary is not None:
            probes["Ethereum RPC (primary)"] = lambda: self._probe_rpc(targets.rpc_primary)
        if targets.rpc_backup is not None:
            probes["Ethereum RPC (backup)"] = lambda: self._probe_rpc(targets.rpc_backup)
        if targets.frontend is not None:
            probes["Frontend /api/health"] = self._probe_frontend
        return probes

    # Polling

    async def poll(self) -> list[str]:
        """Probe every target once, post the confirmed transitions, and return the posted texts."""
        names = list(self.probes)
        observations = await asyncio.gather(*(self._observe(name) for name in names))
        now = self._clock()
        posts = []
        for name, observation in zip(names, observations, strict=True):
            if observation is None:
                continue
            text = self.record(name, observation, now=now)
            if text is not None:
                posts.append(text)
        posts += await self._circuit_breaker_posts()
        posts += await self._rate_limit_reminder()
        for text in posts:
            await self._post(text)
        return posts

    async def _observe(self, name: str) -> Observation | None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                return await self.probes[name]()
        except TimeoutError:
            return Observation(Health.UNHEALTHY, f"no answer within {PROBE_TIMEOUT_SECONDS:g} s")
        except TargetError as error:
            return Observation(Health.UNHEALTHY, error.user_message)
        except BotError as error:
            logger.warning("Health probe of %s could not run: %s", name, error.message)
            return None

    def record(self, name: str, observation: Observation, *, now: float) -> str | None:
        """Take one observation of a target; return the text to post when its state changed for good."""
        track = self.tracks.setdefault(name, TargetTrack())
        if observation.health is track.candidate:
            track.streak += 1
        else:
            track.candidate, track.streak, track.candidate_since = observation.health, 1, now

        state_is_confirmed = track.streak >= self.threshold
        if not state_is_confirmed or track.candidate is track.confirmed:
            return None
        previous, track.confirmed = track.confirmed, track.candidate

        if track.confirmed is Health.UNHEALTHY:
            track.outage_started = track.candidate_since
            since = _clock_time(track.candidate_since)
            logger.warning("%s is unhealthy since %s: %s", name, since, observation.detail)
            return f":red_circle: *{escape(name)}* is unhealthy since {since}: {escape(observation.detail)}"
        if previous is Health.UNHEALTHY and track.outage_started is not None:
            outage = timedelta(seconds=max(track.candidate_since - track.outage_started, 0.0))
            text = (
                f":large_green_circle: *{escape(name)}* recovered at {_clock_time(track.candidate_since)} "
                f"after {format_duration(outage)} (unhealthy since {_clock_time(track.outage_started)})"
            )
            track.outage_started = None
            logger.info("%s recovered after %s", name, format_duration(outage))
            return text
        return None  # the first confirmed state after start-up is healthy: nothing happened

    async def _post(self, text: str) -> None:
        if self._notifier is None:
            logger.warning("INCIDENT_CHANNEL is not set, so this health transition was not posted: %s", text)
            return
        try:
            await self._notifier.post(text)
        except BotError as error:
            logger.error("Could not post a health transition to the incident channel: %s", error.message)

    # Probes return the target's state. A TargetError they raise counts as unhealthy.

    async def _probe_api(self) -> Observation:
        assert self._targets.meridian_api is not None
        health = await self._targets.meridian_api.health()
        if health.is_healthy:
            return Observation(Health.HEALTHY, "ok")
        return Observation(Health.UNHEALTHY, f"{health.status}: {health.error or '-'} (HTTP {health.http_status})")

    async def _probe_database(self) -> Observation:
        assert self._targets.database is not None
        await self._targets.database.ping()
        return Observation(Health.HEALTHY, "ok")

    async def _probe_rpc(self, rpc: object) -> Observation:
        block = await rpc.latest_block()  # type: ignore[attr-defined]
        age = (datetime.now(UTC) - block.timestamp).total_seconds()
        if age > STALE_BLOCK_AGE_SECONDS:
            return Observation(Health.UNHEALTHY, f"stale: block {block.number:,} is {format_duration(timedelta(seconds=age))} old")
        return Observation(Health.HEALTHY, "ok")

    async def _probe_frontend(self) -> Observation:
        assert self._targets.frontend is not None
        health = await self._targets.frontend.health()
        if health.is_healthy:
            return Observation(Health.HEALTHY, "ok")
        return Observation(Health.UNHEALTHY, f"{health.status} (HTTP {health.http_status})")

    # Circuit breakers and the temporary rate-limit increase, from the deployment

    async def _circuit_breaker_posts(self) -> list[str]:
        """Openings logged since the previous poll; the first poll only sets the starting point."""
        cluster = self._targets.kubernetes
        if cluster is None:
            return []
        window = math.ceil(self.interval) + 5
        try:
            deployment = await cluster.read_deployment()
            pods = await cluster.list_pods(deployment)
            texts = []
            for pod in pods:
                try:
                    texts.append((pod.name, await cluster.read_log(pod.name, container=pod.log_container, tail_lines=LOG_TAIL_LINES, since_seconds=window)))
                except BotError as error:
                    logger.info("Circuit breaker watch skipped the log of %s: %s", pod.name, error.message)
        except BotError as error:
            logger.warning("Circuit breaker watch could not read the pods: %s", error.message)
            return []

        records = [record for name, text in texts for record in parse_lines(name, text.splitlines())]
        openings = [t for t in circuit_transitions(records) if t.state == OPEN and t.at is not None]
        seen_until = self._breakers_seen_until
        self._breakers_seen_until = max([t.at for t in openings if t.at] + ([seen_until] if seen_until else [datetime.now(UTC)]))
        if seen_until is None:
            return []
        fresh = [t for t in openings if t.at and t.at > seen_until]
        by_breaker: dict[str, list[str]] = {}
        for transition in fresh:
            by_breaker.setdefault(transition.breaker, []).append(transition.pod)
        return [
            f":warning: Circuit breaker *{escape(breaker)}* opened on {len(set(pods))} pods "
            f"({escape(', '.join(sorted(set(pods))))}); it tries half-open after 30 s. `/meridian circuit` shows its state."
            for breaker, pods in by_breaker.items()
        ]

    async def _rate_limit_reminder(self) -> list[str]:
        from procedures.ratelimit import RATE_LIMIT_VARIABLE, UNTIL_ANNOTATION, increase_expiry

        cluster = self._targets.kubernetes
        if cluster is None:
            return []
        try:
            deployment = await cluster.read_deployment()
        except BotError as error:
            logger.warning("Rate-limit reminder could not read the deployment: %s", error.message)
            return []
        expiry = increase_expiry(deployment)
        marker = deployment.annotations.get(UNTIL_ANNOTATION)
        if expiry is None or datetime.now(UTC) < expiry or marker == self._reminded_expiry:
            return []
        self._reminded_expiry = marker
        return [
            f":hourglass: The temporary increase of {RATE_LIMIT_VARIABLE} on {escape(deployment.namespace)}/{escape(deployment.name)} "
            f"ran out at {expiry.strftime('%H:%M UTC')}. `/meridian ratelimit restore` puts the previous limit back (with approval)."
        ]


def _clock_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S UTC")
