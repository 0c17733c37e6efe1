"""`/meridian rollout status` and `/meridian rollout history`, with kubectl's semantics."""

from __future__ import annotations

from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.kubernetes import Behaviour
from tests.kubernetes.helpers import card_text, thread_text


async def test_status_complete(kube: Sandbox) -> None:
    outcome = await kube.command("rollout status")

    assert "✅ Rollout status — complete · revision 4 · 3/3 updated · 3 available" in card_text(kube, outcome)
    detail = thread_text(kube, outcome)
    assert "Deployment meridian-api successfully rolled out." in detail
    assert "generation 4 (observed 4)" in detail
    assert "Images: api=ghcr.io/meridian/api:1.4.2" in detail


async def test_status_spec_not_observed(kube: Sandbox) -> None:
    kube.kubernetes.cluster.controller_running = False
    kube.kubernetes.cluster.deploy_image("meridian-api", "ghcr.io/meridian/api:1.4.3", change_cause="deploy 1.4.3")

    outcome = await kube.command("rollout status")

    text = card_text(kube, outcome)
    assert "⚠️ Rollout status — in progress" in text
    assert "waiting for the controller to observe the change" in text
    assert "Waiting for the deployment spec update to be observed." in thread_text(kube, outcome)


async def test_status_in_progress(kube: Sandbox) -> None:
    kube.kubernetes.cluster.deploy_image("meridian-api", "ghcr.io/meridian/api:1.4.3", change_cause="deploy 1.4.3")

    outcome = await kube.command("rollout status")  # the controller takes its first step

    text = card_text(kube, outcome)
    assert "⚠️ Rollout status — in progress · 1/3 updated · 3 available · 3 old pods left" in text
    assert "Waiting for rollout to finish: 1 of 3 new replicas have been updated." in thread_text(kube, outcome)


async def test_status_unavailable_pods(kube: Sandbox) -> None:
    kube.kubernetes.scenario("crash-looping")

    outcome = await kube.command("rollout status")

    assert "in progress · 3/3 updated · 0 available" in card_text(kube, outcome)
    assert "0 of 3 updated replicas are available" in thread_text(kube, outcome)


async def test_status_deadline_exceeded(kube: Sandbox) -> None:
    kube.kubernetes.scenario("bad-deploy")
    for _ in range(15):
        kube.kubernetes.cluster.step()

    outcome = await kube.command("rollout status")

    text = card_text(kube, outcome)
    assert "🔴 Rollout status — failed: Deployment meridian-api exceeded its progress deadline" in text
    assert "has timed out progressing." in text
    assert "Progressing: False (ProgressDeadlineExceeded)" in thread_text(kube, outcome)


async def test_history_lists_owned_revisions(kube: Sandbox) -> None:
    deployment = kube.kubernetes.deployment
    kube.kubernetes.cluster.add_foreign_replicaset(deployment, image="ghcr.io/other/api:9.9.9", revision=9)

    outcome = await kube.command("rollout history")

    text = card_text(kube, outcome)
    assert "✅ Revisions — 4 revisions · current 4 (api=ghcr.io/meridian/api:1.4.2)" in text
    detail = thread_text(kube, outcome)
    assert "REVISION" in detail and "CHANGE-CAUSE" in detail
    for number, version, pipeline in ((1, "1.3.9", 790), (2, "1.4.0", 801), (3, "1.4.1", 806)):
        assert f"{number}            api=ghcr.io/meridian/api:{version}  deploy {version} (pipeline {pipeline})" in detail
    assert "4 (current)  api=ghcr.io/meridian/api:1.4.2" in detail
    assert "9.9.9" not in detail


async def test_history_after_rollback_bumps_revision(kube: Sandbox) -> None:
    cluster = kube.kubernetes.cluster
    revision_two = next(rs for rs in kube.kubernetes.deployment.owned if rs.revision == 2)
    cluster.deploy_image("meridian-api", "ghcr.io/meridian/api:1.4.0", change_cause="deploy 1.4.0 (pipeline 801)")
    for _ in range(8):
        cluster.step()

    outcome = await kube.command("rollout history")

    detail = thread_text(kube, outcome)
    assert "4 revisions · current 5" in card_text(kube, outcome)
    assert "5 (current)  api=ghcr.io/meridian/api:1.4.0" in detail
    assert "\n2 " not in detail
    assert revision_two.annotations["deployment.kubernetes.io/revision-history"] == "2"


async def test_history_change_cause_missing(kube: Sandbox) -> None:
    cluster = kube.kubernetes.cluster
    deployment = kube.kubernetes.deployment
    del deployment.document["metadata"]["annotations"]["kubernetes.io/change-cause"]
    cluster.image_behaviour["ghcr.io/meridian/api:1.4.3"] = Behaviour.HEALTHY
    deployment.spec["template"]["spec"]["containers"][0]["image"] = "ghcr.io/meridian/api:1.4.3"
    deployment.document["metadata"]["generation"] += 1
    cluster.step()

    outcome = await kube.command("rollout history")

    assert "5 (current)  api=ghcr.io/meridian/api:1.4.3  <none>" in thread_text(kube, outcome)
