"""The clients that the backup, restore and RDS procedures use, built from the settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
import asyncpg
from pydantic import SecretStr

from bot.clients.aws import boto_client
from bot.clients.aws_rds import BotoRds, RdsInstances
from bot.clients.backups_databases import RestoreServer, translate_server_error
from bot.clients.backups_storage import BackupStorage, S3BackupStorage
from bot.clients.incident_channel import IncidentNotifier
from bot.clients.pagerduty import PagerDuty, PagerDutyEvents
from bot.clients.pg_tools import PgTarget
from bot.config import Settings
from bot.observability.metrics import BotMetrics

logger = logging.getLogger(__name__)


@dataclass
class BackupTargets:
    """Each member is None when its settings are missing; the runtime sets `incident` and `metrics`."""

    storage: BackupStorage | None = None
    rds: RdsInstances | None = None
    rds_instance_id: str | None = None
    restore_server: RestoreServer | None = None
    pagerduty: PagerDuty | None = None
    live_url: SecretStr | None = None  # DATABASE_URL: what pg_dump reads and a table restore writes
    incident: IncidentNotifier | None = None
    metrics: BotMetrics | None = None
    connect_timeout: float = 10.0

    @property
    def live_database(self) -> PgTarget | None:
        return PgTarget.from_url(self.live_url.get_secret_value()) if self.live_url else None

    async def connect_live(self) -> asyncpg.Connection:
        """Open a connection to the live database (DATABASE_URL); the caller closes it."""
        assert self.live_url is not None
        try:
            return await asyncpg.connect(
                self.live_url.get_secret_value(),
                timeout=self.connect_timeout,
                server_settings={"application_name": "meridian-bot"},
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            live = self.live_database
            raise translate_server_error(error, live.server if live else "DATABASE_URL") from error


def backup_targets_from_settings(settings: Settings, *, session: aiohttp.ClientSession, timeout: float) -> BackupTargets:
    """Build the clients; nothing connects until first use."""
    targets = BackupTargets(live_url=settings.database_url, rds_instance_id=settings.rds_instance_id, connect_timeout=timeout)
    if settings.backup_bucket:
        s3 = boto_client("s3", region=settings.aws_region, endpoint_url=settings.aws_endpoint_url)
        targets.storage = S3BackupStorage(s3, bucket=settings.backup_bucket, prefix=settings.backup_prefix)
    if settings.rds_instance_id:
        targets.rds = BotoRds(boto_client("rds", region=settings.aws_region, endpoint_url=settings.aws_endpoint_url))
    restore_url = settings.verify_database_url or settings.database_url
    if restore_url is not None:
        targets.restore_server = RestoreServer(url=restore_url, live_url=settings.database_url)
    if settings.pagerduty_routing_key is not None:
        targets.pagerduty = PagerDutyEvents(
            url=settings.pagerduty_events_url,
            routing_key=settings.pagerduty_routing_key.get_secret_value(),
            session=session,
            timeout=timeout,
        )
    return targets

