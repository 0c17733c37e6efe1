"""`/meridian rollback`: kubectl rollout undo's target, patch and checks, then the rollout followed."""

from __future__ import annotations

import copy

from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.kubernetes.cluster import FakeReplicaSet
from tests.kubernetes.helpers import approve, card_text, current_card, press, run_state

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def revision(sandbox: Sandbox, number: int) -> FakeReplicaSet:
    return next(rs for rs in sandbox.kubernetes.deployment.owned if rs.revision == number)


def expected_template(rs: FakeReplicaSet) -> dict:
    template = copy.deepcopy(rs.template)
    del template["metadata"]["labels"]["pod-template-hash"]
    return template


async def test_rollback_waits_with_preview(kube: Sandbox) -> None:
    outcome = await kube.command("rollback")

    text = card_text(kube, outcome)
    assert await run_state(kube) == "waiting_for_approval"
    assert "✅ Read the deployment and its revisions — revision 4 → 3 · api: ghcr.io/meridian/api:1.4.2 → ghcr.io/meridian/api:1.4.1" in text
    assert "Plan: Roll back meridian/meridian-api from revision 4 to 3" in text
    assert f"revision 4 → revision 3 (ReplicaSet {revision(kube, 3).name})" in text
    assert "Images that change:" in text
    assert "Change cause of revision 3: deploy 1.4.1 (pipeline 806)" in text
    assert "1 approval from APPROVERS" in text
    assert kube.kubernetes.patches == []


async def test_rollback_patches_kubectl_template(kube: Sandbox) -> None:
    deployment = kube.kubernetes.deployment
    annotations = deployment.document["metadata"]["annotations"]
    annotations[LAST_APPLIED] = '{"kind":"Deployment"}'
    annotations["example.com/owner"] = "team-api"  # not on the ReplicaSet, so kubectl drops it
    target = revision(kube, 3)
    target.annotations["example.com/build"] = "806"  # on the ReplicaSet, so kubectl restores it
    outcome = await kube.command("rollback")

    await approve(kube, outcome)

    expected_patch = [
        {"op": "replace", "path": "/spec/template", "value": expected_template(target)},
        {
            "op": "replace",
            "path": "/metadata/annotations",
            "value": {
                "deployment.kubernetes.io/revision": "4",
                LAST_APPLIED: '{"kind":"Deployment"}',
                "kubernetes.io/change-cause": "deploy 1.4.1 (pipeline 806)",
                "example.com/build": "806",
            },
        },
    ]
    assert kube.kubernetes.patches == [("deployments", "application/json-patch+json", expected_patch)]
    assert "pod-template-hash" not in kube.kubernetes.patches[0][2][0]["value"]["metadata"]["labels"]
    text = card_text(kube, outcome)
    assert "✅ Patch the deployment — patched the template of revision 3 (generation 5)" in text
    assert "✅ Follow the rollout — complete · revision 5 · 3/3 updated · 3 available" in text
    assert await run_state(kube) == "completed"
    assert target.revision == 5
    assert target.annotations["deployment.kubernetes.io/revision-history"] == "3"
    assert {pod.replicaset.name for pod in deployment.pods} == {target.name}


async def test_rollback_to_revision(kube: Sandbox) -> None:
    outcome = await kube.command("rollback --to-revision 2")
    assert "api: ghcr.io/meridian/api:1.4.2 → ghcr.io/meridian/api:1.4.0" in card_text(kube, outcome)

    await approve(kube, outcome)

    (_resource, _content_type, patch), = kube.kubernetes.patches
    assert patch[0]["value"] == expected_template(revision(kube, 5))
    assert patch[0]["value"]["spec"]["containers"][0]["image"] == "ghcr.io/meridian/api:1.4.0"
    assert await run_state(kube) == "completed"


async def test_rollback_missing_revision(kube: Sandbox) -> None:
    outcome = await kube.command("rollback --to-revision 9")

    text = card_text(kube, outcome)
    assert "Revision 9 is not in the rollout history of meridian/meridian-api. Its revisions are: 1, 2, 3, 4." in text
    assert "waiting for" not in text
    assert await run_state(kube) == "failed"
    assert kube.kubernetes.patches == []


async def test_rollback_identical_template_not_patched(kube: Sandbox) -> None:
    outcome = await kube.command("rollback --to-revision 4")

    text = card_text(kube, outcome)
    assert "already runs the template of revision 4, so there is nothing to roll back" in text
    assert await run_state(kube) == "failed"
    assert kube.kubernetes.patches == []


async def test_rollback_paused_not_patched(kube: Sandbox) -> None:
    kube.kubernetes.deployment.spec["paused"] = True

    outcome = await kube.command("rollback")

    text = card_text(kube, outcome)
    assert "meridian/meridian-api is paused, so it cannot be rolled back." in text
    assert "kubectl rollout resume deployment/meridian-api -n meridian" in text
    assert kube.kubernetes.patches == []


