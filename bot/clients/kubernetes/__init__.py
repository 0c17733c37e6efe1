"""The Kubernetes deployment of the Meridian API: a typed client and kubectl's rollout logic."""

from __future__ import annotations

import os

from bot.clients.kubernetes.client import Kubernetes, KubernetesClient, PatchType
from bot.clients.kubernetes.models import (
    ContainerState,
    Deployment,
    Pod,
    ReplicaSet,
    Scale,
)

__all__ = [
    "ContainerState",
    "Deployment",
    "Kubernetes",
    "KubernetesClient",
    "PatchType",
    "Pod",
    "ReplicaSet",
    "Scale",
    "kubernetes_from_settings",
]

IN_CLUSTER_VARIABLE = "KUBERNETES_SERVICE_HOST"


def kubernetes_from_settings(
    *, namespace: str, deployment: str, kubeconfig: str | None, timeout: float
) -> KubernetesClient | None:
    """Build the client when KUBECONFIG is set or the bot runs in a pod; otherwise return None."""
    in_cluster = bool(os.environ.get(IN_CLUSTER_VARIABLE))
    if not kubeconfig and not in_cluster:
        return None
    return KubernetesClient(
        namespace=namespace,
        deployment=deployment,
        timeout=timeout,
        kubeconfig=kubeconfig or None,
        in_cluster=in_cluster,
    )
