"""Checks a request to /slack/events before Bolt sees it.

slack_sdk's verifier answers a non-numeric timestamp, a non-ASCII signature or a body that is
not UTF-8 with an exception, which Bolt turns into HTTP 500 (slack-bolt 1.30.0, slack-sdk
3.48.0). Every such request is rejected here with 401, and a signed but malformed body with 400.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

REPLAY_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class Rejection:
    status: int
    reason: str


def check_signature(
    *,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    signing_secret: str,
    clock: Callable[[], float] = time.time,
) -> Rejection | None:
    """Return why a request's signature is not acceptable, or None when it verifies."""
    if not timestamp or not signature:
        return Rejection(401, "missing signature headers")
    if not timestamp.isascii() or not timestamp.isdigit():
        return Rejection(401, "non-numeric timestamp")
    if abs(clock() - int(timestamp)) > REPLAY_WINDOW_SECONDS:
        return Rejection(401, "stale timestamp")
    if not signature.isascii() or not signature.startswith("v0="):
        return Rejection(401, "malformed signature")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection(401, "body is not UTF-8")

    base = f"v0:{timestamp}:{text}".encode()
    expected = "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return Rejection(401, "wrong signature")
    return None


def check_body(*, body: bytes, content_type: str) -> Rejection | None:
    """Return why a verified body cannot be handled, or None when its shape is what Slack sends.

    Signed bodies come from Slack, or from someone holding the signing secret; either way a
    malformed one gets 400 here instead of an exception deeper in Bolt or a listener.
    """
    text = body.decode("utf-8")
    if content_type.startswith("application/json"):
        return None if isinstance(_json(text), dict) else Rejection(400, "body is not a JSON object")

    form = parse_qs(text, keep_blank_values=True)
    if "payload" in form:
        payload = _json(form["payload"][0])
        if not isinstance(payload, dict):
            return Rejection(400, "payload is not a JSON object")
        if payload.get("type") == "block_actions" and not _is_block_actions(payload):
            return Rejection(400, "block_actions payload without a user id or a list of actions")
        return None
    if "command" in form:
        fields_present = all(form.get(name, [""])[0] for name in ("user_id", "channel_id", "team_id"))
        if not fields_present:
            return Rejection(400, "slash command without user_id, channel_id or team_id")
    return None


# Slack's payloads nest about ten levels deep. Far deeper nesting is refused before parsing,
# because CPython's json parser crashed the process on 100,000 nested brackets (Python 3.11.7).
MAX_JSON_DEPTH = 64


def _json(text: str) -> object:
    if _nesting_depth(text) > MAX_JSON_DEPTH:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _nesting_depth(text: str) -> int:
    """Return the deepest nesting of brackets and braces outside JSON strings."""
    depth = deepest = 0
    in_string = escaped = False
    for character in text:
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif character in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
        elif character in "]}":
            depth -= 1
    return deepest


def _is_block_actions(payload: dict[str, object]) -> bool:
    user = payload.get("user")
    actions = payload.get("actions")
    has_user = isinstance(user, dict) and isinstance(user.get("id"), str)
    has_actions = isinstance(actions, list) and bool(actions) and all(
        isinstance(action, dict) and isinstance(action.get("action_id"), str) for action in actions
    )
    return has_user and has_actions
