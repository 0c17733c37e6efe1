"""A typed client for the one deployment the bot looks after, over kubernetes-asyncio.

Configuration: a kubeconfig file when KUBECONFIG is set (the `kubeconfig` setting), else the
in-cluster service account when KUBERNETES_SERVICE_HOST is set. An explicit kubeconfig wins,
so a developer inside a pod can still aim the bot elsewhere. The configuration is loaded on
the first call, because loading a kubeconfig is asynchronous and the targets are built
synchronously at start-up.

Responses are read as raw JSON (`_preload_content=False`) instead of kubernetes-asyncio's
models: a pod template then goes back into a rollback patch exactly as the API sent it, and
every HTTP status passes through one error mapping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import aiohttp
import yaml
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config.config_exception import ConfigException

from bot.clients.excerpt import excerpt
from bot.clients.kubernetes.models import (
    Deployment,
    Pod,
    ReplicaSet,
    Scale,
    is_controlled_by,
)
from bot.clients.kubernetes.secrets import Secret, secret_patch
from bot.errors import (
    TargetRejected,
    TargetResponseInvalid,
    TargetTimeout,
    TargetUnavailable,
)

logger = logging.getLogger(__name__)

TARGET = "kubernetes"

# The bot reads at most this much of one container's log, so a chatty pod cannot exhaust memory.
DEFAULT_LOG_LIMIT_BYTES = 1_000_000
# How often a rollout is polled while it is followed, and for how long at most (seconds).
# kubectl rollout status waits without a limit by default; an on-call run should not.
DEFAULT_POLL_INTERVAL_SECONDS = 2.0
DEFAULT_ROLLOUT_TIMEOUT_SECONDS = 600.0


class LogsUnavailable(TargetRejected):
    """A pod has no logs to read yet, for example while its image cannot be pulled (HTTP 400)."""


class PatchType(StrEnum):
    JSON = "application/json-patch+json"
    MERGE = "application/merge-patch+json"
    STRATEGIC_MERGE = "application/strategic-merge-patch+json"


@dataclass(frozen=True)
class Access:
    """A request's verb, resource and object in RBAC's terms, for error messages."""

    verb: str
    resource: str  # "deployments" or "deployments/scale"
    api_group: str
    name: str | None = None


class Kubernetes(Protocol):
    """The bot's deployment and what belongs to it, as the procedures use them."""

    namespace: str
    deployment_name: str
    poll_interval: float  # seconds between two readings of a rollout that is followed
    rollout_timeout: float  # seconds a rollout is followed before the bot gives up waiting

    async def read_deployment(self) -> Deployment: ...

    async def list_replicasets(self, deployment: Deployment) -> list[ReplicaSet]: ...

    async def list_pods(self, deployment: Deployment) -> list[Pod]: ...

    async def read_log(
        self,
        pod: str,
        *,
        container: str | None,
        tail_lines: int | None,
        since_seconds: int | None,
        limit_bytes: int = DEFAULT_LOG_LIMIT_BYTES,
    ) -> str: ...

    async def patch_deployment(self, patch: Any, *, patch_type: PatchType) -> Deployment: ...

    async def scale_deployment(self, replicas: int) -> Scale: ...

    async def read_secret(self, name: str) -> Secret: ...

    async def patch_secret(
        self,
        name: str,
        *,
        values: Mapping[str, str],
        resource_version: str | None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> Secret: ...

    async def close(self) -> None: ...


_FORBIDDEN = re.compile(
    r'cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)" in API group "(?P<group>[^"]*)"'
    r'(?: in the namespace "(?P<namespace>[^"]+)")?'
)


class KubernetesClient:
    """kubernetes-asyncio client for KUBE_NAMESPACE / KUBE_DEPLOYMENT, independent of runs and Slack."""

    def __init__(
        self,
        *,
        namespace: str,
        deployment: str,
        timeout: float,
        kubeconfig: str | None = None,
        in_cluster: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
        rollout_timeout: float = DEFAULT_ROLLOUT_TIMEOUT_SECONDS,
    ) -> None:
        if kubeconfig is None and not in_cluster:
            raise ValueError("set a kubeconfig path or in_cluster")
        self.namespace = namespace
        self.deployment_name = deployment
        self.poll_interval = poll_interval
        self.rollout_timeout = rollout_timeout
        self._timeout = timeout
        self._kubeconfig = kubeconfig
        self._in_cluster = in_cluster and kubeconfig is None
        self._api: k8s.ApiClient | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        source = "in-cluster" if self._in_cluster else f"kubeconfig={self._kubeconfig!r}"
        return f"KubernetesClient({self.namespace}/{self.deployment_name}, {source})"

    @property
    def display_name(self) -> str:
        return f"deployment {self.namespace}/{self.deployment_name}"

    # Reading

    async def read_deployment(self) -> Deployment:
        api = await self._apps()
        item = await self._json(
            Access("get", "deployments", "apps", self.deployment_name),
            lambda: api.read_namespaced_deployment(
                self.deployment_name, self.namespace, _preload_content=False, _request_timeout=self._timeout
            ),
        )
        return Deployment.from_json(item)

    async def list_replicasets(self, deployment: Deployment) -> list[ReplicaSet]:
        """List the ReplicaSets the deployment controls, leaving out other owners' ReplicaSets with the same labels."""
        api = await self._apps()
        listing = await self._json(
            Access("list", "replicasets", "apps"),
            lambda: api.list_namespaced_replica_set(
                self.namespace,
                label_selector=deployment.label_selector,
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
        )
        return [ReplicaSet.from_json(item) for item in _items(listing) if is_controlled_by(item, deployment.uid)]

    async def list_pods(self, deployment: Deployment) -> list[Pod]:
        api = await self._core()
        listing = await self._json(
            Access("list", "pods", ""),
            lambda: api.list_namespaced_pod(
                self.namespace,
                label_selector=deployment.label_selector,
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
        )
        return sorted((Pod.from_json(item) for item in _items(listing)), key=lambda pod: pod.name)

    async def read_log(
        self,
        pod: str,
        *,
        container: str | None,
        tail_lines: int | None,
        since_seconds: int | None,
        limit_bytes: int = DEFAULT_LOG_LIMIT_BYTES,
    ) -> str:
        """Return the pod's log text; a log cut at `limit_bytes` ends mid-line."""
        api = await self._core()
        options: dict[str, Any] = {"limit_bytes": limit_bytes}
        if container is not None:
            options["container"] = container
        if tail_lines is not None:
            options["tail_lines"] = tail_lines
        if since_seconds is not None:
            options["since_seconds"] = since_seconds
        body = await self._call(
            Access("get", "pods/log", "", pod),
            lambda: api.read_namespaced_pod_log(
                pod, self.namespace, _preload_content=False, _request_timeout=self._timeout, **options
            ),
        )
        return body.decode("utf-8", errors="replace")

    # Changing

    async def patch_deployment(self, patch: Any, *, patch_type: PatchType) -> Deployment:
        api = await self._apps()
        item = await self._json(
            Access("patch", "deployments", "apps", self.deployment_name),
            lambda: api.patch_namespaced_deployment(
                self.deployment_name,
                self.namespace,
                patch,
                _content_type=patch_type.value,
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
        )
        logger.info("Patched deployment %s/%s (%s)", self.namespace, self.deployment_name, patch_type.value)
        return Deployment.from_json(item)

    async def scale_deployment(self, replicas: int) -> Scale:
        """Set spec.replicas through the scale subresource, with the merge patch `kubectl scale` sends."""
        api = await self._apps()
        item = await self._json(
            Access("patch", "deployments/scale", "apps", self.deployment_name),
            lambda: api.patch_namespaced_deployment_scale(
                self.deployment_name,
                self.namespace,
                {"spec": {"replicas": replicas}},
                _content_type=PatchType.MERGE.value,
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
        )
        logger.info("Scaled deployment %s/%s to %d replicas", self.namespace, self.deployment_name, replicas)
        return Scale.from_json(item)

    # The API's Secret: the Role grants get and patch on KUBE_SECRET_NAME alone.

    async def read_secret(self, name: str) -> Secret:
        """Read the Secret `name`; its values are registered with the redaction filter."""
        api = await self._core()
        item = await self._json(
            Access("get", "secrets", "", name),
            lambda: api.read_namespaced_secret(name, self.namespace, _preload_content=False, _request_timeout=self._timeout),
        )
        return Secret.from_json(item)

    async def patch_secret(
        self,
        name: str,
        *,
        values: Mapping[str, str],
        resource_version: str | None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> Secret:
        """Set `values` (and annotations) with a merge patch; a stale `resource_version` gets 409."""
        api = await self._core()
        patch = secret_patch(values=values, resource_version=resource_version, annotations=annotations)
        item = await self._json(
            Access("patch", "secrets", "", name),
            lambda: api.patch_namespaced_secret(
                name,
                self.namespace,
                patch,
                _content_type=PatchType.MERGE.value,
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
        )
        # Only the key names are logged, never the values.
        logger.info("Patched secret %s/%s: keys %s", self.namespace, name, ", ".join(sorted(values)) or "none")
        return Secret.from_json(item)

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    # Plumbing

    async def _client(self) -> k8s.ApiClient:
        async with self._lock:
            if self._api is None:
                configuration = k8s.Configuration()
                try:
                    if self._in_cluster:
                        # NOTE: the tests reach the fake through a kubeconfig; this path runs only in a pod.
                        k8s_config.load_incluster_config(client_configuration=configuration)
                    else:
                        await k8s_config.load_kube_config(
                            config_file=self._kubeconfig, client_configuration=configuration, persist_config=False
                        )
                except (ConfigException, OSError, ValueError, yaml.YAMLError) as error:
                    source = "the in-cluster service account" if self._in_cluster else f"KUBECONFIG ({self._kubeconfig})"
                    raise TargetRejected(
                        TARGET,
                        f"Could not load the Kubernetes configuration from {source}: {excerpt(str(error))}",
                        hint="Check KUBECONFIG, or the pod's service account when the bot runs in the cluster.",
                    ) from error
                self._api = k8s.ApiClient(configuration)
                logger.info("Kubernetes client configured for %s at %s", self.display_name, configuration.host)
            return self._api

    async def _apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(await self._client())

    async def _core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(await self._client())

    async def _json(self, access: Access, send: Callable[[], Awaitable[aiohttp.ClientResponse]]) -> dict[str, Any]:
        body = await self._call(access, send)
        try:
            item = json.loads(body)
        except ValueError as error:
            raise TargetResponseInvalid(
                TARGET, f"The Kubernetes API returned invalid JSON for {access.verb} {access.resource}: \"{excerpt(body)}\""
            ) from error
        if not isinstance(item, dict):
            raise TargetResponseInvalid(TARGET, f"The Kubernetes API returned JSON that is not an object for {access.verb} {access.resource}.")
        return item

    async def _call(self, access: Access, send: Callable[[], Awaitable[aiohttp.ClientResponse]]) -> bytes:
        api = await self._client()
        host = api.configuration.host
        try:
            response = await send()
            try:
                body = await response.read()
            finally:
                response.release()
        except TimeoutError as error:
            raise TargetTimeout(
                TARGET,
                f"The Kubernetes API at {host} did not answer {access.verb} {access.resource} within {self._timeout:g} s.",
                hint="Try again; if it persists, check the cluster's control plane.",
            ) from error
        except (aiohttp.ClientError, OSError) as error:
            raise TargetUnavailable(
                TARGET,
                f"Could not connect to the Kubernetes API at {host}: {excerpt(str(error)) or type(error).__name__}.",
                hint="Check that the cluster is reachable from the bot.",
            ) from error
        if response.status >= 400:
            raise self._error(access, response.status, body)
        return body

    def _error(self, access: Access, status: int, body: bytes) -> Exception:
        message = _status_message(body)
        subject = f"{access.resource} {access.name}" if access.name else access.resource
        if status == 403:
            found = _FORBIDDEN.search(message)
            verb = found["verb"] if found else access.verb
            resource = found["resource"] if found else access.resource
            group = found["group"] if found else access.api_group
            namespace = (found["namespace"] if found else None) or self.namespace
            group_text = f'API group "{group}"' if group else "the core API group"
            named = f" {access.name}" if access.name else ""
            return TargetRejected(
                TARGET,
                f"The bot's Kubernetes account is not allowed to {verb} {resource}{named} ({group_text}) in namespace {namespace} (HTTP 403).",
                hint=f"Grant `{verb}` on `{resource}` in the bot's Role (deploy/role.yaml). Kubernetes said: {message}",
            )
        if status == 400 and access.resource == "pods/log":
            return LogsUnavailable(TARGET, message)
        if status == 401:
            return TargetRejected(
                TARGET,
                "The Kubernetes API rejected the bot's credentials (HTTP 401).",
                hint="Check the token or certificate in KUBECONFIG, or the pod's service account token.",
            )
        if status == 404:
            return TargetRejected(
                TARGET,
                f"The Kubernetes API found no {subject} in namespace {self.namespace} (HTTP 404): {message}",
                hint="Check KUBE_SECRET_NAME and KUBE_NAMESPACE." if access.resource == "secrets" else "Check KUBE_NAMESPACE and KUBE_DEPLOYMENT.",
            )
        if status == 409:
            return TargetRejected(
                TARGET,
                f"Kubernetes rejected the change to {subject}: it was modified at the same time (HTTP 409 conflict). Nothing was changed.",
                hint="Start a new run, so its plan shows the current state.",
            )
        if status in (429, 500, 502, 503, 504):
            return TargetUnavailable(
                TARGET,
                f"The Kubernetes API failed to {access.verb} {subject} (HTTP {status}): {message}",
                hint="Try again in a minute.",
            )
        return TargetRejected(TARGET, f"The Kubernetes API rejected {access.verb} {subject} (HTTP {status}): {message}")


def _status_message(body: bytes) -> str:
    """Return the `message` of a Kubernetes Status object, or an excerpt of a body that is not one."""
    try:
        status = json.loads(body)
    except ValueError:
        return excerpt(body)
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return excerpt(status["message"], max_chars=400)
    return excerpt(body)


def _items(listing: dict[str, Any]) -> list[dict[str, Any]]:
    items = listing.get("items")
    if not isinstance(items, list):
        raise TargetResponseInvalid(TARGET, "The Kubernetes API returned a list without `items`.")
    return [item for item in items if isinstance(item, dict)]
