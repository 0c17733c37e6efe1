"""How the engine shows runs to people; the Slack implementation lives in bot.slack."""

from __future__ import annotations

from typing import Protocol

from bot.engine.procedure import Procedure
from bot.engine.run import Run


class RunView(Protocol):
    async def post_card(self, run: Run, procedure: Procedure, *, response_url: str | None) -> None:
        """Post the run card and set `run.message_ts` (and `run.channel_id` when it moved)."""
        ...

    def card_changed(self, run: Run, procedure: Procedure) -> None:
        """Schedule a card update; updates close together are coalesced into one."""
        ...

    async def deliver_card(self, run: Run, procedure: Procedure) -> None:
        """Deliver the card's current state now (a final state, or a request for approval).

        Retries until Slack takes it or the retries run out.
        """
        ...

    async def post_detail(self, run: Run, *, title: str, text: str) -> None:
        """Post a step's detail as a reply in the card's thread."""
        ...

    async def announce(self, run: Run, procedure: Procedure, event: str) -> None:
        """Tell the incident channel about a run's request, approval or end, with a link to its card.

        Only runs of risk high or critical are announced, and interrupted runs of any risk.
        """
        ...
