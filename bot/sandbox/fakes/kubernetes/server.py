"""An HTTP fake of the Kubernetes API subset the bot uses, served to the real kubernetes-asyncio client.

It serves pods and their logs, deployments (with the scale subresource) and ReplicaSets of
one namespace, applies the three patch types by Content-Type, and returns errors as the API
server does: a `Status` object with `reason`, `message` and `code`. Every call is recorded as
the request attributes RBAC authorizes (verb, API group, resource, subresource, namespace,
name), and when `rules` are set the fake enforces them like a Role.

Each read of a deployment first lets the controller take one step (see `cluster.py`), so a
client that polls a rollout sees it progress; `cluster.controller_running = False` freezes it.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web

from bot.sandbox.fakes.http_server import FakeHttpServer
from bot.sandbox.fakes.kubernetes.cluster import (
    Behaviour,
    FakeCluster,
    FakeDeployment,
    FakePod,
    matches_selector,
)
from bot.sandbox.fakes.kubernetes.patches import PATCH_TYPES, PatchError, apply_patch

logger = logging.getLogger(__name__)

TOKEN = "sandbox-kubernetes-token"
SERVICE_ACCOUNT = "system:serviceaccount:meridian:meridian-bot"

# The images of the sandbox deployment's revisions 1..4 and their change causes.
DEFAULT_IMAGES = [
    ("ghcr.io/meridian/api:1.3.9", "deploy 1.3.9 (pipeline 790)"),
    ("ghcr.io/meridian/api:1.4.0", "deploy 1.4.0 (pipeline 801)"),
    ("ghcr.io/meridian/api:1.4.1", "deploy 1.4.1 (pipeline 806)"),
    ("ghcr.io/meridian/api:1.4.2", "deploy 1.4.2 (pipeline 812)"),
]
BAD_IMAGE = "ghcr.io/meridian/api:1.5.0"
SECRET_NAME = "meridian-secrets"
# The sandbox Secret's values: canaries that the tests look for in everything the bot wrote.
DEFAULT_SECRET_VALUES = {
    "JWT_SECRET": "canary-jwt-secret-0c9e2b7d41",
    "SESSION_TOKEN_SALT": "canary-session-salt-5a1f88e0",
    "API_KEY_SALT": "canary-api-key-salt-93d04c6b",
    "DATABASE_URL": "postgresql://meridian_api:canary-api-db-password-71be@127.0.0.1:5432/meridian",
}

_VERB_BY_METHOD = {"GET": "get", "PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}
_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[a-z0-9.]+)/v1)/namespaces/(?P<namespace>[^/]+)/(?P<resource>[a-z]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<subresource>[a-z]+))?)?$"
)


@dataclass(frozen=True, slots=True)
class ApiCall:
    """The attributes of one request in RBAC's terms; `name` is empty for a list."""

    verb: str
    api_group: str
    resource: str
    subresource: str
    namespace: str
    name: str

    @property
    def resource_path(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass
class Failure:
    """A failure injected for the next matching requests."""

    status: int
    reason: str
    message: str
    verb: str | None = None
    resource: str | None = None
    remaining: int = 1

    def matches(self, call: ApiCall) -> bool:
        return (self.verb is None or self.verb == call.verb) and (
            self.resource is None or self.resource == call.resource_path
        )


@dataclass
class Denial:
    verb: str
    resource: str  # "deployments" or "deployments/scale"


def status_body(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.body = status_body(code, reason, message, details)
        self.code = code


def _qualified(call: ApiCall) -> str:
    return f"{call.resource}.{call.api_group}" if call.api_group else call.resource


def _not_found(call: ApiCall, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(call)} "{name}" not found',
        {"name": name, "group": call.api_group, "kind": call.resource},
    )


class FakeKubernetes(FakeHttpServer):
    """The Kubernetes API of a cluster with the Meridian API deployment in namespace `meridian`."""

    name: ClassVar[str] = "Kubernetes API fake"

    def __init__(self, *, namespace: str = "meridian", deployment: str = "meridian-api", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = FakeCluster(namespace=namespace)
        self.deployment_name = deployment
        self.cluster.add_deployment(deployment, images=list(DEFAULT_IMAGES))
        self.calls: list[ApiCall] = []
        self.rules: list[dict[str, Any]] | None = None
        self.denials: list[Denial] = []
        self.failures: list[Failure] = []
        self.patches: list[tuple[str, str, Any]] = []  # (resource path, content type, body) of each PATCH
        self._kubeconfig_dir: str | None = None
        self.secrets: dict[str, dict[str, Any]] = {}
        self.set_secret_values(SECRET_NAME, DEFAULT_SECRET_VALUES)

    # Test and sandbox controls

    @property
    def deployment(self) -> FakeDeployment:
        return self.cluster.deployments[self.deployment_name]

    def enforce(self, rules: Iterable[Mapping[str, Any]]) -> None:
        """Authorize every request with these Role rules, as RBAC does; None turns checks off."""
        self.rules = [dict(rule) for rule in rules]

    def deny(self, verb: str, resource: str) -> None:
        """Reject `verb` on `resource` with 403 (for example "patch", "deployments/scale")."""
        self.denials.append(Denial(verb=verb, resource=resource))

    def fail_next(self, status: int, *, verb: str | None = None, resource: str | None = None, times: int = 1) -> None:
        """Fail the next `times` matching requests with an error Status of this HTTP code."""
        reasons = {409: "Conflict", 404: "NotFound", 500: "InternalError", 503: "ServiceUnavailable", 429: "TooManyRequests"}
        reason = reasons.get(status, "InternalError")
        message = {
            409: "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
            500: "Internal error occurred: etcdserver: request timed out",
        }.get(status, f"injected {reason}")
        self.failures.append(Failure(status=status, reason=reason, message=message, verb=verb, resource=resource, remaining=times))

    def calls_of(self, verb: str, resource: str) -> list[ApiCall]:
        return [call for call in self.calls if call.verb == verb and call.resource_path == resource]

    def set_secret_values(self, name: str, values: Mapping[str, str], *, annotations: Mapping[str, str] | None = None) -> None:
        """Create or overwrite the Secret `name` with these values, as an administrator would."""
        existing = self.secrets.get(name)
        metadata = copy.deepcopy(existing["metadata"]) if existing else {
            "name": name,
            "namespace": self.cluster.namespace,
            "uid": self.cluster.new_uid(),
            "creationTimestamp": "2026-01-05T09:00:00Z",
            "annotations": {},
        }
        if annotations is not None:
            metadata["annotations"] = dict(annotations)
        metadata["resourceVersion"] = self.cluster.next_resource_version()
        data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
        self.secrets[name] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata, "data": data}

    def secret_values(self, name: str = SECRET_NAME) -> dict[str, str]:
        """Return the decoded values of the Secret `name`."""
        data = self.secrets[name].get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def scenario(self, name: str) -> None:
        """Switch the deployment into a named state (see `SCENARIOS`)."""
        SCENARIOS[name](self)

    @property
    def kubeconfig_path(self) -> str:
        """A kubeconfig file (JSON, which is valid YAML) that points at this server."""
        if self._kubeconfig_dir is None:
            self._kubeconfig_dir = tempfile.mkdtemp(prefix="meridian-kube-")
        path = Path(self._kubeconfig_dir) / "kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.base_url}}],
            "users": [{"name": "meridian-bot", "user": {"token": TOKEN}}],
            "contexts": [
                {"name": "sandbox", "context": {"cluster": "sandbox", "user": "meridian-bot", "namespace": self.cluster.namespace}}
            ],
            "current-context": "sandbox",
        }
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return str(path)

    async def stop(self) -> None:
        await super().stop()
        if self._kubeconfig_dir is not None:
            shutil.rmtree(self._kubeconfig_dir, ignore_errors=True)
            self._kubeconfig_dir = None

    # Serving

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._dispatch)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response(status_body(401, "Unauthorized", "Unauthorized"), status=401)
        match = _PATH.match(request.path)
        if match is None:
            return web.json_response(status_body(404, "NotFound", "the server could not find the requested resource"), status=404)

        group = match["group"] or ""
        name = match["name"] or ""
        verb = _VERB_BY_METHOD.get(request.method, request.method.lower())
        if verb == "get" and not name:
            verb = "list"
        call = ApiCall(
            verb=verb,
            api_group=group,
            resource=match["resource"],
            subresource=match["subresource"] or "",
            namespace=match["namespace"],
            name=name,
        )
        self.calls.append(call)

        try:
            self._authorize(call)
            self._inject_failure(call)
            handler = self._handler_for(call)
            return await handler(request, call)
        except ApiError as error:
            return web.json_response(error.body, status=error.code)

    def _authorize(self, call: ApiCall) -> None:
        denied = any(denial.verb == call.verb and denial.resource == call.resource_path for denial in self.denials)
        if not denied and self.rules is not None:
            denied = not any(_rule_allows(rule, call) for rule in self.rules)
        if not denied:
            return
        subject = f'{_qualified(call)} "{call.name}"' if call.name else _qualified(call)
        message = (
            f'{subject} is forbidden: User "{SERVICE_ACCOUNT}" cannot {call.verb} resource "{call.resource_path}" '
            f'in API group "{call.api_group}" in the namespace "{call.namespace}"'
        )
        details = {"group": call.api_group, "kind": call.resource}
        if call.name:
            details["name"] = call.name
        raise ApiError(403, "Forbidden", message, details)

    def _inject_failure(self, call: ApiCall) -> None:
        for failure in self.failures:
            if failure.remaining > 0 and failure.matches(call):
                failure.remaining -= 1
                raise ApiError(failure.status, failure.reason, failure.message)

    def _handler_for(self, call: ApiCall) -> Callable[[web.Request, ApiCall], Awaitable[web.StreamResponse]]:
        if call.namespace != self.cluster.namespace:
            raise ApiError(404, "NotFound", f'namespaces "{call.namespace}" not found', {"name": call.namespace, "kind": "namespaces"})
        routes: dict[tuple[str, str, str, str], Callable[[web.Request, ApiCall], Awaitable[web.StreamResponse]]] = {
            ("", "pods", "", "list"): self._list_pods,
            ("", "pods", "", "get"): self._get_pod,
            ("", "pods", "log", "get"): self._pod_log,
            ("apps", "deployments", "", "list"): self._list_deployments,
            ("apps", "deployments", "", "get"): self._get_deployment,
            ("apps", "deployments", "", "patch"): self._patch_deployment,
            ("apps", "deployments", "", "update"): self._replace_deployment,
            ("apps", "deployments", "scale", "get"): self._get_scale,
            ("apps", "deployments", "scale", "patch"): self._patch_scale,
            ("apps", "deployments", "scale", "update"): self._replace_scale,
            ("apps", "replicasets", "", "list"): self._list_replicasets,
            ("apps", "replicasets", "", "get"): self._get_replicaset,
            ("", "secrets", "", "get"): self._get_secret,
            ("", "secrets", "", "patch"): self._patch_secret,
            ("", "secrets", "", "update"): self._replace_secret,
        }
        handler = routes.get((call.api_group, call.resource, call.subresource, call.verb))
        if handler is None:
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({call.resource_path})")
        return handler

    # Pods

    async def _list_pods(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        selector = request.query.get("labelSelector", "")
        items = [pod.to_json(call.namespace) for pod in self.cluster.pods()]
        items = [item for item in items if matches_selector(item["metadata"]["labels"], selector)]
        return web.json_response(self._list("PodList", "v1", items))

    async def _get_pod(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        return web.json_response(self._pod(call).to_json(call.namespace))

    def _pod(self, call: ApiCall) -> FakePod:
        pod = self.cluster.find_pod(call.name)
        if pod is None:
            raise _not_found(call, call.name)
        return pod

    async def _pod_log(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        pod = self._pod(call)
        names = [container["name"] for container in pod.containers]
        container = request.query.get("container")
        if container is None:
            if len(names) > 1:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {pod.name}, choose one of: [{' '.join(names)}]",
                )
            container = names[0]
        if container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {pod.name}")
        if pod.waiting_to_start:
            state = "trying and failing to pull image" if pod.behaviour is Behaviour.IMAGE_PULL_BACKOFF else "ContainerCreating"
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{pod.name}" is waiting to start: {state}')

        lines = list(pod.logs)
        since = request.query.get("sinceSeconds")
        if since is not None:
            threshold = self.cluster.clock() - _positive_int(since, "sinceSeconds")
            lines = [line for line in lines if line.at >= threshold]
        tail = request.query.get("tailLines")
        if tail is not None:
            count = _positive_int(tail, "tailLines", allow_zero=True)
            lines = lines[-count:] if count else []
        text = "".join(line.text + "\n" for line in lines)
        limit = request.query.get("limitBytes")
        if limit is not None:
            text = text.encode()[: _positive_int(limit, "limitBytes")].decode("utf-8", errors="ignore")
        return web.Response(text=text, content_type="text/plain")

    # Deployments

    async def _list_deployments(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        self.cluster.step()
        items = [copy.deepcopy(deployment.document) for deployment in self.cluster.deployments.values()]
        return web.json_response(self._list("DeploymentList", "apps/v1", items))

    def _deployment(self, call: ApiCall) -> FakeDeployment:
        deployment = self.cluster.deployments.get(call.name)
        if deployment is None:
            raise _not_found(call, call.name)
        return deployment

    async def _get_deployment(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        deployment = self._deployment(call)
        self.cluster.step()
        return web.json_response(deployment.document)

    async def _patch_deployment(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        deployment = self._deployment(call)
        patched = await self._patched(request, call, deployment.document)
        self._store_deployment(deployment, patched, call)
        return web.json_response(deployment.document)

    async def _replace_deployment(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        deployment = self._deployment(call)
        body = await _json_body(request)
        self._store_deployment(deployment, body, call)
        return web.json_response(deployment.document)

    def _store_deployment(self, deployment: FakeDeployment, new: Any, call: ApiCall) -> None:
        old = deployment.document
        if not isinstance(new, dict) or not isinstance(new.get("spec"), dict) or not isinstance(new.get("metadata"), dict):
            raise ApiError(422, "Invalid", f'Deployment.apps "{call.name}" is invalid: the object has no metadata or spec')
        metadata = new["metadata"]
        sent_version = metadata.get("resourceVersion")
        if sent_version is not None and sent_version != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on deployments.apps "{call.name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                {"name": call.name, "group": "apps", "kind": "deployments"},
            )
        for fixed in ("name", "namespace", "uid", "creationTimestamp"):
            if metadata.get(fixed) != old["metadata"].get(fixed):
                raise ApiError(422, "Invalid", f'Deployment.apps "{call.name}" is invalid: metadata.{fixed}: field is immutable')
        _validate_spec(new["spec"], call.name)

        spec_changed = new["spec"] != old["spec"]
        new = copy.deepcopy(new)
        new["status"] = old.get("status", {})
        new["metadata"]["generation"] = old["metadata"]["generation"] + (1 if spec_changed else 0)
        if new != old:
            new["metadata"]["resourceVersion"] = self.cluster.next_resource_version()
        deployment.document = new

    # The scale subresource

    def _scale_json(self, deployment: FakeDeployment) -> dict[str, Any]:
        metadata = deployment.document["metadata"]
        selector = ",".join(f"{key}={value}" for key, value in deployment.spec["selector"]["matchLabels"].items())
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
                "resourceVersion": metadata["resourceVersion"],
                "creationTimestamp": metadata["creationTimestamp"],
            },
            "spec": {"replicas": deployment.spec.get("replicas", 1)},
            "status": {"replicas": deployment.status.get("replicas", 0), "selector": selector},
        }

    async def _get_scale(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        return web.json_response(self._scale_json(self._deployment(call)))

    async def _patch_scale(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        deployment = self._deployment(call)
        patched = await self._patched(request, call, self._scale_json(deployment))
        return web.json_response(self._store_scale(deployment, patched, call))

    async def _replace_scale(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        deployment = self._deployment(call)
        return web.json_response(self._store_scale(deployment, await _json_body(request), call))

    def _store_scale(self, deployment: FakeDeployment, scale: Any, call: ApiCall) -> dict[str, Any]:
        replicas = scale.get("spec", {}).get("replicas") if isinstance(scale, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(422, "Invalid", f'Scale.autoscaling "{call.name}" is invalid: spec.replicas: Invalid value: {replicas!r}: must be greater than or equal to 0')
        document = copy.deepcopy(deployment.document)
        document["metadata"]["resourceVersion"] = scale.get("metadata", {}).get("resourceVersion")
        document["spec"]["replicas"] = replicas
        self._store_deployment(deployment, document, call)
        return self._scale_json(deployment)

    # ReplicaSets

    async def _list_replicasets(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        selector = request.query.get("labelSelector", "")
        items = [rs.to_json(call.namespace) for rs in self.cluster.replicasets()]
        items = [item for item in items if matches_selector(item["metadata"]["labels"], selector)]
        return web.json_response(self._list("ReplicaSetList", "apps/v1", items))

    async def _get_replicaset(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        rs = next((rs for rs in self.cluster.replicasets() if rs.name == call.name), None)
        if rs is None:
            raise _not_found(call, call.name)
        return web.json_response(rs.to_json(call.namespace))

    # Secrets

    def _secret(self, call: ApiCall) -> dict[str, Any]:
        secret = self.secrets.get(call.name)
        if secret is None:
            raise _not_found(call, call.name)
        return secret

    async def _get_secret(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        return web.json_response(self._secret(call))

    async def _patch_secret(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        secret = self._secret(call)
        patched = await self._patched(request, call, secret)
        return web.json_response(self._store_secret(secret, patched, call))

    async def _replace_secret(self, request: web.Request, call: ApiCall) -> web.StreamResponse:
        secret = self._secret(call)
        return web.json_response(self._store_secret(secret, await _json_body(request), call))

    def _store_secret(self, old: dict[str, Any], new: Any, call: ApiCall) -> dict[str, Any]:
        """Validate and store a Secret; keys whose values changed make new pods log auth errors."""
        if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
            raise ApiError(422, "Invalid", f'Secret "{call.name}" is invalid: the object has no metadata')
        sent_version = new["metadata"].get("resourceVersion")
        if sent_version is not None and sent_version != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on secrets "{call.name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                {"name": call.name, "kind": "secrets"},
            )
        for fixed in ("name", "namespace", "uid"):
            if new["metadata"].get(fixed) != old["metadata"].get(fixed):
                raise ApiError(422, "Invalid", f'Secret "{call.name}" is invalid: metadata.{fixed}: field is immutable')
        data = new.get("data") or {}
        for key, value in data.items():
            try:
                base64.b64decode(str(value), validate=True)
            except binascii.Error:
                # The real API server names the key, never the value.
                raise ApiError(400, "BadRequest", f"Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data.{key}") from None
        changed = {key for key in data if data[key] != (old.get("data") or {}).get(key)}
        stored = copy.deepcopy(new)
        stored["metadata"]["resourceVersion"] = self.cluster.next_resource_version()
        self.secrets[call.name] = stored
        self.cluster.changed_secret_keys |= changed
        return stored

    # Helpers

    def _list(self, kind: str, api_version: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "kind": kind,
            "apiVersion": api_version,
            "metadata": {"resourceVersion": str(self.cluster._resource_version)},
            "items": items,
        }

    async def _patched(self, request: web.Request, call: ApiCall, document: dict[str, Any]) -> Any:
        content_type = request.content_type
        if content_type not in PATCH_TYPES:
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: {', '.join(PATCH_TYPES)}")
        patch = await _json_body(request)
        self.patches.append((call.resource_path, content_type, patch))
        try:
            return apply_patch(document, patch, content_type)
        except PatchError as error:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {error}") from None


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError:
        raise ApiError(400, "BadRequest", "the request body is not valid JSON") from None


def _positive_int(text: str, name: str, *, allow_zero: bool = False) -> int:
    if not text.isdigit() or (int(text) == 0 and not allow_zero):
        raise ApiError(400, "BadRequest", f"{name}: Invalid value: {text!r}: must be greater than 0")
    return int(text)


def _validate_spec(spec: dict[str, Any], name: str) -> None:
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        raise ApiError(422, "Invalid", f'Deployment.apps "{name}" is invalid: spec.replicas: Invalid value: {replicas!r}')
    template = spec.get("template")
    containers = template.get("spec", {}).get("containers") if isinstance(template, dict) else None
    if not containers:
        raise ApiError(422, "Invalid", f'Deployment.apps "{name}" is invalid: spec.template.spec.containers: Required value')
    labels = template.get("metadata", {}).get("labels", {})
    selector = spec.get("selector", {}).get("matchLabels", {})
    if any(labels.get(key) != value for key, value in selector.items()):
        raise ApiError(422, "Invalid", f'Deployment.apps "{name}" is invalid: spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`')


def _rule_allows(rule: Mapping[str, Any], call: ApiCall) -> bool:
    def contains(values: Iterable[str], wanted: str) -> bool:
        values = list(values)
        return "*" in values or wanted in values

    names = list(rule.get("resourceNames") or [])
    return (
        contains(rule.get("verbs", []), call.verb)
        and contains(rule.get("apiGroups", []), call.api_group)
        and contains(rule.get("resources", []), call.resource_path)
        and (not names or call.name in names)
    )


def _crash_looping(fake: FakeKubernetes) -> None:
    fake.cluster.set_behaviour(fake.deployment_name, Behaviour.CRASH_LOOPING)


def _oom_killed(fake: FakeKubernetes) -> None:
    fake.cluster.set_behaviour(fake.deployment_name, Behaviour.OOM_KILLED)


def _healthy(fake: FakeKubernetes) -> None:
    fake.cluster.set_behaviour(fake.deployment_name, Behaviour.HEALTHY)


def _bad_deploy(fake: FakeKubernetes) -> None:
    """A new revision whose image cannot be pulled: the rollout never progresses."""
    fake.cluster.deploy_image(
        fake.deployment_name, BAD_IMAGE, change_cause="deploy 1.5.0 (pipeline 820)", behaviour=Behaviour.IMAGE_PULL_BACKOFF
    )
    fake.cluster.step()


SCENARIOS: dict[str, Callable[[FakeKubernetes], None]] = {
    "healthy": _healthy,
    "crash-looping": _crash_looping,
    "oom-killed": _oom_killed,
    "bad-deploy": _bad_deploy,
}
