"""Results of the Kubernetes client: frozen dataclasses read from the API's JSON.

The API leaves zero counts and empty fields out of its objects, so every reader here treats
a missing field as zero or empty. Pod templates are kept as the JSON the API sent, so a
rollback can patch them back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
TEMPLATE_HASH_LABEL = "pod-template-hash"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def parse_revision(annotations: Mapping[str, str]) -> int | None:
    value = annotations.get(REVISION_ANNOTATION)
    if value is None or not value.isdigit():
        return None
    return int(value)


def container_images(template: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Return the (container name, image) pairs of a pod template, init containers excluded."""
    containers = template.get("spec", {}).get("containers") or []
    return tuple((str(container.get("name", "")), str(container.get("image", ""))) for container in containers)


@dataclass(frozen=True)
class ContainerState:
    """One container of a pod: its readiness, restarts and why it is not running."""

    name: str
    image: str
    ready: bool
    restarts: int
    state: str  # "running", "waiting", "terminated" or "unknown"
    reason: str | None  # of the waiting or terminated state
    message: str | None
    last_termination_reason: str | None
    last_exit_code: int | None

    @classmethod
    def from_json(cls, status: Mapping[str, Any]) -> ContainerState:
        states = status.get("state") or {}
        state = next((key for key in ("running", "waiting", "terminated") if key in states), "unknown")
        detail = states.get(state) or {}
        last = (status.get("lastState") or {}).get("terminated") or {}
        return cls(
            name=str(status.get("name", "")),
            image=str(status.get("image", "")),
            ready=bool(status.get("ready")),
            restarts=int(status.get("restartCount") or 0),
            state=state,
            reason=detail.get("reason"),
            message=detail.get("message"),
            last_termination_reason=last.get("reason"),
            last_exit_code=last.get("exitCode"),
        )


@dataclass(frozen=True)
class Pod:
    name: str
    phase: str
    ready: bool
    node: str | None
    started_at: datetime | None
    deleting: bool
    containers: tuple[ContainerState, ...]
    container_names: tuple[str, ...]
    default_container: str | None
    template_hash: str | None

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Pod:
        metadata = item.get("metadata") or {}
        spec = item.get("spec") or {}
        status = item.get("status") or {}
        conditions = {condition.get("type"): condition.get("status") for condition in status.get("conditions") or []}
        names = tuple(str(container.get("name", "")) for container in spec.get("containers") or [])
        annotations = metadata.get("annotations") or {}
        return cls(
            name=str(metadata.get("name", "")),
            phase=str(status.get("phase", "Unknown")),
            ready=conditions.get("Ready") == "True",
            node=spec.get("nodeName"),
            started_at=parse_time(status.get("startTime") or metadata.get("creationTimestamp")),
            deleting=metadata.get("deletionTimestamp") is not None,
            containers=tuple(ContainerState.from_json(entry) for entry in status.get("containerStatuses") or []),
            container_names=names,
            default_container=annotations.get(DEFAULT_CONTAINER_ANNOTATION),
            template_hash=(metadata.get("labels") or {}).get(TEMPLATE_HASH_LABEL),
        )

    @property
    def restarts(self) -> int:
        return sum(container.restarts for container in self.containers)

    @property
    def log_container(self) -> str | None:
        """The container whose logs `kubectl logs` shows by default: the annotated one, else the first."""
        if self.default_container in self.container_names:
            return self.default_container
        return self.container_names[0] if self.container_names else None

    @property
    def problem(self) -> str | None:
        """Why the pod is not ready, in kubectl's words (CrashLoopBackOff, OOMKilled, ...), or None."""
        if self.ready and not self.deleting:
            return None
        if self.deleting:
            return "Terminating"
        for container in self.containers:
            if container.ready:
                continue
            if container.last_termination_reason == "OOMKilled" or container.reason == "OOMKilled":
                return "OOMKilled"
            if container.reason:
                return container.reason
        if self.phase in ("Failed", "Unknown"):
            return self.phase
        return "not ready"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str | None
    message: str | None


@dataclass(frozen=True)
class Deployment:
    """A deployment's identity, spec and status; `template` and `annotations` are as the API sent them."""

    name: str
    namespace: str
    uid: str
    resource_version: str
    generation: int
    observed_generation: int
    revision: int | None
    paused: bool
    replicas: int  # spec.replicas
    status_replicas: int
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    conditions: tuple[Condition, ...]
    selector: Mapping[str, str]
    template: Mapping[str, Any]
    annotations: Mapping[str, str]
    progress_deadline_seconds: int | None

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Deployment:
        metadata = item.get("metadata") or {}
        spec = item.get("spec") or {}
        status = item.get("status") or {}
        annotations = metadata.get("annotations") or {}
        replicas = spec.get("replicas")
        return cls(
            name=str(metadata.get("name", "")),
            namespace=str(metadata.get("namespace", "")),
            uid=str(metadata.get("uid", "")),
            resource_version=str(metadata.get("resourceVersion", "")),
            generation=int(metadata.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            revision=parse_revision(annotations),
            paused=bool(spec.get("paused")),
            replicas=1 if replicas is None else int(replicas),
            status_replicas=int(status.get("replicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            available_replicas=int(status.get("availableReplicas") or 0),
            conditions=tuple(
                Condition(
                    type=str(condition.get("type", "")),
                    status=str(condition.get("status", "")),
                    reason=condition.get("reason"),
                    message=condition.get("message"),
                )
                for condition in status.get("conditions") or []
            ),
            selector=dict((spec.get("selector") or {}).get("matchLabels") or {}),
            template=spec.get("template") or {},
            annotations=dict(annotations),
            progress_deadline_seconds=spec.get("progressDeadlineSeconds"),
        )

    def condition(self, kind: str) -> Condition | None:
        return next((condition for condition in self.conditions if condition.type == kind), None)

    @property
    def images(self) -> tuple[tuple[str, str], ...]:
        return container_images(self.template)

    @property
    def label_selector(self) -> str:
        return ",".join(f"{key}={value}" for key, value in sorted(self.selector.items()))


@dataclass(frozen=True)
class ReplicaSet:
    """A ReplicaSet the deployment controls; `revision` is None when it has no revision annotation."""

    name: str
    uid: str
    revision: int | None
    created_at: datetime | None
    replicas: int
    ready_replicas: int
    template: Mapping[str, Any]  # with its pod-template-hash label
    annotations: Mapping[str, str]

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> ReplicaSet:
        metadata = item.get("metadata") or {}
        spec = item.get("spec") or {}
        status = item.get("status") or {}
        annotations = dict(metadata.get("annotations") or {})
        return cls(
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            revision=parse_revision(annotations),
            created_at=parse_time(metadata.get("creationTimestamp")),
            replicas=int(spec.get("replicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            template=spec.get("template") or {},
            annotations=annotations,
        )

    @property
    def images(self) -> tuple[tuple[str, str], ...]:
        return container_images(self.template)

    @property
    def change_cause(self) -> str | None:
        return self.annotations.get(CHANGE_CAUSE_ANNOTATION)


def is_controlled_by(item: Mapping[str, Any], owner_uid: str) -> bool:
    """True when `item`'s controller owner reference points at `owner_uid`."""
    references = (item.get("metadata") or {}).get("ownerReferences") or []
    return any(reference.get("controller") and reference.get("uid") == owner_uid for reference in references)


@dataclass(frozen=True)
class Scale:
    replicas: int
    status_replicas: int

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Scale:
        return cls(
            replicas=int((item.get("spec") or {}).get("replicas") or 0),
            status_replicas=int((item.get("status") or {}).get("replicas") or 0),
        )
