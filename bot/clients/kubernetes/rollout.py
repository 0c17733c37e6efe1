"""kubectl's rollout logic, as pure functions over the client's dataclasses.

Sources: kubectl's `rollout status` (DeploymentStatusViewer), `rollout history`
(DeploymentHistoryViewer), `rollout undo` (DeploymentRollbacker) and `rollout restart`
(defaultObjectRestarter), in k8s.io/kubectl/pkg/polymorphichelpers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bot.clients.kubernetes.models import (
    REVISION_ANNOTATION,
    TEMPLATE_HASH_LABEL,
    Deployment,
    ReplicaSet,
)
from bot.errors import Refused

PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"

# Deployment annotations that `kubectl rollout undo` keeps from the deployment instead of taking
# them from the ReplicaSet it rolls back to.
ANNOTATIONS_KEPT_ON_ROLLBACK = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


class RolloutState(StrEnum):
    COMPLETE = "complete"
    PROGRESSING = "progressing"
    FAILED = "failed"  # ProgressDeadlineExceeded


@dataclass(frozen=True)
class RolloutStatus:
    """`kubectl rollout status` for one reading of the deployment."""

    state: RolloutState
    message: str
    deployment: Deployment

    @property
    def progress(self) -> str:
        """Counts for a progress line: `2/3 updated · 3 available · 1 old pod left`."""
        d = self.deployment
        parts = [f"{d.updated_replicas}/{d.replicas} updated", f"{d.available_replicas} available"]
        old = d.status_replicas - d.updated_replicas
        if old > 0:
            parts.append(f"{old} old pod{'s' if old > 1 else ''} left")
        if d.observed_generation < d.generation:
            parts.append("waiting for the controller to observe the change")
        return " · ".join(parts)


def rollout_status(deployment: Deployment) -> RolloutStatus:
    """Classify a rollout as kubectl does: failed, still progressing, or complete."""
    name = deployment.name

    def progressing(message: str) -> RolloutStatus:
        return RolloutStatus(RolloutState.PROGRESSING, message, deployment)

    if deployment.generation > deployment.observed_generation:
        return progressing("Waiting for the deployment spec update to be observed.")

    progressing_condition = deployment.condition("Progressing")
    deadline_exceeded = progressing_condition is not None and progressing_condition.reason == PROGRESS_DEADLINE_EXCEEDED
    if deadline_exceeded:
        detail = f" ({progressing_condition.message})" if progressing_condition and progressing_condition.message else ""
        return RolloutStatus(RolloutState.FAILED, f"Deployment {name} exceeded its progress deadline{detail}.", deployment)

    if deployment.updated_replicas < deployment.replicas:
        return progressing(
            f"Waiting for rollout to finish: {deployment.updated_replicas} of {deployment.replicas} new replicas have been updated."
        )
    if deployment.status_replicas > deployment.updated_replicas:
        old = deployment.status_replicas - deployment.updated_replicas
        return progressing(f"Waiting for rollout to finish: {old} old replicas are pending termination.")
    if deployment.available_replicas < deployment.updated_replicas:
        return progressing(
            f"Waiting for rollout to finish: {deployment.available_replicas} of {deployment.updated_replicas} updated replicas are available."
        )
    return RolloutStatus(RolloutState.COMPLETE, f"Deployment {name} successfully rolled out.", deployment)


@dataclass(frozen=True)
class Revision:
    number: int
    replicaset: ReplicaSet
    is_current: bool

    @property
    def images(self) -> tuple[tuple[str, str], ...]:
        return self.replicaset.images

    @property
    def change_cause(self) -> str | None:
        return self.replicaset.change_cause


def revision_history(deployment: Deployment, replicasets: Iterable[ReplicaSet]) -> list[Revision]:
    """List the revisions of the deployment's own ReplicaSets, oldest first.

    A ReplicaSet without a readable revision annotation is left out, as kubectl leaves it out.
    """
    revisions = {rs.revision: rs for rs in replicasets if rs.revision is not None}
    return [
        Revision(number=number, replicaset=rs, is_current=number == deployment.revision)
        for number, rs in sorted(revisions.items())
    ]


def select_rollback_target(deployment: Deployment, replicasets: Iterable[ReplicaSet], to_revision: int | None) -> ReplicaSet:
    """Pick the ReplicaSet `kubectl rollout undo` rolls back to: the given revision, else the previous one.

    Raises Refused when the revision is not in the history or there is no earlier revision.
    """
    history = revision_history(deployment, replicasets)
    if to_revision is not None:
        wanted = next((revision for revision in history if revision.number == to_revision), None)
        if wanted is None:
            listed = ", ".join(str(revision.number) for revision in history) or "none"
            raise Refused(
                f"Revision {to_revision} is not in the rollout history of {deployment.namespace}/{deployment.name}.",
                hint=f"Its revisions are: {listed}. `/meridian rollout history` shows their images.",
            )
        return wanted.replicaset
    if len(history) < 2:
        raise Refused(f"{deployment.namespace}/{deployment.name} has no earlier revision to roll back to.")
    # kubectl takes the second-highest revision, whatever revision the deployment's annotation records.
    return history[-2].replicaset


def without_template_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a pod template without the pod-template-hash label that the controller adds."""
    stripped = copy.deepcopy(dict(template))
    metadata = stripped.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("labels"), dict):
        metadata["labels"].pop(TEMPLATE_HASH_LABEL, None)
    return stripped


def templates_equal(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """Compare pod templates as kubectl's equalIgnoreHash does."""
    return without_template_hash(first) == without_template_hash(second)


def rollback_annotations(deployment: Deployment, target: ReplicaSet) -> dict[str, str]:
    """Compute the deployment's annotations after `kubectl rollout undo`.

    The controller's own annotations and kubectl's last-applied configuration keep the
    deployment's values. Every other annotation comes from the target ReplicaSet, so its
    change-cause returns and annotations added to the deployment since then are dropped.
    """
    annotations = {key: value for key, value in deployment.annotations.items() if key in ANNOTATIONS_KEPT_ON_ROLLBACK}
    annotations.update({key: value for key, value in target.annotations.items() if key not in ANNOTATIONS_KEPT_ON_ROLLBACK})
    return annotations


def rollback_patch(deployment: Deployment, target: ReplicaSet) -> list[dict[str, Any]]:
    """Build the JSON patch `kubectl rollout undo` sends: the target's template and the annotations."""
    return [
        {"op": "replace", "path": "/spec/template", "value": without_template_hash(target.template)},
        {"op": "replace", "path": "/metadata/annotations", "value": rollback_annotations(deployment, target)},
    ]


def restart_patch(now: datetime) -> dict[str, Any]:
    """Build the strategic merge patch of `kubectl rollout restart`: a new restartedAt in the pod template."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}}}}}


def scale_patch(replicas: int) -> dict[str, Any]:
    """Build the merge patch `kubectl scale` sends to the scale subresource."""
    return {"spec": {"replicas": replicas}}


def image_changes(before: Iterable[tuple[str, str]], after: Iterable[tuple[str, str]]) -> list[str]:
    """Describe each container whose image differs as `container: old → new`."""
    old = dict(before)
    new = dict(after)
    lines = []
    for name in [*old, *(name for name in new if name not in old)]:
        if old.get(name) != new.get(name):
            lines.append(f"{name}: {old.get(name, '(none)')} → {new.get(name, '(removed)')}")
    return lines
