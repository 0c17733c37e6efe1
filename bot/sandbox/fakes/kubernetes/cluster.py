"""The state of the fake cluster and a deployment controller that moves rollouts step by step.

Objects are kept as the JSON the API serves. The controller follows the real one where the
bot depends on it:
- a change of `spec.template` creates a ReplicaSet with the next revision, or, when an owned
  ReplicaSet already has that template (a rollback), gives that ReplicaSet the next revision
  and records its old one in `deployment.kubernetes.io/revision-history`;
- the deployment's annotations (except the controller's own) are copied to its new ReplicaSet;
- a rolling update honours maxSurge 25% (rounded up) and maxUnavailable 25% (rounded down);
- `status.observedGeneration` catches up with `metadata.generation` on the next step;
- the Progressing condition turns to ProgressDeadlineExceeded when a rollout makes no progress
  for `progressDeadlineSeconds`, and a completed rollout never times out afterwards.

Simplifications: one controller step happens per `step()` call, a new pod becomes ready on
the step after it is created, the progress deadline counts simulated seconds (`step_seconds`
per step without progress), and a paused deployment is left as it is.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bot.sandbox.fakes.kubernetes.logs import LogLine, auth_error_lines, generate_logs

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
TEMPLATE_HASH_LABEL = "pod-template-hash"
# Annotations the controller keeps for itself instead of copying them to a ReplicaSet.
NOT_COPIED_TO_REPLICASET = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)

# The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class Behaviour(StrEnum):
    """The behaviour of a pod's containers once they start."""

    HEALTHY = "healthy"
    CRASH_LOOPING = "crash-looping"
    OOM_KILLED = "oom-killed"
    IMAGE_PULL_BACKOFF = "image-pull-backoff"


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def template_hash(template: dict[str, Any]) -> str:
    """Hash a pod template into a stable 10-character suffix, ignoring its pod-template-hash label."""
    canonical = json.dumps(without_hash_label(template), sort_keys=True, separators=(",", ":"))
    number = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")
    characters = []
    for _ in range(10):
        number, digit = divmod(number, len(_NAME_ALPHABET))
        characters.append(_NAME_ALPHABET[digit])
    return "".join(characters)


def without_hash_label(template: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(template)
    labels = stripped.get("metadata", {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(TEMPLATE_HASH_LABEL, None)
    return stripped


def api_template(*, app: str, image: str) -> dict[str, Any]:
    """The pod template of the Meridian API, as the API server returns it."""
    return {
        "metadata": {
            "creationTimestamp": None,
            "labels": {"app": app},
            "annotations": {DEFAULT_CONTAINER: "api"},
        },
        "spec": {
            "containers": [
                {
                    "name": "api",
                    "image": image,
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": "RUST_LOG", "value": "info"}, {"name": "LOG_FORMAT", "value": "json"}],
                    "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "256Mi"}},
                    "readinessProbe": {
                        "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                        "periodSeconds": 10,
                        "timeoutSeconds": 1,
                        "successThreshold": 1,
                        "failureThreshold": 3,
                    },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "securityContext": {},
            "schedulerName": "default-scheduler",
        },
    }


@dataclass
class FakePod:
    name: str
    uid: str
    replicaset: FakeReplicaSet
    behaviour: Behaviour
    created_at: float
    node: str
    starting: bool = True
    restarts: int = 0
    logs: list[LogLine] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.starting and self.behaviour is Behaviour.HEALTHY

    @property
    def containers(self) -> list[dict[str, Any]]:
        return self.replicaset.template["spec"]["containers"]

    @property
    def waiting_to_start(self) -> bool:
        """True while no container has started, so the pod has no logs yet."""
        return self.starting or self.behaviour is Behaviour.IMAGE_PULL_BACKOFF

    def to_json(self, namespace: str) -> dict[str, Any]:
        template = self.replicaset.template
        metadata = {
            "name": self.name,
            "generateName": f"{self.replicaset.name}-",
            "namespace": namespace,
            "uid": self.uid,
            "creationTimestamp": rfc3339(self.created_at),
            "labels": dict(template["metadata"].get("labels", {})),
            "annotations": dict(template["metadata"].get("annotations", {})),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": self.replicaset.name,
                    "uid": self.replicaset.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
        statuses = [self._container_status(container) for container in self.containers]
        phase = "Pending" if self.waiting_to_start else "Running"
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True" if self.ready else "False"},
                {"type": "ContainersReady", "status": "True" if self.ready else "False"},
            ],
            "hostIP": "10.0.1.12",
            "podIP": f"10.244.1.{int(self.uid[:2], 16)}",
            "startTime": rfc3339(self.created_at),
            "containerStatuses": statuses,
            "qosClass": "Burstable",
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {**copy.deepcopy(template["spec"]), "nodeName": self.node},
            "status": status,
        }

    def _container_status(self, container: dict[str, Any]) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": container["name"],
            "image": container["image"],
            "imageID": "" if self.waiting_to_start else f"{container['image']}@sha256:{self.uid.replace('-', '')[:32]}",
            "ready": self.ready,
            "restartCount": self.restarts,
            "started": self.ready,
        }
        if self.starting:
            status["state"] = {"waiting": {"reason": "ContainerCreating"}}
        elif self.behaviour is Behaviour.HEALTHY:
            status["state"] = {"running": {"startedAt": rfc3339(self.created_at)}}
        elif self.behaviour is Behaviour.IMAGE_PULL_BACKOFF:
            status["state"] = {
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{container["image"]}"',
                }
            }
        elif self.behaviour is Behaviour.CRASH_LOOPING:
            status["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 5m0s restarting failed container={container['name']} pod={self.name}",
                }
            }
            status["lastState"] = {"terminated": {"reason": "Error", "exitCode": 101, "finishedAt": rfc3339(self.created_at)}}
        elif self.behaviour is Behaviour.OOM_KILLED:
            status["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 2m40s restarting failed container={container['name']} pod={self.name}",
                }
            }
            status["lastState"] = {"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": rfc3339(self.created_at)}}
        return status


