"""The ack-latency benchmark: signed `/meridian health` commands to the bot and to a baseline app.

Both apps run in this process and share its event loop. The bot is the real one inside the
sandbox (fake Slack, fake targets, in-memory SQLite state store, no database). The baseline is
a Bolt app that only acks (see `bench.baseline`). Latency is the driver's `Delivery.elapsed`:
from sending the request to reading the HTTP 200.

Commands go out in batches that alternate between the apps in ABBA order. After each bot batch
the benchmark waits until every run it started has finished its steps, so the bot's work after
the ack slows down the acks of its own batch but not the next batch of either app. It does not
wait for the final card updates, because the bot paces those to 50 a minute and waiting would
take minutes per batch. Those updates are cheap and spread out, and they all end before the
benchmark stops (see `estimate_drain_timeout`).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from bench.baseline import BaselineApp
from bench.gc_pauses import GcPauses, GcSummary
from bench.stats import Sample
from bot.engine.run import Run, RunState, StepState
from bot.sandbox.environment import OPS_CHANNEL, Sandbox
from bot.sandbox.slack.driver import SlackDriver
from bot.slack.budget import UpdateBudget

BOT = "bot"
BASELINE = "baseline"
APPS = (BOT, BASELINE)
COMMAND_TEXT = "health"

# Each health step times out after 15 s (procedures/health.py), so a bot that has not settled
# after this long has a stuck run.
SETTLE_TIMEOUT_SECONDS = 60.0
SETTLE_POLL_SECONDS = 0.05
DRAIN_PROGRESS_SECONDS = 30.0
DRAIN_MARGIN_SECONDS = 120.0

_FINISHED_STEP_STATES = frozenset({StepState.DONE, StepState.FAILED, StepState.SKIPPED})

Progress = Callable[[str], None]


class BenchmarkError(Exception):
    """The benchmark could not finish because the bot did not complete its runs in time."""


@dataclass(frozen=True)
class BenchConfig:
    commands: int = 400
    """Measured commands per app."""
    concurrency: int = 50
    """Maximum requests in flight at once, within one batch of one app."""
    batch_size: int = 100
    warmup: int = 20
    """Commands per app sent before measuring and not counted."""
    drain_timeout: float | None = None
    """Seconds to wait for the bot's runs after the last batch; None estimates it from the runs."""


@dataclass(frozen=True)
class Batch:
    app: str
    size: int


@dataclass(frozen=True)
class BatchResult:
    app: str
    samples: list[Sample]
    cpu_seconds: float
    """CPU time of this process (driver, app and fakes) from the first request to the last response,
    and for a bot batch on until its runs finished their steps."""
    gc: GcSummary
    """Garbage collections from the first request to the last response."""


@dataclass(frozen=True)
class BenchResult:
    config: BenchConfig
    batches: list[BatchResult]
    """Measured batches in the order they were sent."""
    warmup_failures: list[Sample]
    run_states: Counter[str]
    """Final states of the runs that the measured bot commands started."""
    slack_calls: Counter[str]
    """Web API calls (and response_url posts) that the fake Slack recorded for the measured bot commands, by method."""
    drained: bool
    drain_seconds: float
    """Seconds from the end of the last batch until the bot had no executing run, or until the drain timed out."""

    def samples(self, app: str) -> list[Sample]:
        return [sample for batch in self.batches if batch.app == app for sample in batch.samples]

    def cpu_seconds(self, app: str) -> float:
        return sum(batch.cpu_seconds for batch in self.batches if batch.app == app)

    @property
    def failures(self) -> list[Sample]:
        return [sample for batch in self.batches for sample in batch.samples if not sample.ok]

    @property
    def passed(self) -> bool:
        """Whether every request got HTTP 200 and the bot finished all its runs in time."""
        return not self.failures and not self.warmup_failures and self.drained


