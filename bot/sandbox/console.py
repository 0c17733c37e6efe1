"""`meridian-bot shell`: type `/meridian ...`, read the bot's messages as text, press buttons.

The console runs the real bot behind the Slack simulator and sends every command and button
press as a signed request, as Slack would. Its grammar:

    /meridian ...     run a command as the acting user
    press N           press button N (numbers stay with their message)
    as USER           act as another user (operator, approver, approver2, admin, viewer, or an id)
    scenario NAME     switch the sandbox into a failure (`scenario` alone lists them)
    help              this text
    quit              stop (so does the end of standard input)
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, TextIO

import asyncpg

from bot.config import Settings
from bot.observability.logs import configure_logging
from bot.sandbox.environment import OPS_CHANNEL, Sandbox
from bot.sandbox.meridian_schema import SANDBOX_DATABASE, prepare_sandbox_database
from bot.sandbox.scenarios import SCENARIOS
from bot.sandbox.slack.records import Message, UploadedFile
from bot.sandbox.text_render import mrkdwn_to_text, render_blocks

logger = logging.getLogger(__name__)

SANDBOX_DATABASE_URL = os.environ.get("SANDBOX_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE_PROBE_SECONDS = 2.0
_TARGET_SETTINGS = (
    "meridian_api_url",
    "meridian_frontend_url",
    "database_url",
    "ethereum_rpc_url",
    "ethereum_backup_rpc_url",
    "kubeconfig",
)


class Console:
    def __init__(self, sandbox: Sandbox, *, out: TextIO, interactive: bool) -> None:
        self.sandbox = sandbox
        self.out = out
        self.interactive = interactive
        self.user = sandbox.users.operator
        self._buttons: dict[tuple[str, str, str, str], int] = {}
        self._button_targets: dict[int, tuple[str, str, str]] = {}

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def _number_for(self, channel: str, ts: str) -> Any:
        def number(action_id: str, value: str) -> int:
            key = (channel, ts, action_id, value)
            if key not in self._buttons:
                self._buttons[key] = len(self._buttons) + 1
                self._button_targets[self._buttons[key]] = (channel, ts, action_id)
            return self._buttons[key]

        return number

    def show(self, event: str, record: Message | UploadedFile) -> None:
        if isinstance(record, UploadedFile):
            self.print(f"  │ [file attached: {record.filename}, {len(record.content):,} bytes]")
            return
        if event == "deleted" or (record.visible_to and record.visible_to != self.user):
            return

        channel = self.sandbox.slack.workspace.directory.channels.get(record.channel)
        where = f"#{channel.name}" if channel else record.channel
        notes = []
        if record.is_ephemeral:
            notes.append("only visible to you")
        if event == "updated":
            notes.append("updated")
        heading = f"── {where}" + (f" ({', '.join(notes)})" if notes else "") + " ──"

        lines = render_blocks(list(record.blocks), number_for=self._number_for(record.channel, record.ts))
        if not lines:
            lines = mrkdwn_to_text(record.text).splitlines()
        prefix = "  │ " if record.thread_ts and record.thread_ts != record.ts else ""
        if not prefix:
            self.print(heading)
        for line in lines:
            self.print(prefix + line)

    async def handle(self, line: str) -> bool:
        """Carry out one console line; return False to stop."""
        words = line.split()
        if not words:
            return True
        keyword = words[0].lower()

        if keyword in ("quit", "exit"):
            return False
        if keyword == "help":
            self.print(__doc__.split("grammar:")[1].strip("\n") if __doc__ else "")
        elif keyword.startswith("/"):
            await self._command(line)
        elif keyword == "press":
            await self._press(words[1:])
        elif keyword == "as":
            self._switch_user(words[1:])
        elif keyword == "scenario":
            await self._scenario(words[1:])
        else:
            self.print(f"Unknown console command `{words[0]}`; type `help`.")
        return True

    async def _command(self, line: str) -> None:
        command, _, text = line.partition(" ")
        if command != "/meridian":
            self.print(f"Only /meridian is installed here, not {command}.")
            return
        delivery = await self.sandbox.driver.command(text, user_id=self.user, channel_id=OPS_CHANNEL)
        if delivery.status not in (200, None):
            self.print(f"The bot answered HTTP {delivery.status}: {delivery.body}")
        elif delivery.body:
            reply = delivery.json()
            if isinstance(reply, dict) and reply.get("text"):
                self.print("── (only visible to you) ──")
                self.print(mrkdwn_to_text(reply["text"]))
        await self._settle()

    async def _press(self, arguments: list[str]) -> None:
        if len(arguments) != 1 or not arguments[0].isdigit() or int(arguments[0]) not in self._button_targets:
            self.print("Usage: press N, where N is a button number shown in brackets.")
            return
        channel, ts, action_id = self._button_targets[int(arguments[0])]
        message = self.sandbox.slack.message(channel, ts)
        try:
            await self.sandbox.driver.press(message, user_id=self.user, action_id=action_id)
        except LookupError:
            self.print("That button is no longer on its message.")
            return
        await self._settle()

    def _switch_user(self, arguments: list[str]) -> None:
        names = self.sandbox.users.names
        if len(arguments) != 1:
            self.print("Usage: as USER, where USER is one of " + ", ".join(names) + ", or a Slack user id.")
            return
        wanted = arguments[0]
        self.user = names.get(wanted.lower(), wanted)
        role = next((name for name, user_id in names.items() if user_id == self.user), "no sandbox role")
        self.print(f"Now acting as {self.user} ({role}).")

    async def _scenario(self, arguments: list[str]) -> None:
        if len(arguments) != 1 or arguments[0] not in SCENARIOS:
            if arguments:
                self.print(f"Unknown scenario `{' '.join(arguments)}`.")
            self.print("Scenarios:")
            for scenario in SCENARIOS.values():
                self.print(f"  {scenario.name}: {scenario.description}")
            return
        if not self.sandbox.use_fake_targets:
            self.print("Scenarios switch the sandbox's fakes; this console talks to configured targets.")
            return
        scenario = SCENARIOS[arguments[0]]
        await scenario.apply(self.sandbox)
        self.print(f"Scenario {scenario.name}: {scenario.description}.")

    async def _settle(self) -> None:
        """In a script, wait for the command's run before reading the next line."""
        if not self.interactive:
            await self.sandbox.runtime.engine.wait_idle()


