"""The Kubernetes fake: patch semantics and API errors, through plain HTTP and the real client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.clients.kubernetes import KubernetesClient, PatchType, kubernetes_from_settings
from bot.errors import TargetRejected
from bot.sandbox.fakes.kubernetes import FakeKubernetes
from bot.sandbox.fakes.kubernetes.patches import (
    PatchError,
    apply_json_patch,
    merge_patch,
    strategic_merge_patch,
)
from bot.sandbox.fakes.kubernetes.server import TOKEN

DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/meridian/deployments/meridian-api"


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubernetes]:
    async with FakeKubernetes() as running:
        yield running


async def send(fake: FakeKubernetes, method: str, path: str, *, body: object = None, content_type: str = "application/json", token: str = TOKEN) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    async with aiohttp.ClientSession() as session:
        data = None if body is None else json.dumps(body)
        async with session.request(method, fake.base_url + path, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as response:
            return response.status, await response.json()


def test_json_patch_operations() -> None:
    document = {"a": {"b": [1, 2]}, "c": "x", "k/e~y": 1}

    patched = apply_json_patch(
        document,
        [
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "replace", "path": "/c", "value": "y"},
            {"op": "remove", "path": "/k~1e~0y"},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "test", "path": "/a/b/0", "value": 1},
        ],
    )

    assert patched == {"a": {"b": [1, 2, 3]}, "c": "y", "d": "y"}
    assert document == {"a": {"b": [1, 2]}, "c": "x", "k/e~y": 1}
    with pytest.raises(PatchError):
        apply_json_patch(document, [{"op": "replace", "path": "/missing", "value": 1}])
    with pytest.raises(PatchError):
        apply_json_patch(document, [{"op": "test", "path": "/c", "value": "z"}])


def test_merge_patch_replaces_lists() -> None:
    document = {"spec": {"containers": [{"name": "api", "image": "a"}, {"name": "side", "image": "s"}], "paused": True}}

    patched = merge_patch(document, {"spec": {"containers": [{"name": "api", "image": "b"}], "paused": None}})

    assert patched == {"spec": {"containers": [{"name": "api", "image": "b"}]}}


def test_strategic_merge_patch_merges_by_key() -> None:
    document = {"spec": {"containers": [{"name": "api", "image": "a", "env": [{"name": "X", "value": "1"}]}, {"name": "side", "image": "s"}]}}

    patched = strategic_merge_patch(
        document,
        {"spec": {"containers": [{"name": "api", "image": "b", "env": [{"name": "Y", "value": "2"}]}, {"name": "side", "$patch": "delete"}]}},
    )

    assert patched == {"spec": {"containers": [{"name": "api", "image": "b", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}}


def test_strategic_merge_patch_replace_directive() -> None:
    document = {"metadata": {"labels": {"a": "1", "b": "2"}}}

    assert strategic_merge_patch(document, {"metadata": {"labels": {"$patch": "replace", "c": "3"}}}) == {"metadata": {"labels": {"c": "3"}}}


@pytest.mark.parametrize(
    ("content_type", "body", "image"),
    [
        ("application/json-patch+json", [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "x:1"}], "x:1"),
        ("application/merge-patch+json", {"spec": {"paused": True}}, "ghcr.io/meridian/api:1.4.2"),
        ("application/strategic-merge-patch+json", {"spec": {"template": {"spec": {"containers": [{"name": "api", "image": "y:2"}]}}}}, "y:2"),
    ],
)
async def test_fake_patch_by_content_type(fake: FakeKubernetes, content_type: str, body: object, image: str) -> None:
    status, deployment = await send(fake, "PATCH", DEPLOYMENT_PATH, body=body, content_type=content_type)

    assert status == 200
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert deployment["metadata"]["generation"] == 5
    assert len(deployment["spec"]["template"]["spec"]["containers"]) == 1


async def test_fake_unsupported_patch_type(fake: FakeKubernetes) -> None:
    status, body = await send(fake, "PATCH", DEPLOYMENT_PATH, body={}, content_type="application/json")

    assert status == 415
    assert body["reason"] == "UnsupportedMediaType"


async def test_fake_stale_resource_version_conflicts(fake: FakeKubernetes) -> None:
    _, deployment = await send(fake, "GET", DEPLOYMENT_PATH)
    deployment["spec"]["replicas"] = 4
    fake.cluster.deploy_image("meridian-api", "ghcr.io/meridian/api:1.4.3", change_cause="concurrent deploy")

    status, body = await send(fake, "PUT", DEPLOYMENT_PATH, body=deployment)

    assert status == 409
    assert body["kind"] == "Status"
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    assert fake.deployment.spec["replicas"] == 3


async def test_fake_errors_are_status_objects(fake: FakeKubernetes) -> None:
    missing_status, missing = await send(fake, "GET", "/apis/apps/v1/namespaces/meridian/deployments/other")
    unauthorized_status, unauthorized = await send(fake, "GET", DEPLOYMENT_PATH, token="wrong")

    assert missing_status == 404
    assert missing["message"] == 'deployments.apps "other" not found'
    assert missing["details"] == {"name": "other", "group": "apps", "kind": "deployments"}
    assert unauthorized_status == 401
    assert unauthorized["reason"] == "Unauthorized"


async def test_fake_records_rbac_attributes(fake: FakeKubernetes) -> None:
    await send(fake, "GET", "/api/v1/namespaces/meridian/pods?labelSelector=app%3Dmeridian-api")
    await send(fake, "PATCH", DEPLOYMENT_PATH + "/scale", body={"spec": {"replicas": 4}}, content_type="application/merge-patch+json")

    assert [(call.verb, call.api_group, call.resource_path, call.name) for call in fake.calls] == [
        ("list", "", "pods", ""),
        ("patch", "apps", "deployments/scale", "meridian-api"),
    ]


async def test_client_conflict_is_rejected(fake: FakeKubernetes) -> None:
    client = KubernetesClient(namespace="meridian", deployment="meridian-api", timeout=2.0, kubeconfig=fake.kubeconfig_path)
    fake.fail_next(409, verb="patch")
    try:
        with pytest.raises(TargetRejected, match="HTTP 409 conflict"):
            await client.patch_deployment({"spec": {"paused": True}}, patch_type=PatchType.MERGE)
    finally:
        await client.close()


async def test_client_bad_kubeconfig(tmp_path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("this: [is not a kubeconfig", encoding="utf-8")
    client = KubernetesClient(namespace="meridian", deployment="meridian-api", timeout=2.0, kubeconfig=str(path))

    with pytest.raises(TargetRejected, match="Could not load the Kubernetes configuration from KUBECONFIG"):
        await client.read_deployment()


def test_client_needs_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    assert kubernetes_from_settings(namespace="meridian", deployment="meridian-api", kubeconfig=None, timeout=1.0) is None
    assert kubernetes_from_settings(namespace="meridian", deployment="meridian-api", kubeconfig="/tmp/kubeconfig", timeout=1.0) is not None
