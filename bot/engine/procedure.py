"""Procedures: ordered, named steps with a risk level, as the runbook describes them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bot.engine.approvals import ApprovalGate

if TYPE_CHECKING:
    from bot.engine.context import StepContext


class Risk(StrEnum):
    """What a procedure can do, which decides how many approvals it needs."""

    READ = "read"  # changes nothing
    WRITE = "write"  # writes that cannot lose data or affect the service; audited, no approval
    HIGH = "high"  # changes the running service or its data; one approver
    CRITICAL = "critical"  # can lose data or lock users out; two distinct approvers

    @property
    def approvals_needed(self) -> int:
        return {Risk.READ: 0, Risk.WRITE: 0, Risk.HIGH: 1, Risk.CRITICAL: 2}[self]


class Level(StrEnum):
    """Severity of a step's finding: fine, worth a look, or a problem."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class StepResult:
    """A step's finding: one line for the checklist and optional detail for the thread."""

    summary: str
    level: Level = Level.OK
    detail: str | None = None
    detail_title: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


StepFunction = Callable[["StepContext"], Awaitable[StepResult | str | None]]


@dataclass(frozen=True)
class Step:
    """One named step; `timeout` bounds it in seconds (None: no bound of its own)."""

    name: str
    title: str
    run: StepFunction
    timeout: float | None = None


@dataclass(frozen=True)
class Parallel:
    """Steps that run at the same time; the stage ends when all of them have ended."""

    steps: tuple[Step, ...]


Stage = Step | Parallel | ApprovalGate


@dataclass(frozen=True)
class Procedure:
    """A runbook procedure; `section` names the runbook section it automates."""

    name: str
    title: str
    summary: str
    risk: Risk
    stages: tuple[Stage, ...]
    section: str

    def __post_init__(self) -> None:
        gates = [stage for stage in self.stages if isinstance(stage, ApprovalGate)]
        needs_gate = self.risk.approvals_needed > 0
        if needs_gate and len(gates) != 1:
            raise ValueError(f"procedure {self.name} of risk {self.risk} needs exactly one approval gate")
        if not needs_gate and gates:
            raise ValueError(f"procedure {self.name} of risk {self.risk} must not have an approval gate")

    def steps(self) -> list[Step | ApprovalGate]:
        """Every step in order, gates included, as the run card lists them."""
        flat: list[Step | ApprovalGate] = []
        for stage in self.stages:
            flat.extend(stage.steps if isinstance(stage, Parallel) else (stage,))
        return flat

    @property
    def gate(self) -> ApprovalGate | None:
        """The approval gate, or None for a procedure that needs no approval."""
        return next((stage for stage in self.stages if isinstance(stage, ApprovalGate)), None)
