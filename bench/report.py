"""The plain-text report of an ack-latency run: the latency table, the batches and the bot's work after the ack."""

from __future__ import annotations

from collections import Counter

from bench.ack_latency import APPS, BASELINE, BOT, BenchResult
from bench.stats import LatencySummary, summarize


def render_report(result: BenchResult) -> str:
    config = result.config
    summaries = {app: summarize(app, result.samples(app)) for app in APPS}
    title = (
        f"Ack latency of `/meridian health`: {config.commands} commands per app in batches of "
        f"{config.batch_size}, at most {config.concurrency} in flight "
        f"(after {config.warmup} warm-up commands per app, not counted)"
    )
    lines = [
        title,
        "",
        f"{'app':<14}{'sent':>6}{'200':>6}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'CPU ms/cmd':>12}",
    ]
    for app in APPS:
        cpu_per_command = result.cpu_seconds(app) / max(summaries[app].sent, 1)
        lines.append(_summary_row(summaries[app], cpu_per_command))
    lines.append(_ratio_row(summaries[BOT], summaries[BASELINE]))

    lines += [
        "",
        "Batches in the order sent: p50 / p99 ms, CPU ms per command, garbage collections while",
        "the batch was in flight (count, full collections, longest pause):",
    ]
    for number, batch in enumerate(result.batches, start=1):
        summary = summarize(batch.app, batch.samples)
        cpu_per_command = batch.cpu_seconds / max(summary.sent, 1)
        lines.append(
            f"  {number:>2} {batch.app:<9}{_ms(summary.p50):>7} / {_ms(summary.p99):<7}"
            f"CPU {_ms(cpu_per_command):>5}   GC {batch.gc.collections:>3}, full {batch.gc.full_collections}, "
            f"longest {_ms(batch.gc.longest)} ms"
        )
    lines += [
        "CPU is this process's CPU time (driver, app and fakes) from the first request of a batch to",
        "the last response, and for a bot batch on until every run it started had finished its steps.",
    ]

    lines += ["", *_failure_lines(result), "", *_bot_work_lines(result)]
    return "\n".join(lines)


def _summary_row(summary: LatencySummary, cpu_per_command: float) -> str:
    return (
        f"{summary.app:<14}{summary.sent:>6}{summary.ok:>6}{summary.failed:>8}"
        f"{_ms(summary.p50):>9}{_ms(summary.p99):>9}{_ms(summary.max):>9}{_ms(cpu_per_command):>12}"
    )


def _ratio_row(bot: LatencySummary, baseline: LatencySummary) -> str:
    return f"{'bot/baseline':<34}{_ratio(bot.p50, baseline.p50):>9}{_ratio(bot.p99, baseline.p99):>9}{_ratio(bot.max, baseline.max):>9}"


def _failure_lines(result: BenchResult) -> list[str]:
    failures = result.failures
    if not failures and not result.warmup_failures:
        return ["Every response was HTTP 200."]

    lines = [f"{len(failures)} measured and {len(result.warmup_failures)} warm-up requests did not get HTTP 200:"]
    reasons = Counter((sample.app, sample.error) for sample in [*failures, *result.warmup_failures])
    for (app, error), count in reasons.most_common():
        lines.append(f"  {count} x {app}: {error}")
    return lines


def _bot_work_lines(result: BenchResult) -> list[str]:
    commands = sum(1 for sample in result.samples(BOT) if sample.ok)
    states = ", ".join(f"{count} {state}" for state, count in result.run_states.most_common()) or "none"
    lines = [f"Runs started by the {commands} measured bot commands: {states}"]

    if result.drained:
        lines.append(f"The bot had no executing run {result.drain_seconds:.0f} s after the last batch.")
    else:
        lines.append(
            f"The bot still had executing runs {result.drain_seconds:.0f} s after the last batch; "
            "they were cancelled at shutdown, so the counts below are incomplete."
        )

    lines.append("Web API calls the fake Slack recorded per measured bot command:")
    for method, count in sorted(result.slack_calls.items()):
        lines.append(f"  {method:<22}{_per_command(count, commands)}")
    lines.append(f"  {'all methods':<22}{_per_command(result.slack_calls.total(), commands)}")
    return lines


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return "n/a"
    return f"{numerator / denominator:.2f}x"


def _per_command(count: int, commands: int) -> str:
    return "n/a" if commands == 0 else f"{count / commands:.2f}"

