"""The RDS instance: its backup settings, restorable window, snapshots and point-in-time restores."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from bot.clients.aws import aws_error, error_code
from bot.errors import TargetRejected

logger = logging.getLogger(__name__)

TARGET = "RDS"
# Limits of ModifyDBInstance's BackupRetentionPeriod for a DB instance (RDS API reference).
MIN_RETENTION_DAYS = 0
MAX_RETENTION_DAYS = 35


@dataclass(frozen=True)
class RdsInstance:
    identifier: str
    status: str
    engine: str
    instance_class: str
    backup_retention_days: int
    backup_window: str | None
    maintenance_window: str | None
    latest_restorable_time: datetime | None
    created_at: datetime | None
    endpoint: str | None
    port: int | None
    pending_retention_days: int | None = None


@dataclass(frozen=True)
class RestoreWindow:
    """The times a point-in-time restore may target; `estimated` when RDS did not report it."""

    earliest: datetime
    latest: datetime
    estimated: bool = False

    def contains(self, moment: datetime) -> bool:
        return self.earliest <= moment <= self.latest


@dataclass(frozen=True)
class Snapshot:
    identifier: str
    status: str
    progress_percent: int | None


class RdsInstances(Protocol):
    async def describe(self, identifier: str) -> RdsInstance: ...

    async def exists(self, identifier: str) -> bool: ...

    async def restore_window(self, instance: RdsInstance) -> RestoreWindow | None: ...

    async def modify_backups(self, identifier: str, *, retention_days: int, window: str | None) -> RdsInstance: ...

    async def create_snapshot(self, identifier: str, *, snapshot_id: str) -> Snapshot: ...

    async def describe_snapshot(self, snapshot_id: str) -> Snapshot: ...

    async def restore_to_point_in_time(
        self,
        *,
        source: str,
        target: str,
        restore_time: datetime | None,
        instance_class: str,
        subnet_group: str | None,
        security_group_ids: Sequence[str],
    ) -> RdsInstance: ...


class BotoRds:
    """RdsInstances through a boto3 RDS client."""

    def __init__(self, rds: Any) -> None:
        self._rds = rds

    async def describe(self, identifier: str) -> RdsInstance:
        try:
            response = await asyncio.to_thread(self._rds.describe_db_instances, DBInstanceIdentifier=identifier)
        except ClientError as error:
            if error_code(error) == "DBInstanceNotFound":
                raise TargetRejected(
                    TARGET, f"There is no RDS instance `{identifier}`.", hint="Check RDS_INSTANCE_ID and AWS_REGION."
                ) from error
            raise aws_error(error, target=TARGET, action=f"RDS: describe {identifier}") from error
        except BotoCoreError as error:
            raise aws_error(error, target=TARGET, action=f"RDS: describe {identifier}") from error
        return _instance(response["DBInstances"][0])

    async def exists(self, identifier: str) -> bool:
        try:
            await self.describe(identifier)
        except TargetRejected as error:
            if isinstance(error.__cause__, ClientError) and error_code(error.__cause__) == "DBInstanceNotFound":
                return False
            raise
        return True

    async def restore_window(self, instance: RdsInstance) -> RestoreWindow | None:
        """The instance's restorable window, or None when automated backups are off.

        RDS reports it as RestoreWindow of the instance's automated backups. When that is
        missing, the window is estimated as the retention period before LatestRestorableTime,
        and no earlier than the instance's creation.
        """
        if instance.backup_retention_days == 0 or instance.latest_restorable_time is None:
            return None
        response = await self._call(
            f"describe the automated backups of {instance.identifier}",
            self._rds.describe_db_instance_automated_backups,
            DBInstanceIdentifier=instance.identifier,
        )
        for backup in response.get("DBInstanceAutomatedBackups", []):
            window = backup.get("RestoreWindow") or {}
            if window.get("EarliestTime") and window.get("LatestTime"):
                return RestoreWindow(earliest=_utc(window["EarliestTime"]), latest=_utc(window["LatestTime"]))
        latest = instance.latest_restorable_time
        earliest = latest - timedelta(days=instance.backup_retention_days)
        if instance.created_at is not None:
            earliest = max(earliest, instance.created_at)
        return RestoreWindow(earliest=earliest, latest=latest, estimated=True)

    async def modify_backups(self, identifier: str, *, retention_days: int, window: str | None) -> RdsInstance:
        if not MIN_RETENTION_DAYS <= retention_days <= MAX_RETENTION_DAYS:
            raise ValueError(f"retention {retention_days} is outside {MIN_RETENTION_DAYS}-{MAX_RETENTION_DAYS} days")
        arguments: dict[str, Any] = {
            "DBInstanceIdentifier": identifier,
            "BackupRetentionPeriod": retention_days,
            "ApplyImmediately": True,
        }
        if window:
            arguments["PreferredBackupWindow"] = window
        response = await self._call(f"modify {identifier}", self._rds.modify_db_instance, **arguments)
        logger.info("Modified the backups of %s: retention %d days, window %s", identifier, retention_days, window)
        return _instance(response["DBInstance"])

    async def create_snapshot(self, identifier: str, *, snapshot_id: str) -> Snapshot:
        response = await self._call(
            f"create snapshot {snapshot_id}",
            self._rds.create_db_snapshot,
            DBInstanceIdentifier=identifier,
            DBSnapshotIdentifier=snapshot_id,
            Tags=[{"Key": "created-by", "Value": "meridian-bot"}],
        )
        return _snapshot(response["DBSnapshot"])

    async def describe_snapshot(self, snapshot_id: str) -> Snapshot:
        response = await self._call(
            f"describe snapshot {snapshot_id}", self._rds.describe_db_snapshots, DBSnapshotIdentifier=snapshot_id
        )
        return _snapshot(response["DBSnapshots"][0])

    async def restore_to_point_in_time(
        self,
        *,
        source: str,
        target: str,
        restore_time: datetime | None,
        instance_class: str,
        subnet_group: str | None,
        security_group_ids: Sequence[str],
    ) -> RdsInstance:
        arguments: dict[str, Any] = {
            "SourceDBInstanceIdentifier": source,
            "TargetDBInstanceIdentifier": target,
            "DBInstanceClass": instance_class,
            "Tags": [{"Key": "created-by", "Value": "meridian-bot"}],
        }
        if restore_time is None:
            arguments["UseLatestRestorableTime"] = True
        else:
            arguments["RestoreTime"] = restore_time
        if subnet_group:
            arguments["DBSubnetGroupName"] = subnet_group
        if security_group_ids:
            arguments["VpcSecurityGroupIds"] = list(security_group_ids)
        response = await self._call(
            f"restore {source} to a point in time as {target}", self._rds.restore_db_instance_to_point_in_time, **arguments
        )
        logger.info("Started the point-in-time restore of %s into %s (time %s)", source, target, restore_time or "latest")
        return _instance(response["DBInstance"])

    async def _call(self, action: str, method: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(method, **kwargs)
        except (ClientError, BotoCoreError) as error:
            raise aws_error(error, target=TARGET, action=f"RDS: {action}") from error


def _instance(data: dict[str, Any]) -> RdsInstance:
    endpoint = data.get("Endpoint") or {}
    pending = data.get("PendingModifiedValues") or {}
    return RdsInstance(
        identifier=str(data["DBInstanceIdentifier"]),
        status=str(data.get("DBInstanceStatus", "unknown")),
        engine=str(data.get("Engine", "")),
        instance_class=str(data.get("DBInstanceClass", "")),
        backup_retention_days=int(data.get("BackupRetentionPeriod", 0)),
        backup_window=data.get("PreferredBackupWindow"),
        maintenance_window=data.get("PreferredMaintenanceWindow"),
        latest_restorable_time=_utc(data["LatestRestorableTime"]) if data.get("LatestRestorableTime") else None,
        created_at=_utc(data["InstanceCreateTime"]) if data.get("InstanceCreateTime") else None,
        endpoint=endpoint.get("Address"),
        port=endpoint.get("Port"),
        pending_retention_days=pending.get("BackupRetentionPeriod"),
    )


def _snapshot(data: dict[str, Any]) -> Snapshot:
    progress = data.get("PercentProgress")
    return Snapshot(
        identifier=str(data["DBSnapshotIdentifier"]),
        status=str(data.get("Status", "unknown")),
        progress_percent=int(progress) if progress is not None else None,
    )


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
