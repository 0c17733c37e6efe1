"""`rotate jwt-secret|session-token-salt|api-key-salt`: new values, restart, watch, notice, no leaks."""

from __future__ import annotations

import string
import types
from datetime import UTC, datetime, timedelta

import pytest

from bot.clients.kubernetes.rollout import RESTARTED_AT_ANNOTATION
from bot.sandbox.environment import INCIDENT_CHANNEL, Sandbox
from bot.sandbox.fakes.kubernetes.logs import AUTH_ERRORS_BY_KEY
from bot.sandbox.fakes.kubernetes.server import DEFAULT_SECRET_VALUES, SECRET_NAME
from bot.sandbox.text_render import message_text
from procedures import rotate, rotate_common
from tests.kubernetes.helpers import approve, card_text, press, run_state, thread_text
from tests.secrets.conftest import assert_never_written

ROTATIONS = [
    ("jwt-secret", "JWT_SECRET", 43, string.ascii_letters + string.digits + "-_"),
    ("session-token-salt", "SESSION_TOKEN_SALT", 64, string.hexdigits.lower()),
]


async def approve_twice(kube: Sandbox, outcome) -> None:  # noqa: ANN001
    await approve(kube, outcome)
    await press(kube, outcome, user=kube.users.second_approver)


def restarted_at(kube: Sandbox) -> str | None:
    return kube.kubernetes.deployment.spec["template"]["metadata"].get("annotations", {}).get(RESTARTED_AT_ANNOTATION)


@pytest.mark.parametrize(("command", "key", "length", "alphabet"), ROTATIONS)
async def test_rotation_writes_restarts_watches(
    kube: Sandbox, caplog: pytest.LogCaptureFixture, command: str, key: str, length: int, alphabet: str
) -> None:
    generation = kube.kubernetes.deployment.document["metadata"]["generation"]
    outcome = await kube.command(f"rotate {command}")

    assert await run_state(kube) == "waiting_for_approval"
    text = card_text(kube, outcome)
    assert "2 approvals" in text
    assert "Impact:" in text
    assert kube.kubernetes.secret_values()[key] == DEFAULT_SECRET_VALUES[key]

    await approve_twice(kube, outcome)

    assert await run_state(kube) == "completed", card_text(kube, outcome)
    new_value = kube.kubernetes.secret_values()[key]
    assert new_value != DEFAULT_SECRET_VALUES[key]
    assert len(new_value) == length
    assert set(new_value) <= set(alphabet)
    others = {name: value for name, value in kube.kubernetes.secret_values().items() if name != key}
    assert others == {name: value for name, value in DEFAULT_SECRET_VALUES.items() if name != key}

    assert restarted_at(kube) is not None
    assert kube.kubernetes.deployment.document["metadata"]["generation"] == generation + 1

    text = card_text(kube, outcome)
    assert "authentication errors in the logs of 3 pods since the rotation" in text
    assert "0 authentication errors" not in text
    assert "/health ok in" in text
    assert AUTH_ERRORS_BY_KEY[key][1] in thread_text(kube, outcome)

    await assert_never_written(kube, caplog, [new_value, *DEFAULT_SECRET_VALUES.values()])