async def test_rollback_paused_after_request(kube: Sandbox) -> None:
    outcome = await kube.command("rollback")
    kube.kubernetes.deployment.spec["paused"] = True

    reply = await approve(kube, outcome)

    assert "could not read the plan again" in reply
    assert "is paused" in reply
    assert kube.kubernetes.patches == []


async def test_rollback_no_history(kube: Sandbox) -> None:
    deployment = kube.kubernetes.deployment
    deployment.replicasets = [rs for rs in deployment.replicasets if rs.revision == 4]

    outcome = await kube.command("rollback")

    assert "meridian/meridian-api has no earlier revision to roll back to." in card_text(kube, outcome)


async def test_rollback_runs_once(kube: Sandbox) -> None:
    outcome = await kube.command("rollback")
    waiting_card = current_card(kube, outcome)  # as a second approver's screen still shows it

    first = await approve(kube, outcome)
    await kube.driver.press(waiting_card, user_id=kube.users.approver, action_id="run.approve")
    await kube.driver.press(waiting_card, user_id=kube.users.second_approver, action_id="run.approve")
    await kube.runtime.engine.wait_idle()

    assert first.startswith("Approved.")
    assert len(kube.kubernetes.patches) == 1
    assert len(kube.kubernetes.calls_of("patch", "deployments")) == 1


async def test_rollback_self_approval_rejected(kube: Sandbox) -> None:
    outcome = await kube.command("rollback", user=kube.users.approver)

    reply = await press(kube, outcome, user=kube.users.approver)

    assert reply == "You requested this run, so you cannot approve it. Another approver must."
    assert kube.kubernetes.patches == []


async def test_rollback_denied_not_patched(kube: Sandbox) -> None:
    outcome = await kube.command("rollback")

    reply = await press(kube, outcome, user=kube.users.approver, action="deny")

    assert reply.startswith("Denied.")
    assert kube.kubernetes.patches == []
    assert await run_state(kube) == "denied"


async def test_rollback_voided_by_new_deploy(kube: Sandbox) -> None:
    outcome = await kube.command("rollback")
    kube.kubernetes.cluster.deploy_image("meridian-api", "ghcr.io/meridian/api:1.4.3", change_cause="deploy 1.4.3")

    reply = await approve(kube, outcome)

    assert reply.startswith("The plan changed since it was requested")
    assert kube.kubernetes.patches == []
    assert await run_state(kube) == "voided"


async def test_rollback_dry_run(kube: Sandbox) -> None:
    outcome = await kube.command("rollback --dry-run")

    text = card_text(kube, outcome)
    assert "dry run: would need 1 approval" in text
    assert "Roll back meridian/meridian-api from revision 4 to 3" in text
    assert kube.kubernetes.patches == []


async def test_rollback_fixes_bad_deploy(kube: Sandbox) -> None:
    kube.kubernetes.scenario("bad-deploy")
    outcome = await kube.command("rollback")
    assert "revision 5 → 4 · api: ghcr.io/meridian/api:1.5.0 → ghcr.io/meridian/api:1.4.2" in card_text(kube, outcome)

    await approve(kube, outcome)

    text = card_text(kube, outcome)
    assert "✅ Follow the rollout — complete · revision 6 · 3/3 updated · 3 available" in text
    pods = kube.kubernetes.deployment.pods
    assert len(pods) == 3
    assert all(pod.ready for pod in pods)


async def test_rollback_shows_progress(kube: Sandbox) -> None:
    kube.runtime.targets.kubernetes.poll_interval = 0.05
    outcome = await kube.command("rollback")

    await approve(kube, outcome)

    versions = [str(version.blocks) for version in current_card(kube, outcome).versions]
    progress = [blocks for blocks in versions if "*Follow the rollout* — 1/3 updated · 3 available" in blocks]
    assert progress, "the card showed no progress of the rollout"


async def test_rollback_forbidden_patch(kube: Sandbox) -> None:
    kube.kubernetes.deny("patch", "deployments")
    outcome = await kube.command("rollback")

    await approve(kube, outcome)

    text = card_text(kube, outcome)
    assert "not allowed to patch deployments meridian-api (API group \"apps\") in namespace meridian (HTTP 403)" in text
    assert "Grant `patch` on `deployments`" in text
    assert await run_state(kube) == "failed"


async def test_rollback_conflict(kube: Sandbox) -> None:
    kube.kubernetes.fail_next(409, verb="patch", resource="deployments")
    outcome = await kube.command("rollback")

    await approve(kube, outcome)

    text = card_text(kube, outcome)
    assert "it was modified at the same time (HTTP 409 conflict). Nothing was changed." in text
    assert "Follow the rollout — skipped because an earlier step failed" in text
    assert await run_state(kube) == "failed"
