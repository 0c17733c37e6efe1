"""`/meridian restart` and `/meridian scale`: their patches, and how a followed rollout ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.sandbox.environment import Sandbox
from tests.kubernetes.helpers import approve, card_text, press, run_state

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def write_calls(sandbox: Sandbox) -> list[str]:
    return [call.resource_path for call in sandbox.kubernetes.calls if call.verb in ("patch", "update", "create", "delete")]


async def test_restart_sends_restarted_at(kube: Sandbox) -> None:
    outcome = await kube.command("restart")
    assert "Plan: Restart the pods of meridian/meridian-api" in card_text(kube, outcome)
    assert kube.kubernetes.patches == []

    await approve(kube, outcome)

    (resource, content_type, patch), = kube.kubernetes.patches
    assert resource == "deployments"
    assert content_type == "application/strategic-merge-patch+json"
    stamp = patch["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert patch == {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    assert stamp.endswith("Z")
    assert abs(datetime.now(UTC) - datetime.fromisoformat(stamp)) < timedelta(minutes=1)
    text = card_text(kube, outcome)
    assert "✅ Follow the rollout — complete · revision 5 · 3/3 updated · 3 available" in text
    template = kube.kubernetes.deployment.spec["template"]
    assert template["metadata"]["annotations"][RESTARTED_AT] == stamp
    assert template["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "api"


async def test_restart_deadline_exceeded(kube: Sandbox) -> None:
    kube.kubernetes.scenario("crash-looping")  # the new pods crash as the old ones do
    outcome = await kube.command("restart")

    await approve(kube, outcome)

    text = card_text(kube, outcome)
    assert "❌ Follow the rollout — The rollout failed: Deployment meridian-api exceeded its progress deadline" in text
    assert "has timed out progressing." in text
    assert "/meridian rollback" in text
    assert await run_state(kube) == "failed"


async def test_restart_rollout_timeout(kube: Sandbox) -> None:
    kube.runtime.targets.kubernetes.rollout_timeout = 0.2
    outcome = await kube.command("restart")
    kube.kubernetes.cluster.controller_running = False  # the controller never observes the change

    await approve(kube, outcome)

    text = card_text(kube, outcome)
    assert "❌ Follow the rollout — The rollout did not complete within 0.2 s; it may still be going on." in text
    assert "waiting for the controller to observe the change" in text
    assert "/meridian rollout status" in text
    assert len(kube.kubernetes.patches) == 1


async def test_restart_paused_refused(kube: Sandbox) -> None:
    kube.kubernetes.deployment.spec["paused"] = True

    outcome = await kube.command("restart")

    assert "meridian/meridian-api is paused, so it cannot be restarted." in card_text(kube, outcome)
    assert kube.kubernetes.patches == []


async def test_scale_up_uses_subresource(kube: Sandbox) -> None:
    outcome = await kube.command("scale 5")
    text = card_text(kube, outcome)
    assert "Plan: Scale meridian/meridian-api from 3 to 5 replicas" in text
    assert "Replicas of meridian/meridian-api: 3 → 5 (scale subresource)" in text

    await approve(kube, outcome)

    assert kube.kubernetes.patches == [("deployments/scale", "application/merge-patch+json", {"spec": {"replicas": 5}})]
    assert "✅ Wait until the replicas are ready — complete · revision 4 · 5/5 updated · 5 available" in card_text(kube, outcome)
    assert len(kube.kubernetes.deployment.pods) == 5


async def test_scale_down_waits_for_pods(kube: Sandbox) -> None:
    outcome = await kube.command("scale 1")

    await approve(kube, outcome)

    assert "complete · revision 4 · 1/1 updated · 1 available" in card_text(kube, outcome)
    assert len(kube.kubernetes.deployment.pods) == 1


async def test_scale_same_count_refused(kube: Sandbox) -> None:
    outcome = await kube.command("scale 3")

    assert "meridian/meridian-api already has 3 replicas; nothing to change." in card_text(kube, outcome)
    assert kube.kubernetes.patches == []


async def test_scale_to_zero_needs_two_approvers(kube: Sandbox) -> None:
    outcome = await kube.command("scale 0")
    text = card_text(kube, outcome)
    assert "risk critical" in text
    assert "Every pod stops: the Meridian API is down until the deployment is scaled up again." in text

    first = await approve(kube, outcome)
    assert "needs 1 more approval" in first
    assert kube.kubernetes.patches == []

    await press(kube, outcome, user=kube.users.second_approver)

    assert kube.kubernetes.patches == [("deployments/scale", "application/merge-patch+json", {"spec": {"replicas": 0}})]
    assert "complete · revision 4 · 0/0 updated · 0 available" in card_text(kube, outcome)
    assert kube.kubernetes.deployment.pods == []


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("scale 00", "N: `00` is not a whole number of 1 or more."),
        ("scale -1", "N: `-1` is not a whole number of 1 or more."),
        ("scale", "Missing N: the number of replicas, 1 to 100"),
        ("scale 101", "N: `101` is more than the maximum, 100."),
        ("scale five", "N: `five` is not a whole number of 1 or more."),
    ],
)
async def test_scale_invalid_count(kube: Sandbox, command: str, message: str) -> None:
    outcome = await kube.command(command)

    assert outcome.cards == []
    assert message in outcome.reply_text
    assert write_calls(kube) == []


async def test_scale_forbidden_names_permission(kube: Sandbox) -> None:
    kube.kubernetes.deny("patch", "deployments/scale")
    outcome = await kube.command("scale 5")

    await approve(kube, outcome)

    text = card_text(kube, outcome)
    assert 'not allowed to patch deployments/scale meridian-api (API group "apps") in namespace meridian (HTTP 403)' in text
    assert "Kubernetes said: deployments.apps \"meridian-api\" is forbidden" in text


async def test_scale_server_error(kube: Sandbox) -> None:
    kube.kubernetes.fail_next(500, verb="patch", resource="deployments/scale")
    outcome = await kube.command("scale 5")

    await approve(kube, outcome)

    assert "The Kubernetes API failed to patch deployments/scale meridian-api (HTTP 500)" in card_text(kube, outcome)
    assert await run_state(kube) == "failed"


@pytest.mark.parametrize(
    ("command", "approvers", "write"),
    [
        ("rollback", 1, "deployments"),
        ("restart", 1, "deployments"),
        ("scale 5", 1, "deployments/scale"),
        ("scale 0", 2, "deployments/scale"),
    ],
)
async def test_destructive_needs_approval(kube: Sandbox, command: str, approvers: int, write: str) -> None:
    outcome = await kube.command(command)
    assert await run_state(kube) == "waiting_for_approval"
    assert write_calls(kube) == []

    users = [kube.users.approver, kube.users.second_approver][:approvers]
    for user in users[:-1]:
        await press(kube, outcome, user=user)
        assert write_calls(kube) == []
    await press(kube, outcome, user=users[-1])

    assert write_calls(kube) == [write]
    assert await run_state(kube) == "completed"


async def test_scale_dry_run(kube: Sandbox) -> None:
    outcome = await kube.command("scale 0 --dry-run")

    assert "dry run: would need 2 approvals" in card_text(kube, outcome)
    assert write_calls(kube) == []
