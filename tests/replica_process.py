"""One bot replica in its own process, for tests that run several replicas on one state store.

Run it from the repository root as `python -m tests.replica_process` (or `python
tests/replica_process.py`). It reads the bot's usual settings from the environment
(SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_API_URL, BOT_STATE_URL, INCIDENT_CHANNEL,
OPERATORS, APPROVERS, ADMINS, ...) and these variables of its own:

- REPLICA_ID: the engine's replica id (default: a random one);
- REPLICA_LEASE_SECONDS, REPLICA_TICK_SECONDS: the `EngineTiming`;
- TEST_SIDE_EFFECT_FILE: where the action step of the test procedures appends its executions.

It serves the Slack endpoints on 127.0.0.1 on a port the OS picks and prints `PORT <number>` on
one line of stdout once they accept requests. SIGTERM or SIGINT stops it cleanly, as does the end
of its standard input, so a replica does not outlive a test process that died. Logs go to stderr.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

if not __package__:
    # Run as a script: make `bot` and `tests` importable from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import ValidationError

from bot.config import Settings
from bot.engine.runner import EngineTiming
from bot.modes import start_http
from bot.observability.logs import configure_logging
from bot.runtime import Runtime
from tests import approval_procedures

logger = logging.getLogger("tests.replica_process")

EXIT_INVALID_CONFIGURATION = 2


class ConfigurationError(Exception):
    """An environment variable is missing or invalid. The message names it and how to fix it."""


def timing_from_environment() -> EngineTiming:
    defaults = EngineTiming()
    values: dict[str, float] = {}
    for variable, field_name, default in (
        ("REPLICA_LEASE_SECONDS", "lease_seconds", defaults.lease_seconds),
        ("REPLICA_TICK_SECONDS", "tick_seconds", defaults.tick_seconds),
    ):
        raw = os.environ.get(variable, "")
        try:
            value = float(raw) if raw else default
        except ValueError:
            raise ConfigurationError(f"{variable}={raw!r} is invalid: write a number of seconds such as 1.0.") from None
        if value <= 0:
            raise ConfigurationError(f"{variable}={raw!r} must be more than zero seconds.")
        values[field_name] = value
    return EngineTiming(**values)


def require_loopback(variable: str, url: str) -> None:
    """Raise ConfigurationError unless `url` points at 127.0.0.1, ::1 or localhost."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        is_loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback:
        raise ConfigurationError(f"{variable} must point at a loopback address in tests, got host {host!r}.")


def settings_from_environment() -> Settings:
    # Only the environment counts: a developer's .env file must not change a test replica.
    settings = Settings(_env_file=None)
    if "SLACK_API_URL" not in os.environ or "BOT_STATE_URL" not in os.environ:
        raise ConfigurationError("SLACK_API_URL and BOT_STATE_URL must be set, to the test's fake Slack and store.")
    require_loopback("SLACK_API_URL", settings.slack_api_url)
    require_loopback("PAGERDUTY_EVENTS_URL", settings.pagerduty_events_url)
    if urlsplit(settings.bot_state_url).scheme != "sqlite":
        require_loopback("BOT_STATE_URL", settings.bot_state_url)
    return settings


def stop_at_end_of_input(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set `stop` once standard input reaches end of file, read in a daemon thread."""

    def read_until_end() -> None:
        # sys.stdin.buffer.read holds the buffer's lock while it blocks, and the interpreter
        # aborts at exit when a daemon thread still holds it. os.read takes no such lock.
        try:
            while os.read(sys.stdin.fileno(), 4096):
                pass
        except OSError as error:
            logger.warning("Stopped watching standard input: %s", error)
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read_until_end, name="stdin-watch", daemon=True).start()


async def serve_until_stopped(settings: Settings, timing: EngineTiming, replica_id: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    stop_at_end_of_input(loop, stop)

    runtime = await Runtime.create(settings, timing=timing, replica_id=replica_id)
    try:
        approval_procedures.install(runtime)
        runner, port = await start_http(runtime, host="127.0.0.1", port=0)
        try:
            print(f"PORT {port}", flush=True)
            logger.info("Replica %s serving on 127.0.0.1:%d", runtime.engine.replica_id, port)
            await stop.wait()
            logger.info("Replica %s stopping", runtime.engine.replica_id)
        finally:
            await runner.cleanup()
    finally:
        await runtime.close()


def main() -> int:
    try:
        settings = settings_from_environment()
        timing = timing_from_environment()
    except (ConfigurationError, ValidationError) as error:
        print(f"replica_process: invalid configuration: {error}", file=sys.stderr)
        return EXIT_INVALID_CONFIGURATION
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    asyncio.run(serve_until_stopped(settings, timing, os.environ.get("REPLICA_ID") or None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
