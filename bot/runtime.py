"""Assembly: builds the store, targets, engine and Bolt app from the settings, and closes them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_bolt.app.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot.config import Settings
from bot.engine.catalog import Catalog
from bot.engine.policy import Policy
from bot.engine.runner import Engine, EngineTiming
from bot.clients.incident_channel import SlackIncidentNotifier
from bot.engine.upkeep import Upkeep
from bot.observability.metrics import BotMetrics
from bot.slack.app import BotIdentity, build_app, identify
from bot.slack.publisher import SlackRunView
from bot.slack.usergroups import SlackGroupDirectory
from bot.store import open_store_for
from bot.store.base import Store
from bot.targets import HTTP_TIMEOUT_SECONDS, Targets
from procedures import build_catalog
from procedures.backups_schedule import BackupSchedule
from bot.monitor.health import HealthMonitor

logger = logging.getLogger(__name__)

SLACK_RATE_LIMIT_RETRIES = 3
# At most one chat.update per card in this many seconds; Slack allows about one a second.
CARD_UPDATE_INTERVAL_SECONDS = 1.0


def build_slack_client(settings: Settings, *, with_token: bool = True) -> AsyncWebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token and with_token else None
    return AsyncWebClient(
        token=token,
        base_url=settings.slack_api_base_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=SLACK_RATE_LIMIT_RETRIES)],
    )


@dataclass
class Runtime:
    settings: Settings
    metrics: BotMetrics
    client: AsyncWebClient
    identity: BotIdentity
    store: Store
    targets: Targets
    engine: Engine
    catalog: Catalog
    app: AsyncApp

    upkeep: Upkeep
    backup_schedule: BackupSchedule | None = None
    health_monitor: HealthMonitor | None = None

    @classmethod
    async def create(
        cls,
        settings: Settings,
        *,
        target_timeout: float = HTTP_TIMEOUT_SECONDS,
        timing: EngineTiming = EngineTiming(),
        clock: Callable[[], float] = time.time,
        replica_id: str | None = None,
        card_interval: float = CARD_UPDATE_INTERVAL_SECONDS,
    ) -> Runtime:
        if not settings.viewers:
            logger.warning("VIEWERS is empty: every workspace member may run read-only commands")

        metrics = BotMetrics()
        client = build_slack_client(settings)
        identity = await identify(client)

        store = open_store_for(settings.bot_state_url)
        await store.open()
        targets = Targets.from_settings(settings, timeout=target_timeout)
        view = SlackRunView(
            client, metrics=metrics, incident_channel=settings.incident_channel, min_interval=card_interval
        )
        policy = Policy(
            viewers=settings.viewers,
            operators=settings.operators,
            approvers=settings.approvers,
            admins=settings.admins,
            groups=SlackGroupDirectory(client),
        )
        catalog = build_catalog()
        engine = Engine(
            store=store,
            view=view,
            targets=targets,
            settings=settings,
            metrics=metrics,
            policy=policy,
            catalog=catalog,
            replica_id=replica_id,
            clock=clock,
            timing=timing,
        )
        targets.backups.metrics = metrics
        if settings.incident_channel:
            targets.backups.incident = SlackIncidentNotifier(client, channel=settings.incident_channel)
        backup_schedule = BackupSchedule(
            cron=settings.backup_verify_schedule, rpo=settings.rpo, targets=targets.backups, clock=clock, store=store
        )
        # The health monitor is a leader job, so only one replica polls and posts.
        health_monitor = HealthMonitor(
            targets=targets,
            notifier=SlackIncidentNotifier(client, channel=settings.incident_channel) if settings.incident_channel else None,
            clock=clock,
            interval=settings.health_poll_interval.total_seconds(),
        )
        upkeep = Upkeep(engine, jobs=[*backup_schedule.jobs(), *health_monitor.jobs()])
        upkeep.start()

        signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
        # Bolt gets a client without a token: `authorize` supplies the token for each request.
        app = build_app(
            client=build_slack_client(settings, with_token=False),
            bot_token=client.token,
            signing_secret=signing_secret,
            identity=identity,
        )
        handlers.register(app, engine=engine, catalog=catalog, metrics=metrics)
        return cls(
            settings=settings,
            metrics=metrics,
            client=client,
            identity=identity,
            store=store,
            targets=targets,
            engine=engine,
            catalog=catalog,
            app=app,
            upkeep=upkeep,
            backup_schedule=backup_schedule,
            health_monitor=health_monitor,
        )

    async def close(self, *, grace_seconds: float = 0.0) -> None:
        """Stop everything; runs and requests in hand get `grace_seconds` to finish first."""
        await self.engine.shutdown(grace_seconds=grace_seconds)
        await self.upkeep.stop()
        if self.backup_schedule is not None:
            await self.backup_schedule.close()
        await self.engine.shutdown()
        await self.targets.close()
        await self.store.close()
        session = getattr(self.client, "session", None)
        if session is not None:
            await session.close()
        logger.info("Stopped")
