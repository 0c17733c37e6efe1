"""The command catalog: which words start which procedure, with usage, help and examples."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.engine.arguments import Argument, Option, parse_options, split_arguments
from bot.engine.procedure import Procedure
from bot.errors import UsageError

SLASH_COMMAND = "/meridian"


@dataclass(frozen=True)
class Command:
    """Words that start a procedure, or a command the bot answers itself (`builtin`)."""

    words: tuple[str, ...]
    procedure: Procedure | None = None
    arguments: tuple[Argument, ...] = ()
    options: tuple[Option, ...] = ()
    examples: tuple[str, ...] = ()
    builtin: str | None = None
    builtin_summary: str = ""

    def __post_init__(self) -> None:
        if (self.procedure is None) == (self.builtin is None):
            raise ValueError(f"command {self.name} needs either a procedure or a builtin")

    @property
    def name(self) -> str:
        return " ".join(self.words)

    @property
    def summary(self) -> str:
        return self.procedure.summary if self.procedure else self.builtin_summary

    @property
    def section(self) -> str:
        return self.procedure.section if self.procedure else "The bot"

    @property
    def usage(self) -> str:
        parts = [SLASH_COMMAND, *self.words, *(argument.name for argument in self.arguments)]
        parts.extend(option.usage for option in self.options)
        return " ".join(parts)


@dataclass(frozen=True)
class Invocation:
    """A parsed command line, ready for the engine."""

    command: Command
    args: dict[str, Any]
    dry_run: bool
    text: str

    @property
    def procedure(self) -> Procedure:
        if self.command.procedure is None:
            raise TypeError(f"{self.command.name} is answered by the bot, not run as a procedure")
        return self.command.procedure


@dataclass(frozen=True)
class HelpRequest:
    topic: tuple[str, ...] = ()


@dataclass
class Catalog:
    commands: dict[tuple[str, ...], Command] = field(default_factory=dict)

    def add(self, command: Command) -> None:
        if command.words in self.commands:
            raise ValueError(f"command `{command.name}` is defined twice")
        self.commands[command.words] = command

    def find(self, tokens: Sequence[str]) -> tuple[Command, list[str]] | None:
        """Match the longest command whose words start `tokens`."""
        for length in range(min(len(tokens), 3), 0, -1):
            command = self.commands.get(tuple(word.lower() for word in tokens[:length]))
            if command is not None:
                return command, list(tokens[length:])
        return None

    def suggest(self, tokens: Sequence[str]) -> list[str]:
        typed = " ".join(tokens[:2]).lower()
        names = [command.name for command in self.commands.values()]
        close = difflib.get_close_matches(typed, names, n=3, cutoff=0.5)
        if not close and tokens:
            close = difflib.get_close_matches(tokens[0].lower(), names, n=3, cutoff=0.6)
        if not close and tokens:
            close = [name for name in names if name.split()[0] == tokens[0].lower()][:3]
        return close

    def parse(self, text: str) -> Invocation | HelpRequest:
        tokens = split_arguments(text)
        if not tokens or tokens[0].lower() == "help":
            return HelpRequest(topic=tuple(tokens[1:]))

        found = self.find(tokens)
        if found is None:
            suggestions = self.suggest(tokens)
            hint = (
                "Did you mean " + " or ".join(f"`{SLASH_COMMAND} {name}`" for name in suggestions) + "?"
                if suggestions
                else f"`{SLASH_COMMAND} help` lists every command."
            )
            raise UsageError(f"Unknown command `{' '.join(tokens[:2])}`.", hint=hint)

        command, rest = found
        values = parse_options(rest, arguments=command.arguments, options=command.options, usage=command.usage)
        dry_run = bool(values.pop("dry_run"))
        return Invocation(command=command, args=values, dry_run=dry_run, text=text)
