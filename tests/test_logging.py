"""JSON logs: one object per line with correlation and run ids, and no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.observability.logs import configure_logging
from bot.observability.redaction import Redactor, redactor
from bot.sandbox.environment import Sandbox


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    configure_logging(log_format="json", level="INFO", stream=stream)
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


async def test_json_lines_carry_ids(no_database_sandbox: Sandbox, json_log: io.StringIO) -> None:
    await no_database_sandbox.command("health")

    entries = [json.loads(line) for line in json_log.getvalue().splitlines()]
    run_lines = [entry for entry in entries if entry["run_id"]]
    assert run_lines, "the run's log lines carry its id"
    for key in ("timestamp", "level", "logger", "message", "correlation_id", "run_id"):
        assert key in run_lines[0]
    run_id = run_lines[0]["run_id"]
    correlation_ids = {entry["correlation_id"] for entry in run_lines if entry["run_id"] == run_id}
    assert len(correlation_ids) == 1
    assert None not in correlation_ids
    assert any("requested by U0OPERATOR" in entry["message"] for entry in run_lines)


def test_json_log_scrubs_secrets(json_log: io.StringIO) -> None:
    redactor.register("canary-secret-value")

    logging.getLogger("test").warning("connecting with canary-secret-value to postgresql://bot:hunter22@db/x")

    line = json_log.getvalue()
    assert "canary-secret-value" not in line
    assert "hunter22" not in line
    assert "postgresql://bot:***@db/x" in line


def test_redactor_prefers_longest() -> None:
    local = Redactor()
    local.register("abcdef")
    local.register("abcdefghij")

    assert local.scrub("x abcdefghij y abcdef") == "x *** y ***"


def test_redactor_ignores_short_values() -> None:
    local = Redactor()
    local.register("abc")

    assert local.scrub("abc") == "abc"
