"""Text and blocks of a message request: parsing and validation shared by every way to post."""

from __future__ import annotations

import json
from typing import Any

from bot.sandbox.slack.limits import check_blocks
from bot.sandbox.slack.records import Block
from bot.sandbox.slack.replies import ApiError


def read_blocks(params: dict[str, Any], *, status: int = 200) -> list[Block] | None:
    """Return the `blocks` parameter as a list, or None when it is absent.

    A JSON body carries blocks as a list and a form body as a JSON string, so both are accepted.
    """
    raw = params.get("blocks")
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ApiError("invalid_blocks_format", status=status) from None
    _require_valid_blocks(raw, status=status)
    return raw


def _require_valid_blocks(blocks: object, *, status: int) -> None:
    rejection = check_blocks(blocks)
    if rejection is None:
        return
    body = rejection.to_body()
    del body["ok"], body["error"]
    raise ApiError(rejection.error, status=status, **body)


def read_text(params: dict[str, Any]) -> str | None:
    text = params.get("text")
    if text is None:
        return None
    return str(text)
