"""Resolutions a finished read-only run offers: procedures its findings point to.

A step offers them in its `data` under RESOLUTIONS_KEY. The finished card shows each as a
button, and a press starts the command as a new run on behalf of whoever pressed it, with
that procedure's own role check and approval gate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bot.engine.run import Run, RunState

RESOLUTIONS_KEY = "resolutions"
# Block Kit allows 25 elements in an actions block; a card offers a handful at most.
MAX_RESOLUTIONS = 5


@dataclass(frozen=True)
class Resolution:
    """A command (the text after `/meridian`), its button label, and why the evidence points to it."""

    command: str
    label: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def offered_resolutions(run: Run) -> list[Resolution]:
    """The resolutions a completed run offers, in step order, without repeats; none for other runs."""
    if run.state is not RunState.COMPLETED or run.dry_run:
        return []
    offers: list[Resolution] = []
    for record in run.steps:
        for item in (run.outputs.get(record.name) or {}).get(RESOLUTIONS_KEY) or []:
            if not isinstance(item, dict) or not isinstance(item.get("command"), str):
                continue
            if any(offer.command == item["command"] for offer in offers):
                continue
            offers.append(Resolution(command=item["command"], label=str(item.get("label") or item["command"]), reason=str(item.get("reason") or "")))
    return offers[:MAX_RESOLUTIONS]
