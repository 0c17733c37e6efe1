"""The help text of `/meridian help [command]`, generated from the catalog."""

from __future__ import annotations

from collections.abc import Sequence

from bot.engine.catalog import SLASH_COMMAND, Catalog
from bot.errors import UsageError
from bot.slack.mrkdwn import code, escape


def render_help(catalog: Catalog, topic: Sequence[str]) -> str:
    if topic and topic[0].lower() != "help":
        found = catalog.find(topic)
        if found is None:
            suggestions = catalog.suggest(topic)
            hint = ("Did you mean " + " or ".join(code(name) for name in suggestions) + "?") if suggestions else None
            raise UsageError(f"There is no command `{' '.join(topic)}`.", hint=hint)
        command, _ = found
        risk = f" (risk: {command.procedure.risk.value})" if command.procedure else ""
        lines = [f"*{code(command.usage)}*", escape(command.summary) + risk]
        for argument in command.arguments:
            lines.append(f"• {code(argument.name)}: {escape(argument.help)}")
        for option in command.options:
            lines.append(f"• {code(option.name)}: {escape(option.help)}")
        lines.append(f"• {code('--dry-run')}: show the plan and preview, change nothing")
        if command.examples:
            lines.append("Examples: " + ", ".join(code(example) for example in command.examples))
        return "\n".join(lines)

    sections: dict[str, list[str]] = {}
    for command in catalog.commands.values():
        line = f"{code(SLASH_COMMAND + ' ' + command.name)}: {escape(command.summary)}"
        sections.setdefault(command.section, []).append(line)
    lines = ["*Meridian runbook commands*"]
    for section, entries in sections.items():
        lines.append(f"\n*{escape(section)}*")
        lines.extend(entries)
    lines.append(f"\n{code(SLASH_COMMAND + ' help COMMAND')} shows a command's options and examples.")
    return "\n".join(lines)