async def test_rotation_with_canary_value(kube: Sandbox, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "canary-generated-value-" + "7" * 41
    # The generator's own code still runs (and registers the value); only its random source is fixed.
    monkeypatch.setattr(
        rotate_common,
        "secrets",
        types.SimpleNamespace(token_hex=lambda count: canary, token_urlsafe=lambda count: canary),
    )
    outcome = await kube.command("rotate session-token-salt")
    await approve_twice(kube, outcome)

    assert await run_state(kube) == "completed", card_text(kube, outcome)
    assert kube.kubernetes.secret_values()["SESSION_TOKEN_SALT"] == canary
    await assert_never_written(kube, caplog, [canary])


async def test_rotation_denied_changes_nothing(kube: Sandbox) -> None:
    outcome = await kube.command("rotate jwt-secret")
    await approve(kube, outcome)

    assert await run_state(kube) == "waiting_for_approval"
    assert kube.kubernetes.secret_values() == DEFAULT_SECRET_VALUES
    await press(kube, outcome, user=kube.users.second_approver, action="deny")

    assert await run_state(kube) == "denied"
    assert kube.kubernetes.secret_values() == DEFAULT_SECRET_VALUES
    assert restarted_at(kube) is None


async def test_rotation_stops_when_secret_patch_fails(kube: Sandbox) -> None:
    outcome = await kube.command("rotate jwt-secret")
    kube.kubernetes.fail_next(409, verb="patch", resource="secrets")
    await approve_twice(kube, outcome)

    assert await run_state(kube) == "failed"
    text = card_text(kube, outcome)
    assert "HTTP 409" in text
    assert "skipped because an earlier step failed" in text
    assert restarted_at(kube) is None
    assert kube.kubernetes.secret_values() == DEFAULT_SECRET_VALUES


async def test_missing_key_refused(kube: Sandbox) -> None:
    values = {key: value for key, value in DEFAULT_SECRET_VALUES.items() if key != "JWT_SECRET"}
    kube.kubernetes.set_secret_values(SECRET_NAME, values)

    outcome = await kube.command("rotate jwt-secret")

    assert await run_state(kube) == "failed"
    assert f"Secret meridian/{SECRET_NAME} has no JWT_SECRET" in card_text(kube, outcome)


# API_KEY_SALT: the agent operators' notice


def notice_posted_at(kube: Sandbox) -> str | None:
    return kube.kubernetes.secrets[SECRET_NAME]["metadata"].get("annotations", {}).get(rotate.NOTICE_ANNOTATION)


async def test_api_key_salt_posts_notice_first(kube: Sandbox) -> None:
    outcome = await kube.command("rotate api-key-salt")

    assert await run_state(kube) == "failed"
    text = card_text(kube, outcome)
    assert "Notice to agent operators: API_KEY_SALT of the Meridian API will be rotated no earlier than" in text
    assert "nothing was rotated" in text
    assert "Approve" not in text
    assert notice_posted_at(kube) is not None
    incident = [message_text(m) for m in kube.slack.messages_in(INCIDENT_CHANNEL)]
    assert any("Notice to agent operators" in line for line in incident)
    assert kube.kubernetes.secret_values()["API_KEY_SALT"] == DEFAULT_SECRET_VALUES["API_KEY_SALT"]


async def test_api_key_salt_refused_within_notice(kube: Sandbox) -> None:
    await kube.command("rotate api-key-salt")
    posted = notice_posted_at(kube)

    outcome = await kube.command("rotate api-key-salt")

    assert await run_state(kube) == "failed"
    text = card_text(kube, outcome)
    assert "The notice to agent operators was posted" in text
    assert "--override-notice" in text
    assert notice_posted_at(kube) == posted
    assert kube.kubernetes.secret_values()["API_KEY_SALT"] == DEFAULT_SECRET_VALUES["API_KEY_SALT"]


async def test_api_key_salt_after_notice_period(kube: Sandbox) -> None:
    long_ago = (datetime.now(UTC) - timedelta(hours=25)).isoformat()
    kube.kubernetes.set_secret_values(SECRET_NAME, DEFAULT_SECRET_VALUES, annotations={rotate.NOTICE_ANNOTATION: long_ago})

    outcome = await kube.command("rotate api-key-salt")
    assert await run_state(kube) == "waiting_for_approval", card_text(kube, outcome)
    await approve_twice(kube, outcome)

    assert await run_state(kube) == "completed", card_text(kube, outcome)
    assert len(kube.kubernetes.secret_values()["API_KEY_SALT"]) == 64
    assert notice_posted_at(kube) is None


async def test_override_needs_admin(kube: Sandbox) -> None:
    await kube.command("rotate api-key-salt")

    outcome = await kube.command('rotate api-key-salt --override-notice "key leaked"')

    assert await run_state(kube) == "failed"
    assert "Only an admin can override the notice period" in card_text(kube, outcome)
    assert kube.kubernetes.secret_values()["API_KEY_SALT"] == DEFAULT_SECRET_VALUES["API_KEY_SALT"]


async def test_admin_override_with_reason(kube: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    await kube.command("rotate api-key-salt")

    outcome = await kube.command('rotate api-key-salt --override-notice "key leaked in a public repo"', user=kube.users.admin)

    assert await run_state(kube) == "waiting_for_approval", card_text(kube, outcome)
    text = card_text(kube, outcome)
    assert "overridden by admin U0ADMIN" in text
    assert "key leaked in a public repo" in text
    await approve_twice(kube, outcome)

    assert await run_state(kube) == "completed", card_text(kube, outcome)
    new_value = kube.kubernetes.secret_values()["API_KEY_SALT"]
    assert new_value != DEFAULT_SECRET_VALUES["API_KEY_SALT"]
    assert AUTH_ERRORS_BY_KEY["API_KEY_SALT"][1] in thread_text(kube, outcome)
    await assert_never_written(kube, caplog, [new_value, *DEFAULT_SECRET_VALUES.values()])
