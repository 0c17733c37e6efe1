"""The systems the procedures act on, built from the settings; a target not configured is None."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import aiohttp

from bot.clients.backups_targets import BackupTargets, backup_targets_from_settings
from bot.clients.database import Database, MeridianDatabase
from bot.clients.ethereum_rpc import EthereumRpc, EthereumRpcClient
from bot.clients.frontend import Frontend, FrontendClient
from bot.clients.kubernetes import Kubernetes, kubernetes_from_settings
from bot.clients.meridian_api import MeridianApi, MeridianApiClient
from bot.config import Settings
from bot.observability.redaction import redactor

logger = logging.getLogger(__name__)

HTTP_TIMEOUT_SECONDS = 5.0
DATABASE_STATEMENT_TIMEOUT_SECONDS = 10.0


@dataclass
class Targets:
    session: aiohttp.ClientSession | None
    meridian_api: MeridianApi | None = None
    frontend: Frontend | None = None
    database: Database | None = None
    rpc_primary: EthereumRpc | None = None
    rpc_backup: EthereumRpc | None = None
    kubernetes: Kubernetes | None = None
    backups: BackupTargets = field(default_factory=BackupTargets)

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = HTTP_TIMEOUT_SECONDS) -> Targets:
        """Build a client for each configured target; nothing connects until first use.

        `timeout` bounds each HTTP call and each database connection attempt, in seconds.
        """
        for secret in (
            settings.metrics_token,
            settings.database_url,
            settings.ethereum_rpc_url,
            settings.ethereum_backup_rpc_url,
            settings.slack_bot_token,
            settings.slack_signing_secret,
            settings.slack_app_token,
            settings.pagerduty_routing_key,
            settings.verify_database_url,
            settings.pauser_key,
        ):
            if secret is not None:
                redactor.register(secret.get_secret_value())

        session = aiohttp.ClientSession()
        targets = cls(session=session)
        if settings.meridian_api_url:
            targets.meridian_api = MeridianApiClient(
                base_url=settings.meridian_api_url,
                session=session,
                timeout=timeout,
                metrics_token=settings.metrics_token,
            )
        if settings.meridian_frontend_url:
            targets.frontend = FrontendClient(
                base_url=settings.meridian_frontend_url, session=session, timeout=timeout
            )
        if settings.database_url:
            targets.database = MeridianDatabase(
                dsn=settings.database_url,
                connect_timeout=timeout,
                statement_timeout=DATABASE_STATEMENT_TIMEOUT_SECONDS,
            )
        if settings.ethereum_rpc_url:
            targets.rpc_primary = EthereumRpcClient(
                url=settings.ethereum_rpc_url.get_secret_value(),
                session=session,
                timeout=timeout,
                name="primary",
            )
        if settings.ethereum_backup_rpc_url:
            targets.rpc_backup = EthereumRpcClient(
                url=settings.ethereum_backup_rpc_url.get_secret_value(),
                session=session,
                timeout=timeout,
                name="backup",
            )
        targets.kubernetes = kubernetes_from_settings(
            namespace=settings.kube_namespace,
            deployment=settings.kube_deployment,
            kubeconfig=settings.kubeconfig,
            timeout=timeout,
        )
        targets.backups = backup_targets_from_settings(settings, session=session, timeout=timeout)
        return targets

    async def close(self) -> None:
        if self.database is not None:
            await self.database.close()
        if self.kubernetes is not None:
            await self.kubernetes.close()
        if self.session is not None:
            await self.session.close()
