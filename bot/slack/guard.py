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
    """Return why a verified body cannot be handled (a payload that is not a JSON object)."""
    text = body.decode("utf-8")
    if content_type.startswith("application/json"):
        return None if _is_json_object(text) else Rejection(400, "body is not a JSON object")

    form = parse_qs(text, keep_blank_values=True)
    if "payload" in form and not _is_json_object(form["payload"][0]):
        return Rejection(400, "payload is not a JSON object")
    return None


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
