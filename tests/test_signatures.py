"""Request signatures: Slack's published vector verifies, and every bad request gets 401."""

from __future__ import annotations

import time

import pytest

from bot.sandbox.environment import SIGNING_SECRET, Sandbox
from bot.sandbox.slack.signing import sign
from bot.slack.guard import check_signature

# Slack's published example (docs "Verifying requests from Slack").
VECTOR_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
VECTOR_TIMESTAMP = "1531420618"
VECTOR_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
VECTOR_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_published_vector_verifies() -> None:
    rejection = check_signature(
        body=VECTOR_BODY,
        timestamp=VECTOR_TIMESTAMP,
        signature=VECTOR_SIGNATURE,
        signing_secret=VECTOR_SECRET,
        clock=lambda: 1531420618 + 10,
    )
    assert rejection is None


def test_published_vector_stale_later() -> None:
    rejection = check_signature(
        body=VECTOR_BODY,
        timestamp=VECTOR_TIMESTAMP,
        signature=VECTOR_SIGNATURE,
        signing_secret=VECTOR_SECRET,
        clock=lambda: 1531420618 + 301,
    )
    assert rejection is not None
    assert rejection.reason == "stale timestamp"


def command_body(text: str = "health") -> bytes:
    from urllib.parse import urlencode

    return urlencode(
        {
            "team_id": "T0SANDBOX",
            "channel_id": "C0OPS",
            "user_id": "U0OPERATOR",
            "command": "/meridian",
            "text": text,
            "response_url": "http://127.0.0.1:1/hooks/unused",
            "trigger_id": f"trigger-{time.time_ns()}",
        }
    ).encode()


def signed(body: bytes, *, timestamp: int | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(secret, stamp, body),
    }


def bad_requests() -> list[tuple[str, bytes, dict[str, str]]]:
    body = command_body()
    now = int(time.time())
    return [
        ("wrong signature", body, signed(body, secret="not-the-secret")),
        ("stale timestamp", body, signed(body, timestamp=now - 301)),
        ("non-numeric timestamp", body, {**signed(body), "X-Slack-Request-Timestamp": "12ab"}),
        ("non-ASCII signature", body, {**signed(body), "X-Slack-Signature": "v0=" + "é" * 64}),
        ("body not UTF-8", b"text=\xff\xfe&command=%2Fmeridian", signed(b"text=\xff\xfe&command=%2Fmeridian")),
        ("missing headers", body, {"Content-Type": "application/x-www-form-urlencoded"}),
    ]


@pytest.mark.parametrize(("case", "body", "headers"), bad_requests(), ids=[case for case, _, _ in bad_requests()])
async def test_bad_request_gets_401(no_database_sandbox: Sandbox, case: str, body: bytes, headers: dict[str, str]) -> None:
    delivery = await no_database_sandbox.driver.post_raw(body, headers)

    assert delivery.status == 401, case
    await no_database_sandbox.runtime.engine.wait_idle()
    assert [call.method for call in no_database_sandbox.slack.calls] == ["auth.test"], "only the start-up call"
    assert await no_database_sandbox.runtime.store.list_runs() == []


async def test_emoji_body_verifies(no_database_sandbox: Sandbox) -> None:
    body = command_body("health *now* 🚨")
    delivery = await no_database_sandbox.driver.post_raw(body, signed(body))

    assert delivery.status == 200
    assert "Unexpected argument `*now*`" in delivery.json()["text"]


async def test_signed_malformed_payload_gets_400(no_database_sandbox: Sandbox) -> None:
    body = b"payload=%7Bnot-json"
    delivery = await no_database_sandbox.driver.post_raw(body, signed(body))

    assert delivery.status == 400


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("actions not a list", b'payload=' + __import__("urllib.parse").parse.quote(
            '{"type":"block_actions","user":{"id":"U0APPROVER1"},"actions":"x"}').encode()),
        ("no user", b'payload=' + __import__("urllib.parse").parse.quote(
            '{"type":"block_actions","actions":[{"action_id":"run.approve"}]}').encode()),
        ("deeply nested", b"payload=" + b"%5B" * 100_000 + b"%5D" * 100_000),
        ("command without user", b"command=%2Fmeridian&text=health&channel_id=C0OPS&team_id=T0SANDBOX"),
    ],
)
async def test_signed_malformed_body_gets_400(no_database_sandbox: Sandbox, case: str, body: bytes) -> None:
    delivery = await no_database_sandbox.driver.post_raw(body, signed(body))

    assert delivery.status == 400, case
    assert await no_database_sandbox.runtime.store.list_runs() == []
