"""The Slack side of run cards: post once, update in place (coalesced), details in the thread."""

from __future__ import annotations

import asyncio
import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.engine.procedure import Level, Procedure, Risk
from bot.engine.run import Run
from bot.errors import Refused
from bot.observability.metrics import BotMetrics
from bot.observability.redaction import redactor
from bot.slack import limits
from bot.slack.budget import UpdateBudget
from bot.slack.cards import render_card
from bot.slack.mrkdwn import code_block, escape, mention, truncate

logger = logging.getLogger(__name__)

# Errors after which the card is posted in the incident channel instead.
_CANNOT_POST_HERE = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}
_FINAL_ATTEMPTS = 5


class SlackRunView:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        metrics: BotMetrics,
        incident_channel: str | None,
        min_interval: float = 1.0,
        budget: UpdateBudget | None = None,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._incident_channel = incident_channel
        self._min_interval = min_interval
        self._budget = budget or UpdateBudget()
        self._latest: dict[str, tuple[Run, Procedure]] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._last_update: dict[str, float] = {}
        self._update_locks: dict[str, asyncio.Lock] = {}

    async def post_card(self, run: Run, procedure: Procedure, *, response_url: str | None) -> None:
        text, blocks = render_card(run, procedure)
        try:
            response = await self._client.chat_postMessage(channel=run.channel_id, text=text, blocks=blocks)
        except SlackApiError as error:
            code = str(error.response.get("error"))
            self._metrics.slack_errors.labels(method="chat.postMessage", error=code).inc()
            if code not in _CANNOT_POST_HERE:
                raise
            await self._post_elsewhere(run, procedure, original_error=code, response_url=response_url)
            return
        run.message_ts = response["ts"]
        run.channel_id = response.get("channel", run.channel_id)
        self._last_update[run.id] = time.monotonic()

    async def _post_elsewhere(self, run: Run, procedure: Procedure, *, original_error: str, response_url: str | None) -> None:
        logger.warning("Cannot post run %s in %s (%s)", run.id, run.channel_id, original_error)
        if not self._incident_channel or self._incident_channel == run.channel_id:
            raise Refused(
                "I cannot post in this conversation.",
                hint="Invite me with `/invite @Meridian Bot`, or set INCIDENT_CHANNEL so that I post run cards there.",
            )

        original_channel = run.channel_id
        run.channel_id = self._incident_channel
        text, blocks = render_card(run, procedure)
        response = await self._client.chat_postMessage(channel=run.channel_id, text=text, blocks=blocks)
        run.message_ts = response["ts"]
        self._last_update[run.id] = time.monotonic()
        if response_url:
            permalink = await self._permalink(run)
            await self._respond(
                response_url,
                f"I cannot post in <#{original_channel}>, so run `{run.id}` is in <#{run.channel_id}>"
                + (f": {permalink}" if permalink else "."),
            )

    async def _permalink(self, run: Run) -> str | None:
        try:
            response = await self._client.chat_getPermalink(channel=run.channel_id, message_ts=run.message_ts)
        except SlackApiError as error:
            logger.warning("chat.getPermalink failed for run %s: %s", run.id, error.response.get("error"))
            return None
        return response.get("permalink")

    async def _respond(self, response_url: str, text: str) -> None:
        from slack_sdk.webhook.async_client import AsyncWebhookClient

        result = await AsyncWebhookClient(response_url).send(text=text, response_type="ephemeral")
        if result.status_code != 200:
            logger.warning("The response_url answered HTTP %s", result.status_code)

    def card_changed(self, run: Run, procedure: Procedure) -> None:
        if run.message_ts is None:
            return
        self._latest[run.id] = (run, procedure)
        if run.id not in self._flushers:
            self._flushers[run.id] = asyncio.create_task(self._flush_later(run.id))

    async def _flush_later(self, run_id: str) -> None:
        try:
            wait = self._last_update.get(run_id, 0) + self._min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._budget.acquire()
            latest = self._latest.pop(run_id, None)
            self._forget_flusher(run_id)
            if latest is None:
                return  # deliver_card sent this state already
            await self._update(*latest)
        except SlackApiError as error:
            # An intermediate update may be lost; the final card is always sent again.
            logger.warning("chat.update failed for run %s: %s", run_id, error.response.get("error"))
        except asyncio.CancelledError:
            raise
        finally:
            self._forget_flusher(run_id)

    def _forget_flusher(self, run_id: str) -> None:
        # A newer flusher may have been scheduled for the run meanwhile; it stays registered.
        if self._flushers.get(run_id) is asyncio.current_task():
            del self._flushers[run_id]

    async def _update(self, run: Run, procedure: Procedure) -> None:
        # One update per card at a time, rendered when it is sent: an update already in flight
        # can never land after a newer state and overwrite it.
        async with self._update_locks.setdefault(run.id, asyncio.Lock()):
            text, blocks = render_card(run, procedure)
            self._last_update[run.id] = time.monotonic()
            try:
                await self._client.chat_update(channel=run.channel_id, ts=run.message_ts, text=text, blocks=blocks)
            except SlackApiError as error:
                self._metrics.slack_errors.labels(method="chat.update", error=str(error.response.get("error"))).inc()
                raise

    async def deliver_card(self, run: Run, procedure: Procedure) -> None:
        if run.message_ts is None:
            return
        flusher = self._flushers.pop(run.id, None)
        if flusher is not None:
            flusher.cancel()
        self._latest.pop(run.id, None)

        for attempt in range(1, _FINAL_ATTEMPTS + 1):
            wait = self._last_update.get(run.id, 0) + self._min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._budget.acquire()
            try:
                await self._update(run, procedure)
            except SlackApiError as error:
                retry_after = _retry_after(error)
                logger.warning(
                    "Final card update for run %s failed (attempt %d of %d): %s",
                    run.id, attempt, _FINAL_ATTEMPTS, error.response.get("error"),
                )
                await asyncio.sleep(retry_after if retry_after is not None else min(2**attempt, 30))
                continue
            if run.state.is_final:
                self._last_update.pop(run.id, None)
                self._update_locks.pop(run.id, None)
            return
        logger.error("Gave up delivering the final card of run %s after %d attempts", run.id, _FINAL_ATTEMPTS)

    async def announce(self, run: Run, procedure: Procedure, event: str) -> None:
        is_announced = run.risk in (Risk.HIGH, Risk.CRITICAL) or event == "interrupted"
        template = _ANNOUNCEMENTS.get(event)
        if not is_announced or template is None or run.dry_run or not self._incident_channel:
            return
        if run.channel_id == self._incident_channel and event not in ("interrupted",):
            return  # the card itself is in the incident channel

        critical = [record for record in run.steps if record.level is Level.CRITICAL]
        ended_with_problems = event == "completed" and bool(critical)
        if ended_with_problems:
            # A run that ended with problems must not read as a plain success in the channel.
            template = ":warning: {title} `{run}` finished with {findings}: "
        needed = run.risk.approvals_needed
        text = template.format(
            title=escape(procedure.title),
            run=run.id,
            requester=mention(run.requester),
            summary=escape(run.plan["summary"]) if run.plan else "",
            approvals=f"{needed} approval{'s' if needed > 1 else ''}",
            approvers=", ".join(mention(user) for user in run.approvals) or "approvers",
            decider=mention(run.decided_by) if run.decided_by else "someone",
            findings=f"{len(critical)} critical finding{'s' if len(critical) > 1 else ''}",
        )
        if ended_with_problems:
            first = critical[0]
            text += f"{escape(first.title)}: {escape(truncate(first.summary or '', 300))}."
        permalink = await self._permalink(run) if run.message_ts else None
        if permalink:
            text += f" <{permalink}|Open the run card>"
        try:
            await self._client.chat_postMessage(channel=self._incident_channel, text=text)
        except SlackApiError as error:
            code = str(error.response.get("error"))
            self._metrics.slack_errors.labels(method="chat.postMessage", error=code).inc()
            logger.error("Could not post the %s announcement of run %s to %s: %s", event, run.id, self._incident_channel, code)

    async def post_detail(self, run: Run, *, title: str, text: str) -> None:
        if run.message_ts is None:
            return
        text = redactor.scrub(text)
        heading = f"*{escape(title)}*"
        if len(text) <= limits.DETAIL_TEXT:
            await self._client.chat_postMessage(
                channel=run.channel_id, thread_ts=run.message_ts, text=f"{heading}\n{code_block(text)}"
            )
            return

        excerpt = truncate(text, limits.DETAIL_TEXT, notice="\n… (cut short: the whole text is in the attached file)")
        await self._client.chat_postMessage(
            channel=run.channel_id, thread_ts=run.message_ts, text=f"{heading}\n{code_block(excerpt)}"
        )
        await self._client.files_upload_v2(
            channel=run.channel_id,
            thread_ts=run.message_ts,
            content=text,
            filename=f"{run.id}-{title.lower().replace(' ', '-')}.txt",
            title=f"{title} ({run.id})",
        )


_ANNOUNCEMENTS = {
    "requested": ":raised_hand: {title} `{run}` requested by {requester}: {summary}. It needs {approvals} from APPROVERS.",
    "approved": ":white_check_mark: {title} `{run}` approved by {approvers}; it is starting.",
    "completed": ":white_check_mark: {title} `{run}` finished.",
    "failed": ":x: {title} `{run}` failed.",
    "denied": ":no_entry: {title} `{run}` was denied by {decider}.",
    "cancelled": ":no_entry: {title} `{run}` was cancelled by {decider}.",
    "expired": ":hourglass: {title} `{run}` expired: nobody approved it in time.",
    "interrupted": ":warning: {title} `{run}` was interrupted mid-step when the bot stopped; it was not run again.",
    "voided": ":no_entry: {title} `{run}` is void: its plan changed after it was requested.",
}


def _retry_after(error: SlackApiError) -> float | None:
    if error.response.status_code != 429:
        return None
    value = error.response.headers.get("Retry-After") or error.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else 1.0
    except (TypeError, ValueError):
        return 1.0