async def run_benchmark(config: BenchConfig, *, progress: Progress) -> BenchResult:
    """Start the sandbox and the baseline, send the warm-up and the measured batches, then drain the bot."""
    async with Sandbox(database_url=None) as sandbox, BaselineApp() as baseline:
        user_id = sandbox.users.operator
        # The baseline's directory gets the same user, so both apps receive the same payload.
        baseline.slack.add_user(user_id, "operator", real_name="Operator")
        drivers = {BOT: sandbox.driver, BASELINE: baseline.driver}

        async def send(batch: Batch) -> list[Sample]:
            return await send_batch(
                drivers[batch.app],
                app=batch.app,
                size=batch.size,
                concurrency=config.concurrency,
                user_id=user_id,
            )

        progress(f"Warming up: {config.warmup} commands per app")
        warmup_samples = [sample for app in APPS for sample in await send(Batch(app, config.warmup))]
        bot_runs = sum(sample.ok for sample in warmup_samples if sample.app == BOT)
        warmup_drained, _ = await wait_until_idle(sandbox, timeout=estimate_drain_timeout(bot_runs), progress=progress)
        if not warmup_drained:
            raise BenchmarkError(f"The bot did not finish its {bot_runs} warm-up runs in time; its log above may say why.")
        warmup_run_ids = {run.id for run in await sandbox.runtime.store.list_runs(limit=bot_runs + 1)}
        calls_before = len(sandbox.slack.calls)

        schedule = alternating_batches(config.commands, config.batch_size)
        results: list[BatchResult] = []
        for number, batch in enumerate(schedule, start=1):
            progress(f"Batch {number} of {len(schedule)}: {batch.size} commands to the {batch.app}")
            cpu_started = time.process_time()
            with GcPauses() as pauses:
                samples = await send(batch)
            if batch.app == BOT:
                bot_runs += sum(sample.ok for sample in samples)
                await wait_until_settled(sandbox, expected_runs=bot_runs)
            cpu_seconds = time.process_time() - cpu_started
            results.append(BatchResult(app=batch.app, samples=samples, cpu_seconds=cpu_seconds, gc=pauses.summary()))

        drain_timeout = config.drain_timeout or estimate_drain_timeout(bot_runs)
        progress(f"Waiting up to {drain_timeout:.0f} s for the bot to finish its {bot_runs} runs")
        drained, drain_seconds = await wait_until_idle(sandbox, timeout=drain_timeout, progress=progress)

        all_runs = await sandbox.runtime.store.list_runs(limit=bot_runs + 1)
        measured_runs = [run for run in all_runs if run.id not in warmup_run_ids]
        calls = sandbox.slack.calls[calls_before:]
        return BenchResult(
            config=config,
            batches=results,
            warmup_failures=[sample for sample in warmup_samples if not sample.ok],
            run_states=Counter(run.state.value for run in measured_runs),
            slack_calls=Counter(call.method for call in calls),
            drained=drained,
            drain_seconds=drain_seconds,
        )


