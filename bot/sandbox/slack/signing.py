"""Slack request signing (version v0), as Slack computes it for every request it sends to an app."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_VERSION = "v0"


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """Return the `X-Slack-Signature` value for a request body sent at `timestamp` (Unix seconds).

    The signed base string is `v0:{timestamp}:{raw body}` and the digest is HMAC-SHA256 in hex.
    """
    raw_body = body.encode("utf-8") if isinstance(body, str) else body
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + raw_body
    digest = hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"
