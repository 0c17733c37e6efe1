"""Settings: one clear line per problem, naming the variable and the fix; secrets never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in list(os.environ):
        if name.startswith(("SLACK_", "MERIDIAN_", "DATABASE_", "ETHEREUM_", "BOT_", "APPROVAL_", "VIEWERS", "OPERATORS", "APPROVERS", "ADMINS", "RPO", "LOG_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env file here


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("APPROVAL_TTL", "5x", "APPROVAL_TTL is invalid (`5x` is not a duration): write a duration such as 15m."),
        ("VIEWERS", "U1,bob", "VIEWERS is invalid (`bob` is not a Slack user id"),
        ("DATABASE_URL", "mysql://u:pw@h/db", "DATABASE_URL is invalid (must be a postgresql:// URL)"),
        ("BOT_STATE_URL", "redis://x", "BOT_STATE_URL is invalid (must be sqlite:///PATH or postgresql://USER@HOST/DATABASE)"),
        ("BACKUP_VERIFY_SCHEDULE", "every sunday", "BACKUP_VERIFY_SCHEDULE is invalid (`every sunday` is not a five-field cron"),
        ("PORT", "http", "PORT is invalid"),
        ("LOG_FORMAT", "yaml", "LOG_FORMAT is invalid"),
        ("RPO", "0s", "RPO is invalid (must be longer than zero)"),
    ],
)
def test_invalid_setting_one_line(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as raised:
        load_settings("shell")

    assert len(raised.value.lines) == 1
    assert raised.value.lines[0].startswith(expected)


def test_missing_for_serve_names_each() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings("serve")

    assert raised.value.lines == [
        "SLACK_BOT_TOKEN is missing (needed by `meridian-bot serve`): set it to the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions page.",
        "SLACK_SIGNING_SECRET is missing (needed by `meridian-bot serve`): set it to the Signing Secret from the app's Basic Information page.",
    ]


def test_socket_needs_app_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")

    with pytest.raises(SettingsError) as raised:
        load_settings("socket")

    assert [line.split(" ")[0] for line in raised.value.lines] == ["SLACK_APP_TOKEN"]


def test_defaults_and_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPROVERS", "U1, U2,S3")
    monkeypatch.setenv("APPROVAL_TTL", "1h30m")

    settings = load_settings("shell")

    assert settings.approvers == ["U1", "U2", "S3"]
    assert settings.approval_ttl == timedelta(minutes=90)
    assert settings.kube_namespace == "meridian"
    assert settings.kube_deployment == "meridian-api"
    assert settings.kube_secret_name == "meridian-secrets"
    assert settings.rpo == timedelta(hours=1)
    assert settings.slack_api_url == "https://slack.com/api/"


def test_secrets_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "canary-signing-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot:canary-password@db/meridian")

    settings = Settings()

    assert "canary" not in repr(settings)
    assert "canary" not in str(settings.model_dump())


def test_cli_exits_with_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLACK_")}
    env["SLACK_SIGNING_SECRET"] = "canary-signing-secret"
    env["APPROVAL_TTL"] = "soon"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])

    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve"], capture_output=True, text=True, env=env, timeout=30, check=False
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["meridian-bot: APPROVAL_TTL is invalid (`soon` is not a duration): write a duration such as 15m."]
    assert "canary" not in result.stderr
    assert "Traceback" not in result.stderr