def alternating_batches(commands: int, batch_size: int) -> list[Batch]:
    """Split `commands` per app into batches in ABBA order: bot, baseline, baseline, bot, and so on.

    The order flips every round, so neither app always goes first.
    """
    sizes = [batch_size] * (commands // batch_size)
    if commands % batch_size:
        sizes.append(commands % batch_size)

    batches: list[Batch] = []
    for index, size in enumerate(sizes):
        order = (BOT, BASELINE) if index % 2 == 0 else (BASELINE, BOT)
        batches.extend(Batch(app=app, size=size) for app in order)
    return batches


async def send_batch(
    driver: SlackDriver,
    *,
    app: str,
    size: int,
    concurrency: int,
    user_id: str,
) -> list[Sample]:
    """Send `size` signed `/meridian health` commands, at most `concurrency` at once."""
    semaphore = asyncio.Semaphore(concurrency)

    async def send_one() -> Sample:
        async with semaphore:
            try:
                delivery = await driver.command(COMMAND_TEXT, user_id=user_id, channel_id=OPS_CHANNEL)
            except (aiohttp.ClientError, TimeoutError) as error:
                reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                return Sample(app=app, status=None, elapsed=None, error=reason)
        failure = None if delivery.status == 200 else f"HTTP {delivery.status}: {delivery.body[:200]!r}"
        return Sample(app=app, status=delivery.status, elapsed=delivery.elapsed, error=failure)

    return list(await asyncio.gather(*(send_one() for _ in range(size))))


async def wait_until_settled(sandbox: Sandbox, *, expected_runs: int) -> None:
    """Wait until the bot has stored `expected_runs` runs and each has finished its steps.

    What the bot may still do then is the final card update of each run, which it paces with
    its chat.update budget. Raises BenchmarkError after SETTLE_TIMEOUT_SECONDS.
    """
    store = sandbox.runtime.store
    stored = 0
    busy_runs: Sequence[Run] = []
    for _ in range(math.ceil(SETTLE_TIMEOUT_SECONDS / SETTLE_POLL_SECONDS)):
        # Most polls read only the running runs, which is cheap. The decision reads every run at
        # once, because a run stored between two queries would otherwise be missed.
        running = await store.list_runs(states=[RunState.RUNNING], limit=expected_runs + 1)
        busy_runs = [run for run in running if not _steps_finished(run)]
        if not busy_runs:
            runs = await store.list_runs(limit=expected_runs + 1)
            stored = len(runs)
            busy_runs = [run for run in runs if not _steps_finished(run)]
            if stored >= expected_runs and not busy_runs:
                return
        await asyncio.sleep(SETTLE_POLL_SECONDS)

    if busy_runs:
        detail = f"{len(busy_runs)} runs still have steps running, for example {', '.join(run.id for run in busy_runs[:10])}"
    else:
        detail = f"it stored {stored} of the {expected_runs} runs that the acked commands should have started"
    raise BenchmarkError(f"The bot did not settle within {SETTLE_TIMEOUT_SECONDS:g} s: {detail}.")


async def wait_until_idle(sandbox: Sandbox, *, timeout: float, progress: Progress) -> tuple[bool, float]:
    """Wait until the bot has no executing run; return whether it got there and the seconds waited.

    Reports progress every DRAIN_PROGRESS_SECONDS.
    """
    started = time.monotonic()
    deadline = started + timeout
    for _ in range(math.ceil(timeout / DRAIN_PROGRESS_SECONDS)):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            async with asyncio.timeout(min(DRAIN_PROGRESS_SECONDS, remaining)):
                await sandbox.runtime.engine.wait_idle()
        except TimeoutError:
            # Runs are stored as completed before their final card update, so count those updates instead.
            updates = len(sandbox.slack.calls_to("chat.update"))
            progress(f"  still busy after {time.monotonic() - started:.0f} s; chat.update calls so far: {updates}")
            continue
        return True, time.monotonic() - started
    return False, time.monotonic() - started


def estimate_drain_timeout(runs: int) -> float:
    """Estimate how long `runs` health runs take to post their final cards, in seconds.

    Each run ends with one chat.update (a run slower than the card interval also gets one
    before), and the bot allows `per_minute` of those in any 60-second window (UpdateBudget's
    default), so the last card can come minutes after the ack. DRAIN_MARGIN_SECONDS leaves room
    for those extra updates and for the steps themselves.
    """
    # NOTE: this reads UpdateBudget's default; a runtime built with another budget needs --drain-timeout.
    per_minute = inspect.signature(UpdateBudget).parameters["per_minute"].default
    return 60.0 * math.ceil(runs / per_minute) + DRAIN_MARGIN_SECONDS


def _steps_finished(run: Run) -> bool:
    return run.state.is_final or all(step.state in _FINISHED_STEP_STATES for step in run.steps)
