"""The API's Kubernetes Secret (KUBE_SECRET_NAME) and the patches that change its values.

A Secret's `data` holds base64 text. The values are decoded once, registered with the
redaction filter at once, and kept out of `repr`, so neither a log line nor a traceback that
prints the object shows them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.errors import TargetResponseInvalid
from bot.observability.redaction import redactor

TARGET = "kubernetes"


@dataclass(frozen=True)
class Secret:
    """A Secret's identity, annotations and decoded values; `values` never shows in `repr`."""

    name: str
    namespace: str
    uid: str
    resource_version: str
    annotations: Mapping[str, str]
    values: Mapping[str, str] = field(repr=False)

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Secret:
        metadata = item.get("metadata") or {}
        name = str(metadata.get("name", ""))
        values: dict[str, str] = {}
        for key, encoded in (item.get("data") or {}).items():
            try:
                values[key] = base64.b64decode(str(encoded), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as error:
                raise TargetResponseInvalid(TARGET, f"Key {key} of secret {name} is not base64-encoded UTF-8 text.") from error
            redactor.register(values[key])
        return cls(
            name=name,
            namespace=str(metadata.get("namespace", "")),
            uid=str(metadata.get("uid", "")),
            resource_version=str(metadata.get("resourceVersion", "")),
            annotations=dict(metadata.get("annotations") or {}),
            values=values,
        )

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(self.values))


def secret_patch(
    *,
    values: Mapping[str, str],
    resource_version: str | None,
    annotations: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """Build a JSON merge patch that sets `values` (and annotations; None removes one).

    With `resource_version`, the API server rejects the patch with 409 when the Secret
    changed since it was read, so a concurrent edit is never overwritten.
    """
    metadata: dict[str, Any] = {}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    if annotations:
        metadata["annotations"] = dict(annotations)
    patch: dict[str, Any] = {"metadata": metadata}
    if values:
        patch["data"] = {key: base64.b64encode(value.encode("utf-8")).decode("ascii") for key, value in values.items()}
    return patch


def annotation_time(secret: Secret, annotation: str) -> datetime | None:
    """Read an ISO 8601 time from one of the Secret's annotations, or None when absent or invalid."""
    value = secret.annotations.get(annotation)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