async def _database_available(url: str) -> bool:
    try:
        connection = await asyncpg.connect(url, timeout=DATABASE_PROBE_SECONDS)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def _seeded_database(server_url: str) -> str:
    """Return the URL of the seeded sandbox database, or `server_url` when it cannot be prepared."""
    try:
        return await prepare_sandbox_database(server_url, timeout=DATABASE_PROBE_SECONDS)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        logger.warning("Could not prepare the sandbox database %s, using %s instead: %s", SANDBOX_DATABASE, server_url, error)
        return server_url


async def run_console(settings: Settings, *, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    interactive = stdin.isatty()
    configure_logging(log_format="text", level="WARNING")

    configured = {name: getattr(settings, name) for name in _TARGET_SETTINGS if getattr(settings, name)}
    if configured:
        sandbox = Sandbox(
            database_url=settings.database_url.get_secret_value() if settings.database_url else None,
            use_fake_targets=False,
            settings_overrides=configured | {"metrics_token": settings.metrics_token},
        )
        banner = "Targets from your settings: " + ", ".join(name.upper() for name in configured) + "."
    else:
        database_url = SANDBOX_DATABASE_URL if await _database_available(SANDBOX_DATABASE_URL) else None
        if database_url is not None:
            database_url = await _seeded_database(database_url)
        sandbox = Sandbox(database_url=database_url)
        if database_url is None:
            database_note = "No PostgreSQL server answered on 127.0.0.1:5432, so the database is not configured."
        else:
            database_name = database_url.rsplit("/", 1)[-1]
            database_note = f"The database is {database_name} on the local PostgreSQL server."
        banner = (
            "No targets are configured, so this is the local sandbox: Slack, the Meridian API, the frontend, "
            "the Ethereum RPC nodes and the Kubernetes API are simulated on 127.0.0.1. " + database_note
        )

    await sandbox.start()
    console = Console(sandbox, out=out, interactive=interactive)
    unsubscribe = sandbox.slack.subscribe(console.show)
    console.print("meridian-bot shell. " + banner)
    console.print(f"Acting as {console.user} (operator) in #ops. Type `help` for the console's commands, `/meridian help` for the bot's.")
    try:
        while True:
            if interactive:
                print("meridian> ", end="", file=out, flush=True)
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                break
            if not await console.handle(line.strip()):
                break
        await sandbox.runtime.engine.wait_idle()
    finally:
        unsubscribe()
        await sandbox.stop()
    return 0
