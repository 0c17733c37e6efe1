"""Approval gates: a step that pauses a run until enough approvers confirm its exact plan."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.engine.context import StepContext


@dataclass(frozen=True)
class Plan:
    """What a destructive run will do, shown to approvers and bound to their approvals.

    `identity` names what the run acts on (a ReplicaSet's uid and images, a backend's pid and
    start time, a backup's key and checksum), never figures that drift on their own. `targets`
    are the lock names: one destructive run per target at a time.
    """

    summary: str
    targets: tuple[str, ...]
    identity: Mapping[str, Any]
    preview: str
    facts: Mapping[str, Any] = field(default_factory=dict)  # kept for the steps after the gate

    def digest(self, *, procedure: str, args: Mapping[str, Any]) -> str:
        canonical = json.dumps(
            {"procedure": procedure, "args": dict(args), "identity": dict(self.identity)},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self, *, digest: str) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = list(self.targets)
        data["digest"] = digest
        return data


PlanFunction = Callable[["StepContext"], Awaitable[Plan]]


@dataclass(frozen=True)
class ApprovalGate:
    """A stage that reads the plan, locks its targets and waits for approvals."""

    plan: PlanFunction
    name: str = "approval"
    title: str = "Approval"
