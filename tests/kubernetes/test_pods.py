"""`/meridian pods` end to end: the deployment's pods, healthy and failing."""

from __future__ import annotations

import pytest

from bot.sandbox.environment import Sandbox
from tests.kubernetes.helpers import card_text, thread_text


async def test_pods_all_ready(kube: Sandbox) -> None:
    outcome = await kube.command("pods")

    text = card_text(kube, outcome)
    assert "✅ Pods of the deployment — 3 pods · 3 ready" in text
    table = thread_text(kube, outcome)
    assert "NAME" in table and "RESTARTS" in table and "NODE" in table
    assert table.count("meridian-api-") == 3
    assert table.count("Running") == 3
    assert "Not ready" not in table


async def test_pods_crash_looping(kube: Sandbox) -> None:
    kube.kubernetes.scenario("crash-looping")

    outcome = await kube.command("pods")

    text = card_text(kube, outcome)
    assert "🔴 Pods of the deployment — 3 pods · 0 ready · CrashLoopBackOff ×3" in text
    table = thread_text(kube, outcome)
    assert table.count("CrashLoopBackOff") >= 6  # the STATUS column and the reasons
    assert "api last exited: Error, exit code 101" in table
    assert "back-off 5m0s restarting failed container=api" in table
    restarts = [pod.restarts for pod in kube.kubernetes.deployment.pods]
    assert all(count >= 4 for count in restarts)
    assert f"{restarts[0]} restarts" in table


async def test_pods_oom_killed(kube: Sandbox) -> None:
    kube.kubernetes.scenario("oom-killed")

    outcome = await kube.command("pods")

    assert "OOMKilled ×3" in card_text(kube, outcome)
    assert "api last exited: OOMKilled, exit code 137" in thread_text(kube, outcome)


async def test_pods_image_pull_backoff(kube: Sandbox) -> None:
    kube.kubernetes.scenario("bad-deploy")

    outcome = await kube.command("pods")

    text = card_text(kube, outcome)
    assert "⚠️ Pods of the deployment — 4 pods · 3 ready · ImagePullBackOff ×1" in text
    table = thread_text(kube, outcome)
    assert 'Back-off pulling image "ghcr.io/meridian/api:1.5.0"' in table


async def test_pods_forbidden_names_permission(kube: Sandbox) -> None:
    kube.kubernetes.deny("list", "pods")

    outcome = await kube.command("pods")

    text = card_text(kube, outcome)
    assert "not allowed to list pods (the core API group) in namespace meridian (HTTP 403)" in text
    assert "Grant `list` on `pods`" in text
    assert await _state(kube) == "failed"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, "The Kubernetes API failed to list pods (HTTP 500): Internal error occurred: etcdserver: request timed out"),
        (404, "The Kubernetes API found no pods in namespace meridian (HTTP 404)"),
    ],
)
async def test_pods_api_errors(kube: Sandbox, status: int, expected: str) -> None:
    kube.kubernetes.fail_next(status, verb="list", resource="pods")

    outcome = await kube.command("pods")

    assert expected in card_text(kube, outcome)


async def test_pods_missing_deployment(kube: Sandbox) -> None:
    kube.kubernetes.rules = None  # the Role grants only meridian-api, so RBAC would answer 403 first
    kube.runtime.targets.kubernetes.deployment_name = "meridian-ap"

    outcome = await kube.command("pods")

    text = card_text(kube, outcome)
    assert "found no deployments meridian-ap in namespace meridian (HTTP 404)" in text
    assert "Check KUBE_NAMESPACE and KUBE_DEPLOYMENT." in text


async def test_pods_cluster_unreachable(kube: Sandbox) -> None:
    await kube.kubernetes.set_mode("down")

    outcome = await kube.command("pods")

    assert "Could not connect to the Kubernetes API at http://127.0.0.1:" in card_text(kube, outcome)


async def test_pods_not_configured() -> None:
    async with Sandbox(database_url=None, settings_overrides={"kubeconfig": None}) as sandbox:
        outcome = await sandbox.command("pods")

        assert "⏩ Pods of the deployment — not configured (set KUBECONFIG" in card_text(sandbox, outcome)


async def _state(sandbox: Sandbox) -> str:
    runs = await sandbox.runtime.store.list_runs(limit=1)
    return runs[0].state.value
