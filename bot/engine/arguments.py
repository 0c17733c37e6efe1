"""Command-line parsing: shell-like splitting and typed options for every command."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.durations import parse_duration, parse_time
from bot.engine.patterns import check_pattern
from bot.errors import UsageError

# Slack's clients turn straight quotes into typographic ones; they group words all the same.
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def split_arguments(text: str) -> list[str]:
    try:
        return shlex.split(text.translate(_QUOTES))
    except ValueError:
        raise UsageError("The command has an unclosed quote.", hint="Close it, or remove it.") from None


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"`{text}` is not a whole number of 1 or more.")
    return int(text)


def _whole_number(text: str) -> int:
    if not text.isdigit():
        raise UsageError(f"`{text}` is not a whole number of 0 or more.")
    return int(text)




def _seconds(text: str) -> float:
    return parse_duration(text).total_seconds()


def _point_in_time(text: str) -> str:
    """Return `latest`, or the time as absolute ISO 8601 UTC, so `-2h` means the same at approval."""
    if text.strip().lower() == "latest":
        return "latest"
    moment = parse_time(text)
    if moment > datetime.now(UTC):
        raise UsageError(f"`{text}` is in the future.", hint="Give a time before now, such as `-2h`, or `latest`.")
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


# Parsed values are JSON types, so a run's arguments are stored and digested as they are:
# durations become seconds, regular expressions stay text (checked here, compiled where used).
KINDS: dict[str, Callable[[str], Any]] = {
    "text": str,
    "count": _positive_int,
    "number": _whole_number,
    "duration": _seconds,
    "time": _point_in_time,
    "regex": check_pattern,
}


@dataclass(frozen=True)
class Option:
    """A `--name VALUE` option, or a `--name` switch when `kind` is "flag"."""

    name: str
    kind: str
    help: str
    default: Any = None
    metavar: str = "VALUE"
    maximum: int | None = None  # for count and number options

    @property
    def dest(self) -> str:
        return self.name.removeprefix("--").replace("-", "_")

    @property
    def usage(self) -> str:
        return f"[{self.name}]" if self.kind == "flag" else f"[{self.name} {self.metavar}]"


@dataclass(frozen=True)
class Argument:
    """A positional argument."""

    name: str
    kind: str
    help: str
    maximum: int | None = None  # for count and number arguments
    rest: bool = False  # the last argument only: takes every remaining word, joined by spaces

    @property
    def dest(self) -> str:
        return self.name.lower().replace("-", "_")


DRY_RUN = Option("--dry-run", "flag", "show the plan and preview, change nothing")


def parse_options(
    tokens: Sequence[str],
    *,
    arguments: Sequence[Argument],
    options: Sequence[Option],
    usage: str,
) -> dict[str, Any]:
    """Turn the tokens after the command words into a dict keyed by each option's dest."""
    known = {option.name: option for option in (*options, DRY_RUN)}
    values: dict[str, Any] = {option.dest: (False if option.kind == "flag" else option.default) for option in known.values()}
    positionals: list[str] = []

    remaining = list(tokens)
    while remaining:
        token = remaining.pop(0)
        if not token.startswith("--") or token == "--":
            positionals.append(token)
            continue

        name, has_value, inline_value = token.partition("=")
        option = known.get(name)
        if option is None:
            raise UsageError(f"Unknown option `{name}`.", hint=f"Usage: `{usage}`")
        if option.kind == "flag":
            if has_value:
                raise UsageError(f"`{name}` takes no value.", hint=f"Usage: `{usage}`")
            values[option.dest] = True
            continue

        if has_value:
            raw = inline_value
        elif remaining:
            raw = remaining.pop(0)
        else:
            raise UsageError(f"`{name}` needs a value.", hint=f"Usage: `{usage}`")
        try:
            values[option.dest] = _convert(option.kind, raw, maximum=option.maximum)
        except UsageError as error:
            raise UsageError(f"{name}: {error.message}", hint=error.hint or f"Usage: `{usage}`") from None

    takes_rest = bool(arguments) and arguments[-1].rest
    if takes_rest and len(positionals) > len(arguments):
        keep = len(arguments) - 1
        positionals = [*positionals[:keep], " ".join(positionals[keep:])]
    if len(positionals) > len(arguments):
        extra = positionals[len(arguments)]
        raise UsageError(f"Unexpected argument `{extra}`.", hint=f"Usage: `{usage}`")
    if len(positionals) < len(arguments):
        missing = arguments[len(positionals)]
        raise UsageError(f"Missing {missing.name}: {missing.help}.", hint=f"Usage: `{usage}`")
    for argument, raw in zip(arguments, positionals, strict=True):
        try:
            values[argument.dest] = _convert(argument.kind, raw, maximum=argument.maximum)
        except UsageError as error:
            raise UsageError(f"{argument.name}: {error.message}", hint=f"Usage: `{usage}`") from None
    return values


def _convert(kind: str, raw: str, *, maximum: int | None) -> Any:
    value = KINDS[kind](raw)
    if maximum is not None and value > maximum:
        raise UsageError(f"`{raw}` is more than the maximum, {maximum:,}.")
    return value
