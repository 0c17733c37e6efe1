"""`emergency db-corruption TIME`: scale to 0, RDS snapshot, point-in-time recovery, incident post (moto's RDS)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.sandbox.environment import INCIDENT_CHANNEL, Sandbox
from bot.sandbox.fakes.pagerduty import FakePagerDuty
from bot.sandbox.text_render import message_text
from tests.backups.conftest import Aws, aws, backup_settings, meridian_db, moto_url, url_with_password  # noqa: F401 (fixtures)
from tests.kubernetes.conftest import fast_rollouts, role_rules
from tests.kubernetes.helpers import approve, card_text, press, run_state


@pytest.fixture
async def corruption_bot(aws: Aws, meridian_db: str, pagerduty: FakePagerDuty) -> AsyncIterator[Sandbox]:  # noqa: F811
    sandbox = Sandbox(
        database_url=url_with_password(meridian_db),
        target_timeout=5.0,
        card_interval=0.02,
        on_bot_start=[fast_rollouts],
        settings_overrides=backup_settings(aws, meridian_db, pagerduty),
    )
    async with sandbox:
        sandbox.kubernetes.enforce(role_rules())
        yield sandbox


def instance_ids(aws: Aws) -> list[str]:  # noqa: F811
    return sorted(item["DBInstanceIdentifier"] for item in aws.rds.describe_db_instances()["DBInstances"])


def snapshot_ids(aws: Aws) -> list[str]:  # noqa: F811
    response = aws.rds.describe_db_snapshots(DBInstanceIdentifier=aws.instance_id, SnapshotType="manual")
    return [item["DBSnapshotIdentifier"] for item in response["DBSnapshots"]]


async def test_corruption_response_in_order(corruption_bot: Sandbox, aws: Aws) -> None:  # noqa: F811
    target = f"{aws.instance_id}-restored"
    outcome = await corruption_bot.command(f"emergency db-corruption latest --target-instance {target}")

    assert await run_state(corruption_bot) == "waiting_for_approval", card_text(corruption_bot, outcome)
    text = card_text(corruption_bot, outcome)
    assert "Scale meridian/meridian-api from 3 to 0 replicas" in text
    assert "2 approvals" in text
    await approve(corruption_bot, outcome)
    assert corruption_bot.kubernetes.deployment.spec["replicas"] == 3

    await press(corruption_bot, outcome, user=corruption_bot.users.second_approver)

    assert await run_state(corruption_bot) == "completed", card_text(corruption_bot, outcome)
    assert corruption_bot.kubernetes.deployment.spec["replicas"] == 0
    assert corruption_bot.kubernetes.deployment.pods == []
    assert len(snapshot_ids(aws)) == 1
    assert target in instance_ids(aws)
    incident = "\n".join(message_text(m) for m in corruption_bot.slack.messages_in(INCIDENT_CHANNEL))
    assert "Database corruption response" in incident
    assert f"started as RDS instance {target}" in incident


async def test_failed_scale_stops_snapshot_and_pitr(corruption_bot: Sandbox, aws: Aws) -> None:  # noqa: F811
    target = f"{aws.instance_id}-restored"
    outcome = await corruption_bot.command(f"emergency db-corruption latest --target-instance {target}")
    corruption_bot.kubernetes.fail_next(500, verb="patch", resource="deployments/scale")
    await approve(corruption_bot, outcome)
    await press(corruption_bot, outcome, user=corruption_bot.users.second_approver)

    assert await run_state(corruption_bot) == "failed"
    assert card_text(corruption_bot, outcome).count("skipped because an earlier step failed") == 3
    assert snapshot_ids(aws) == []
    assert target not in instance_ids(aws)