@dataclass
class FakeReplicaSet:
    name: str
    uid: str
    deployment: FakeDeployment | None
    template: dict[str, Any]  # with the pod-template-hash label
    annotations: dict[str, str]
    created_at: float
    labels: dict[str, str]
    pods: list[FakePod] = field(default_factory=list)
    owner_uid: str | None = None

    @property
    def revision(self) -> int:
        return int(self.annotations.get(REVISION, "0"))

    def to_json(self, namespace: str) -> dict[str, Any]:
        ready = sum(pod.ready for pod in self.pods)
        status: dict[str, Any] = {"replicas": len(self.pods), "observedGeneration": 1}
        if ready:
            status.update(readyReplicas=ready, availableReplicas=ready, fullyLabeledReplicas=len(self.pods))
        metadata: dict[str, Any] = {
            "name": self.name,
            "namespace": namespace,
            "uid": self.uid,
            "generation": 1,
            "creationTimestamp": rfc3339(self.created_at),
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
        }
        if self.owner_uid is not None:
            owner_name = self.deployment.name if self.deployment else "other"
            metadata["ownerReferences"] = [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": owner_name,
                    "uid": self.owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": metadata,
            "spec": {
                "replicas": len(self.pods),
                "selector": {"matchLabels": dict(self.template["metadata"]["labels"])},
                "template": copy.deepcopy(self.template),
            },
            "status": status,
        }


@dataclass
class FakeDeployment:
    document: dict[str, Any]  # metadata and spec as stored; status is recomputed by the controller
    replicasets: list[FakeReplicaSet] = field(default_factory=list)
    stalled_seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.document["metadata"]["name"]

    @property
    def uid(self) -> str:
        return self.document["metadata"]["uid"]

    @property
    def spec(self) -> dict[str, Any]:
        return self.document["spec"]

    @property
    def status(self) -> dict[str, Any]:
        return self.document.setdefault("status", {})

    @property
    def owned(self) -> list[FakeReplicaSet]:
        return [rs for rs in self.replicasets if rs.owner_uid == self.uid]

    @property
    def pods(self) -> list[FakePod]:
        return [pod for rs in self.owned for pod in rs.pods]

    def current_replicaset(self) -> FakeReplicaSet | None:
        wanted = template_hash(self.spec["template"])
        return next((rs for rs in self.owned if rs.template["metadata"]["labels"].get(TEMPLATE_HASH_LABEL) == wanted), None)


