"""`python -m bench`: run the ack-latency benchmark and print its report.

`python -m bench backup-memory` runs the backup memory benchmark instead (bench/backup_memory.py).

Exit status: 0 when every request got HTTP 200 and the bot finished its runs, 1 when not,
2 when the benchmark could not finish.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench.ack_latency import BenchConfig, BenchmarkError, run_benchmark
from bench.report import render_report
from bot.observability.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["backup-memory"]:
        from bench import backup_memory

        return backup_memory.main(arguments[1:])
    args = _parse_args(argv)
    config = BenchConfig(
        commands=args.commands,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        warmup=args.warmup,
        drain_timeout=args.drain_timeout,
    )
    # The bot's own log setup; INFO would add a few lines per run, which production writes but this run does not.
    configure_logging(log_format="text", level="WARNING")

    try:
        result = asyncio.run(run_benchmark(config, progress=_progress))
    except BenchmarkError as error:
        print(f"Benchmark failed: {error}", file=sys.stderr)
        return 2

    print(render_report(result))
    return 0 if result.passed else 1


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Measure how fast the bot acks signed /meridian health commands, next to a Bolt app "
            "that only acks. Everything runs in this process on 127.0.0.1."
        ),
    )
    parser.add_argument(
        "--commands",
        type=_positive_int,
        default=BenchConfig.commands,
        metavar="N",
        help="measured commands per app (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=BenchConfig.concurrency,
        metavar="C",
        help="maximum requests in flight at once within a batch (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=BenchConfig.batch_size,
        metavar="B",
        help="commands per batch; batches alternate between the apps (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative_int,
        default=BenchConfig.warmup,
        metavar="W",
        help="commands per app sent first and not counted (default: %(default)s)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help=(
            "how long to wait after the last batch for the bot to finish its runs "
            "(default: estimated from the runs and the bot's chat.update budget of 50 a minute)"
        ),
    )
    return parser.parse_args(argv)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
