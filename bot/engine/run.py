"""The record of one run of a procedure, persisted at every transition."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bot.engine.procedure import Level, Procedure, Risk


class RunState(StrEnum):
    RUNNING = "running"
    WAITING = "waiting_for_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DENIED = "denied"
    EXPIRED = "expired"
    INTERRUPTED = "interrupted"
    VOIDED = "voided"  # the plan changed after it was requested, so its approvals no longer hold

    @property
    def is_final(self) -> bool:
        return self not in (RunState.RUNNING, RunState.WAITING)


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    WAITING = "waiting"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_run_id() -> str:
    return "R" + secrets.token_hex(4).upper()


@dataclass
class StepRecord:
    name: str
    title: str
    state: StepState = StepState.PENDING
    summary: str | None = None
    level: Level | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error_id: str | None = None

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass
class Run:
    """One execution of a procedure: who asked, where, with what, and how far it got."""

    id: str
    procedure: str
    risk: Risk
    args: dict[str, Any]
    requester: str
    channel_id: str
    steps: list[StepRecord]
    state: RunState = RunState.RUNNING
    created_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    message_ts: str | None = None
    correlation_id: str | None = None
    next_stage: int = 0
    dry_run: bool = False
    error: str | None = None
    plan: dict[str, Any] | None = None
    approvals: list[str] = field(default_factory=list)
    expires_at: datetime | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    decided_by: str | None = None

    @classmethod
    def new(
        cls,
        procedure: Procedure,
        *,
        args: dict[str, Any],
        requester: str,
        channel_id: str,
        correlation_id: str | None,
        dry_run: bool = False,
    ) -> Run:
        return cls(
            id=new_run_id(),
            procedure=procedure.name,
            risk=procedure.risk,
            args=args,
            requester=requester,
            channel_id=channel_id,
            steps=[StepRecord(name=step.name, title=step.title) for step in procedure.steps()],
            correlation_id=correlation_id,
            dry_run=dry_run,
        )

    def step(self, name: str) -> StepRecord:
        return next(record for record in self.steps if record.name == name)

    def to_json(self) -> dict[str, Any]:
        # Written out by hand: dataclasses.asdict deep-copies every value and was about a third
        # of the bot's CPU per command in the ack benchmark, since a run is saved at each step.
        data = {name: getattr(self, name) for name in _RUN_FIELDS}
        data["steps"] = [{name: getattr(step, name) for name in _STEP_FIELDS} for step in self.steps]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        data = dict(data)
        data["risk"] = Risk(data["risk"])
        data["state"] = RunState(data["state"])
        for key in ("created_at", "finished_at", "expires_at"):
            data[key] = _parse_time(data.get(key))
        data["steps"] = [
            StepRecord(
                name=step["name"],
                title=step["title"],
                state=StepState(step["state"]),
                summary=step.get("summary"),
                level=Level(step["level"]) if step.get("level") else None,
                started_at=_parse_time(step.get("started_at")),
                finished_at=_parse_time(step.get("finished_at")),
                error_id=step.get("error_id"),
            )
            for step in data["steps"]
        ]
        return cls(**data)


_RUN_FIELDS = tuple(item.name for item in fields(Run))
_STEP_FIELDS = tuple(item.name for item in fields(StepRecord))


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)