class FakeCluster:
    """Deployments, ReplicaSets and pods of one namespace, and the controller that moves them."""

    def __init__(
        self,
        *,
        namespace: str = "meridian",
        clock: Callable[[], float] = time.time,
        step_seconds: float = 30.0,
        seed: int = 7,
    ) -> None:
        self.namespace = namespace
        self.clock = clock
        self.step_seconds = step_seconds
        self.rng = random.Random(seed)
        self.deployments: dict[str, FakeDeployment] = {}
        self.orphans: list[FakeReplicaSet] = []
        self.image_behaviour: dict[str, Behaviour] = {}
        self.controller_running = True
        self._resource_version = 1000
        # Secret keys whose values changed; pods started afterwards log authentication errors.
        self.changed_secret_keys: set[str] = set()

    # Building the cluster

    def next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def new_uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _suffix(self, length: int = 5) -> str:
        return "".join(self.rng.choice(_NAME_ALPHABET) for _ in range(length))

    def add_deployment(
        self,
        name: str,
        *,
        images: list[tuple[str, str]],
        replicas: int = 3,
        progress_deadline_seconds: int = 300,
    ) -> FakeDeployment:
        """Create a deployment whose revisions 1..n ran `images`, each an (image, change-cause) pair.

        The last revision is rolled out completely; the earlier ReplicaSets are scaled to 0.
        """
        now = self.clock()
        image, cause = images[-1]
        document = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "uid": self.new_uid(),
                "resourceVersion": self.next_resource_version(),
                "generation": len(images),
                "creationTimestamp": rfc3339(now - 86_400 * len(images)),
                "labels": {"app": name},
                "annotations": {REVISION: str(len(images)), CHANGE_CAUSE: cause},
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": api_template(app=name, image=image),
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": progress_deadline_seconds,
            },
            "status": {},
        }
        deployment = FakeDeployment(document=document)
        self.deployments[name] = deployment
        for revision, (old_image, old_cause) in enumerate(images, start=1):
            template = api_template(app=name, image=old_image)
            created = now - 86_400 * (len(images) - revision + 1)
            self._new_replicaset(deployment, template, revision=revision, created_at=created, change_cause=old_cause)
        current = deployment.current_replicaset()
        assert current is not None
        for _ in range(replicas):
            pod = self._new_pod(current, created_at=now - 3_600)
            pod.starting = False
        self._update_status(deployment, progressed=False, complete_reason=True)
        return deployment

    def add_foreign_replicaset(self, deployment: FakeDeployment, *, image: str, revision: int) -> FakeReplicaSet:
        """Add a ReplicaSet with the deployment's labels that another owner controls."""
        template = api_template(app=deployment.name, image=image)
        rs = self._new_replicaset(
            None, template, revision=revision, created_at=self.clock(), change_cause="owned by another deployment"
        )
        rs.owner_uid = self.new_uid()
        self.orphans.append(rs)
        return rs

    def _new_replicaset(
        self,
        deployment: FakeDeployment | None,
        template: dict[str, Any],
        *,
        revision: int,
        created_at: float,
        change_cause: str | None,
    ) -> FakeReplicaSet:
        template = copy.deepcopy(template)
        hash_value = template_hash(template)
        template["metadata"].setdefault("labels", {})[TEMPLATE_HASH_LABEL] = hash_value
        annotations = {REVISION: str(revision)}
        if deployment is not None:
            replicas = deployment.spec.get("replicas", 1)
            annotations[DESIRED_REPLICAS] = str(replicas)
            annotations[MAX_REPLICAS] = str(replicas + _max_surge(replicas))
        if change_cause:
            annotations[CHANGE_CAUSE] = change_cause
        owner = deployment.name if deployment else "other"
        rs = FakeReplicaSet(
            name=f"{owner}-{hash_value}",
            uid=self.new_uid(),
            deployment=deployment,
            template=template,
            annotations=annotations,
            created_at=created_at,
            labels=dict(template["metadata"]["labels"]),
            owner_uid=deployment.uid if deployment else None,
        )
        if deployment is not None:
            deployment.replicasets.append(rs)
        return rs

    def _new_pod(self, rs: FakeReplicaSet, *, created_at: float | None = None) -> FakePod:
        image = rs.template["spec"]["containers"][0]["image"]
        behaviour = self.image_behaviour.get(image, Behaviour.HEALTHY)
        created = self.clock() if created_at is None else created_at
        pod = FakePod(
            name=f"{rs.name}-{self._suffix()}",
            uid=self.new_uid(),
            replicaset=rs,
            behaviour=behaviour,
            created_at=created,
            node=f"node-{self.rng.randrange(1, 4)}",
        )
        if behaviour in (Behaviour.CRASH_LOOPING, Behaviour.OOM_KILLED):
            pod.restarts = 4 + self.rng.randrange(4)
        # A new pod has logged for a minute; the pods a deployment starts with, for its hour.
        span = 60.0 if created_at is None else self.clock() - created
        pod.logs = generate_logs(behaviour=behaviour.value, until=self.clock(), rng=self.rng, span_seconds=max(span, 60.0))
        if self.changed_secret_keys and created_at is None:
            pod.logs += auth_error_lines(keys=sorted(self.changed_secret_keys), at=self.clock(), rng=self.rng)
        rs.pods.append(pod)
        return pod

    # Scenarios

    def set_behaviour(self, deployment_name: str, behaviour: Behaviour) -> None:
        """Make the running image of a deployment behave so, in its pods now and in new ones."""
        deployment = self.deployments[deployment_name]
        image = deployment.spec["template"]["spec"]["containers"][0]["image"]
        self.image_behaviour[image] = behaviour
        for pod in deployment.pods:
            pod.behaviour = behaviour
            pod.restarts = 4 + self.rng.randrange(4) if behaviour in (Behaviour.CRASH_LOOPING, Behaviour.OOM_KILLED) else 0
            pod.logs = generate_logs(behaviour=behaviour.value, until=self.clock(), rng=self.rng)
        self._update_status(deployment, progressed=False)

    def deploy_image(self, deployment_name: str, image: str, *, change_cause: str, behaviour: Behaviour | None = None) -> None:
        """Change the image of the deployment's template, as a CI pipeline does."""
        if behaviour is not None:
            self.image_behaviour[image] = behaviour
        deployment = self.deployments[deployment_name]
        deployment.spec["template"]["spec"]["containers"][0]["image"] = image
        metadata = deployment.document["metadata"]
        metadata["annotations"][CHANGE_CAUSE] = change_cause
        metadata["generation"] += 1
        metadata["resourceVersion"] = self.next_resource_version()

    # The controller

    def step(self) -> None:
        """Move every deployment one controller step forward, unless the controller is stopped."""
        if not self.controller_running:
            return
        for deployment in self.deployments.values():
            self._reconcile(deployment)

    def _reconcile(self, deployment: FakeDeployment) -> None:
        metadata = deployment.document["metadata"]
        status = deployment.status
        paused = bool(deployment.spec.get("paused"))
        progressed = False

        if paused:
            status["observedGeneration"] = metadata["generation"]
            self._update_status(deployment, progressed=False)
            return

        new_rs = deployment.current_replicaset()
        newest_revision = max((rs.revision for rs in deployment.owned), default=0)
        if new_rs is None:
            new_rs = self._new_replicaset(
                deployment,
                deployment.spec["template"],
                revision=newest_revision + 1,
                created_at=self.clock(),
                change_cause=None,
            )
            progressed = True
        elif new_rs.revision < newest_revision:
            old_revision = str(new_rs.revision)
            history = [value for value in new_rs.annotations.get(REVISION_HISTORY, "").split(",") if value]
            new_rs.annotations[REVISION_HISTORY] = ",".join([*history, old_revision])
            new_rs.annotations[REVISION] = str(newest_revision + 1)
            progressed = True
        for key, value in metadata.get("annotations", {}).items():
            if key not in NOT_COPIED_TO_REPLICASET:
                new_rs.annotations[key] = value
        if metadata.setdefault("annotations", {}).get(REVISION) != new_rs.annotations[REVISION]:
            metadata["annotations"][REVISION] = new_rs.annotations[REVISION]
            metadata["resourceVersion"] = self.next_resource_version()
        status["observedGeneration"] = metadata["generation"]

        progressed |= self._scale(deployment, new_rs)
        self._update_status(deployment, progressed=progressed)

    def _scale(self, deployment: FakeDeployment, new_rs: FakeReplicaSet) -> bool:
        """Take one rolling-update step; return whether any pod was added, removed or became ready."""
        progressed = False
        for pod in deployment.pods:
            if pod.starting:
                pod.starting = False
                progressed |= pod.ready

        desired = int(deployment.spec.get("replicas", 1))
        olds = [rs for rs in deployment.owned if rs is not new_rs and rs.pods]
        if not olds:
            while len(new_rs.pods) < desired:
                self._new_pod(new_rs)
                progressed = True
            while len(new_rs.pods) > desired:
                new_rs.pods.pop()
                progressed = True
            return progressed

        surge = _max_surge(desired)
        max_unavailable = _max_unavailable(desired)
        total = len(deployment.pods)
        if len(new_rs.pods) < desired and total < desired + surge:
            for _ in range(min(desired - len(new_rs.pods), desired + surge - total)):
                self._new_pod(new_rs)
            progressed = True

        min_available = desired - max_unavailable
        new_unavailable = sum(not pod.ready for pod in new_rs.pods)
        # As in the real controller, unhealthy old pods are removed first, as far as enough pods
        # remain. Then healthy old pods are removed while enough pods stay available.
        room = len(deployment.pods) - min_available - new_unavailable
        for rs in olds:
            for pod in [pod for pod in rs.pods if not pod.ready]:
                if room <= 0:
                    break
                rs.pods.remove(pod)
                room -= 1
                progressed = True
        removable = sum(pod.ready for pod in deployment.pods) - min_available
        for rs in sorted(olds, key=lambda item: item.revision):
            while removable > 0 and rs.pods:
                rs.pods.pop()
                removable -= 1
                progressed = True
        return progressed

    def _update_status(self, deployment: FakeDeployment, *, progressed: bool, complete_reason: bool = False) -> None:
        """Recompute the status; zero counts are left out, as the API server leaves them out."""
        spec = deployment.spec
        metadata = deployment.document["metadata"]
        desired = int(spec.get("replicas", 1))
        new_rs = deployment.current_replicaset()
        pods = deployment.pods
        updated = len(new_rs.pods) if new_rs else 0
        available = sum(pod.ready for pod in pods)
        status = deployment.status
        if complete_reason:
            status["observedGeneration"] = metadata["generation"]
        counts = {
            "replicas": len(pods),
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": max(len(pods) - available, desired - available, 0),
        }
        for key, value in counts.items():
            if value:
                status[key] = value
            else:
                status.pop(key, None)

        now = rfc3339(self.clock())
        conditions = {condition["type"]: condition for condition in status.get("conditions", [])}
        enough = available >= desired - _max_unavailable(desired)
        conditions["Available"] = _condition(
            conditions.get("Available"),
            "Available",
            "True" if enough else "False",
            "MinimumReplicasAvailable" if enough else "MinimumReplicasUnavailable",
            "Deployment has minimum availability." if enough else "Deployment does not have minimum availability.",
            now,
        )

        rs_name = new_rs.name if new_rs else deployment.name
        observed = status.get("observedGeneration", 0) >= metadata["generation"]
        complete = observed and updated == desired and len(pods) == desired and available == desired
        previous = conditions.get("Progressing")
        if spec.get("paused"):
            progressing = _condition(previous, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", now)
        elif complete and (progressed or complete_reason or previous is None or previous["reason"] != "NewReplicaSetAvailable"):
            deployment.stalled_seconds = 0.0
            progressing = _condition(
                previous, "Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.', now
            )
        elif progressed:
            deployment.stalled_seconds = 0.0
            progressing = _condition(previous, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', now)
        elif previous is not None and previous["reason"] in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded"):
            progressing = previous
        else:
            deployment.stalled_seconds += self.step_seconds
            deadline = float(spec.get("progressDeadlineSeconds", 600))
            if deployment.stalled_seconds > deadline:
                progressing = _condition(
                    previous, "Progressing", "False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.', now
                )
            else:
                progressing = previous or _condition(None, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', now)
        conditions["Progressing"] = progressing
        status["conditions"] = [conditions["Available"], conditions["Progressing"]]

    # Reading

    def replicasets(self) -> list[FakeReplicaSet]:
        return [rs for deployment in self.deployments.values() for rs in deployment.replicasets] + self.orphans

    def pods(self) -> list[FakePod]:
        return [pod for rs in self.replicasets() for pod in rs.pods]

    def find_pod(self, name: str) -> FakePod | None:
        return next((pod for pod in self.pods() if pod.name == name), None)


def _condition(previous: dict[str, Any] | None, kind: str, status: str, reason: str, message: str, now: str) -> dict[str, Any]:
    unchanged = previous is not None and previous["status"] == status
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": previous["lastTransitionTime"] if unchanged else now,
        "reason": reason,
        "message": message,
    }


def _max_surge(replicas: int) -> int:
    surge = math.ceil(replicas * 0.25)
    return surge if surge or _max_unavailable(replicas) else 1


def _max_unavailable(replicas: int) -> int:
    return math.floor(replicas * 0.25)


def matches_selector(labels: dict[str, str], selector: str) -> bool:
    """Evaluate an equality-based label selector (`a=b,c!=d,e`)."""
    for requirement in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in requirement:
            key, value = requirement.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in requirement:
            key, value = requirement.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif labels.get(requirement) is None:
            return False
    return True
