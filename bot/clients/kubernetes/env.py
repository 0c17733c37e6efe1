"""Environment variables of the deployment's container, read and set as `kubectl set env` does.

The patch is a JSON patch whose `test` operations pin the container and the variable's
position, so a template that changed since it was read makes the API server reject the patch
(422) instead of setting the variable on another container.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.clients.kubernetes.models import DEFAULT_CONTAINER_ANNOTATION, Deployment


@dataclass(frozen=True)
class EnvSetting:
    """A variable of the API's container as the pod template sets it.

    `value` is the literal value, or None when the variable is missing or comes from
    `valueFrom` (a Secret or ConfigMap key, named in `source`).
    """

    container: str
    container_index: int
    name: str
    value: str | None
    source: str | None  # "value", "secretKeyRef NAME/KEY", "configMapKeyRef NAME/KEY", or None when unset
    env_index: int | None

    @property
    def is_set(self) -> bool:
        return self.source is not None


def api_container(template: Mapping[str, Any]) -> tuple[int, Mapping[str, Any]]:
    """Return the index and spec of the container `kubectl` picks by default: the annotated one, else the first."""
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        raise ValueError("the pod template has no containers")
    wanted = ((template.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    for index, container in enumerate(containers):
        if container.get("name") == wanted:
            return index, container
    return 0, containers[0]


def read_env(deployment: Deployment, name: str) -> EnvSetting:
    index, container = api_container(deployment.template)
    for env_index, entry in enumerate(container.get("env") or []):
        if entry.get("name") != name:
            continue
        if "value" in entry:
            return EnvSetting(container["name"], index, name, str(entry["value"]), "value", env_index)
        return EnvSetting(container["name"], index, name, None, _describe_value_from(entry.get("valueFrom")), env_index)
    return EnvSetting(container["name"], index, name, None, None, None)


def _describe_value_from(value_from: Any) -> str:
    if not isinstance(value_from, dict):
        return "valueFrom"
    for kind in ("secretKeyRef", "configMapKeyRef"):
        reference = value_from.get(kind)
        if isinstance(reference, dict):
            return f"{kind} {reference.get('name', '?')}/{reference.get('key', '?')}"
    return "valueFrom " + ", ".join(sorted(value_from))


def _pointer_token(text: str) -> str:
    return text.replace("~", "~0").replace("/", "~1")


def set_env_patch(
    deployment: Deployment,
    setting: EnvSetting,
    *,
    value: str,
    annotations: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Build the JSON patch that sets `setting.name` to the literal `value` (replacing any valueFrom).

    `annotations` go on the deployment's own metadata, which starts no rollout.
    """
    container_path = f"/spec/template/spec/containers/{setting.container_index}"
    operations: list[dict[str, Any]] = [{"op": "test", "path": f"{container_path}/name", "value": setting.container}]
    entry = {"name": setting.name, "value": value}
    _, container = api_container(deployment.template)
    if setting.env_index is not None:
        env_path = f"{container_path}/env/{setting.env_index}"
        operations.append({"op": "test", "path": f"{env_path}/name", "value": setting.name})
        operations.append({"op": "replace", "path": env_path, "value": entry})
    elif container.get("env"):
        operations.append({"op": "add", "path": f"{container_path}/env/-", "value": entry})
    else:
        operations.append({"op": "add", "path": f"{container_path}/env", "value": [entry]})

    if annotations:
        if deployment.annotations:
            for key, annotation in annotations.items():
                operations.append({"op": "add", "path": f"/metadata/annotations/{_pointer_token(key)}", "value": annotation})
        else:
            operations.append({"op": "add", "path": "/metadata/annotations", "value": dict(annotations)})
    return operations


def annotations_patch(deployment: Deployment, *, remove: list[str]) -> list[dict[str, Any]]:
    """Build the JSON patch that removes the deployment annotations in `remove` that it has."""
    return [
        {"op": "remove", "path": f"/metadata/annotations/{_pointer_token(key)}"}
        for key in remove
        if key in deployment.annotations
    ]
