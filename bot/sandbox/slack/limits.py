"""Block Kit and message size limits, checked the way Slack checks them before it stores a message.

The per-field limits come from the Block Kit reference on docs.slack.dev. Error strings copy the
form Slack returns, for example `must be less than 3001 characters [json-pointer:/blocks/0/text/text]`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTION_ID = 255
MAX_ACTIONS_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_HEADER_TEXT = 150

# NOTE: Slack does not document this total. It is an estimate from observed
# `msg_blocks_too_long` errors, counting the `text` of every text object in the message.
MAX_TOTAL_BLOCK_TEXT = 13_200

# chat.postMessage truncates longer text, and chat.update rejects it with `msg_too_long`.
MAX_MESSAGE_TEXT = 40_000


@dataclass(frozen=True)
class BlockRejection:
    """Reason Slack rejects a message's blocks: the error code and one message per problem."""

    error: str
    errors: tuple[str, ...] = ()

    def to_body(self) -> dict[str, Any]:
        """Build the Web API error body, with `errors` and `[ERROR]` lines when there are any."""
        body: dict[str, Any] = {"ok": False, "error": self.error}
        if self.errors:
            body["errors"] = list(self.errors)
            body["response_metadata"] = {"messages": [f"[ERROR] {line}" for line in self.errors]}
        return body


def check_blocks(blocks: object) -> BlockRejection | None:
    """Return why Slack would reject `blocks`, or None when they are within every limit."""
    if not isinstance(blocks, list):
        return BlockRejection("invalid_blocks_format", ("must provide an array [json-pointer:/blocks]",))

    errors: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        errors.append(_too_many(MAX_BLOCKS, "/blocks"))
    for index, block in enumerate(blocks):
        errors.extend(_check_block(block, f"/blocks/{index}"))
    if errors:
        return BlockRejection("invalid_blocks", tuple(errors))

    total_text = sum(len(text) for text in _text_values(blocks))
    if total_text > MAX_TOTAL_BLOCK_TEXT:
        return BlockRejection("msg_blocks_too_long")
    return None


def _check_block(block: object, pointer: str) -> Iterator[str]:
    if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
        yield f"missing required field: type [json-pointer:{pointer}]"
        return

    block_type = block["type"]
    if block_type == "section":
        yield from _check_text(block.get("text"), MAX_SECTION_TEXT, f"{pointer}/text")
        fields = block.get("fields") or []
        if len(fields) > MAX_SECTION_FIELDS:
            yield _too_many(MAX_SECTION_FIELDS, f"{pointer}/fields")
        for index, field in enumerate(fields):
            yield from _check_text(field, MAX_FIELD_TEXT, f"{pointer}/fields/{index}")
        if isinstance(block.get("accessory"), Mapping):
            yield from _check_element(block["accessory"], f"{pointer}/accessory")
    elif block_type == "header":
        yield from _check_text(block.get("text"), MAX_HEADER_TEXT, f"{pointer}/text")
    elif block_type == "actions":
        elements = block.get("elements") or []
        if len(elements) > MAX_ACTIONS_ELEMENTS:
            yield _too_many(MAX_ACTIONS_ELEMENTS, f"{pointer}/elements")
        for index, element in enumerate(elements):
            yield from _check_element(element, f"{pointer}/elements/{index}")
    elif block_type == "context":
        elements = block.get("elements") or []
        if len(elements) > MAX_CONTEXT_ELEMENTS:
            yield _too_many(MAX_CONTEXT_ELEMENTS, f"{pointer}/elements")


def _check_element(element: object, pointer: str) -> Iterator[str]:
    if not isinstance(element, Mapping):
        yield f"missing required field: type [json-pointer:{pointer}]"
        return

    action_id = element.get("action_id")
    if isinstance(action_id, str) and len(action_id) > MAX_ACTION_ID:
        yield _too_long(MAX_ACTION_ID, f"{pointer}/action_id")
    if element.get("type") == "button":
        yield from _check_text(element.get("text"), MAX_BUTTON_TEXT, f"{pointer}/text")
        value = element.get("value")
        if isinstance(value, str) and len(value) > MAX_BUTTON_VALUE:
            yield _too_long(MAX_BUTTON_VALUE, f"{pointer}/value")


def _check_text(text_object: object, limit: int, pointer: str) -> Iterator[str]:
    if not isinstance(text_object, Mapping):
        return
    text = text_object.get("text")
    if isinstance(text, str) and len(text) > limit:
        yield _too_long(limit, f"{pointer}/text")


def _text_values(node: object) -> Iterator[str]:
    """Yield the `text` string of every text object (plain_text or mrkdwn) nested in `node`."""
    if isinstance(node, Mapping):
        if node.get("type") in ("plain_text", "mrkdwn") and isinstance(node.get("text"), str):
            yield node["text"]
            return
        for value in node.values():
            yield from _text_values(value)
    elif isinstance(node, list):
        for item in node:
            yield from _text_values(item)


def _too_long(limit: int, pointer: str) -> str:
    return f"must be less than {limit + 1} characters [json-pointer:{pointer}]"


def _too_many(limit: int, pointer: str) -> str:
    return f"no more than {limit} items allowed [json-pointer:{pointer}]"
