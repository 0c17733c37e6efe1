"""Fixtures for the rotations: the sandbox with its Kubernetes fake enforcing deploy/role.yaml,
and a scan of everything the bot wrote (Slack, the log, the audit log, stored runs)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import timedelta

import pytest

from bot.sandbox.environment import Sandbox
from tests.kubernetes.conftest import fast_rollouts, role_rules

WATCH = timedelta(milliseconds=100)


@pytest.fixture
async def kube(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Sandbox]:
    caplog.set_level(logging.DEBUG)
    sandbox = Sandbox(
        database_url=None,
        target_timeout=2.0,
        card_interval=0.02,
        on_bot_start=[fast_rollouts],
        settings_overrides={"rotation_watch": WATCH},
    )
    async with sandbox:
        sandbox.kubernetes.enforce(role_rules())
        yield sandbox


async def everything_written(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """Return, by place, all text the bot wrote: Slack messages and their versions, files,
    Web API call parameters, log records with their arguments and tracebacks, audit entries
    and stored runs."""
    slack: list[str] = []
    for message in sandbox.slack.messages:
        slack.append(message.text)
        slack.append(json.dumps(message.blocks, default=str))
        for version in message.versions:
            slack.append(version.text)
            slack.append(json.dumps(version.blocks, default=str))
    for uploaded in sandbox.slack.files:
        slack.append(uploaded.content.decode("utf-8", errors="replace"))
        slack.append(f"{uploaded.title} {uploaded.initial_comment}")
    for call in sandbox.slack.calls:
        slack.append(json.dumps(call.params, default=str))

    logs = [caplog.text]
    for record in caplog.records:
        logs.append(record.getMessage())
        logs.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            logs.append(repr(record.exc_info[1]))

    store = sandbox.runtime.store
    audit = [json.dumps(asdict(entry), default=str) for entry in await store.list_audit(limit=1000)]
    runs = [json.dumps(run.to_json(), default=str) for run in await store.list_runs(limit=1000)]
    return {"slack": "\n".join(slack), "log": "\n".join(logs), "audit": "\n".join(audit), "runs": "\n".join(runs)}


async def assert_never_written(sandbox: Sandbox, caplog: pytest.LogCaptureFixture, values: list[str]) -> None:
    written = await everything_written(sandbox, caplog)
    for place, text in written.items():
        assert text, f"nothing was collected from {place}"
    for value in values:
        for place, text in written.items():
            assert value not in text, f"a secret value appears in {place}"
