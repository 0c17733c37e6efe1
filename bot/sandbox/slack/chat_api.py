"""Fake chat.* Web API methods."""

from __future__ import annotations

from typing import Any

from bot.sandbox.slack.content import read_blocks, read_text
from bot.sandbox.slack.directory import Channel
from bot.sandbox.slack.limits import MAX_MESSAGE_TEXT
from bot.sandbox.slack.records import Message
from bot.sandbox.slack.replies import ApiError, Params
from bot.sandbox.slack.workspace import Workspace


def post_message(workspace: Workspace, params: Params) -> dict[str, Any]:
    channel = _channel_for_post(workspace, params)
    text, blocks = _text_and_blocks(params)
    thread_ts = params.get("thread_ts") or None

    # Slack truncates chat.postMessage text beyond the limit instead of rejecting it.
    message = workspace.messages.post(
        channel=channel.id,
        text=text[:MAX_MESSAGE_TEXT],
        blocks=blocks,
        user=workspace.bot_user_id,
        source="chat.postMessage",
        thread_ts=thread_ts,
    )
    return {"channel": channel.id, "ts": message.ts, "message": _api_message(workspace, message)}


def post_ephemeral(workspace: Workspace, params: Params) -> dict[str, Any]:
    channel = _channel_for_post(workspace, params)
    user = workspace.directory.user(str(params.get("user") or ""))
    text, blocks = _text_and_blocks(params)

    message = workspace.messages.post(
        channel=channel.id,
        text=text[:MAX_MESSAGE_TEXT],
        blocks=blocks,
        user=workspace.bot_user_id,
        source="chat.postEphemeral",
        thread_ts=params.get("thread_ts") or None,
        visible_to=user.id,
    )
    return {"message_ts": message.ts}


def update(workspace: Workspace, params: Params) -> dict[str, Any]:
    channel = workspace.directory.resolve_channel(str(params.get("channel") or ""))
    message = workspace.live_message(channel.id, str(params.get("ts") or ""))

    # Ephemeral messages can only be changed through a response_url, never with chat.update.
    if message is None or message.is_ephemeral:
        raise ApiError("message_not_found")
    if message.user != workspace.bot_user_id:
        raise ApiError("cant_update_message")

    new_text = read_text(params)
    new_blocks = read_blocks(params)
    if new_text is not None and len(new_text) > MAX_MESSAGE_TEXT:
        raise ApiError("msg_too_long")
    if new_text is None and new_blocks is None:
        raise ApiError("no_text")

    # Slack keeps the old blocks when the request carries none.
    updated = workspace.messages.replace(
        message,
        text=new_text if new_text is not None else message.text,
        blocks=new_blocks if new_blocks is not None else message.blocks,
        replaced_by="chat.update",
    )
    return {
        "channel": channel.id,
        "ts": updated.ts,
        "text": updated.text,
        "message": _api_message(workspace, updated),
    }


def get_permalink(workspace: Workspace, params: Params) -> dict[str, Any]:
    channel = workspace.directory.resolve_channel(str(params.get("channel") or ""))
    message = workspace.live_message(channel.id, str(params.get("message_ts") or ""))
    if message is None:
        raise ApiError("message_not_found")
    return {"channel": channel.id, "permalink": workspace.permalink(message)}


CHAT_METHODS = {
    "chat.postMessage": post_message,
    "chat.postEphemeral": post_ephemeral,
    "chat.update": update,
    "chat.getPermalink": get_permalink,
}


def channel_for_post(workspace: Workspace, reference: str) -> Channel:
    """Return the channel the bot may post to, or raise the error Slack returns for it.

    The bot has chat:write.public, so it can post to any public channel without joining.
    """
    channel = workspace.directory.resolve_channel(reference)
    if channel.is_private and not channel.is_im and not channel.is_member:
        raise ApiError("not_in_channel")
    return channel


def _channel_for_post(workspace: Workspace, params: Params) -> Channel:
    return channel_for_post(workspace, str(params.get("channel") or ""))


def _text_and_blocks(params: Params) -> tuple[str, list[dict[str, Any]]]:
    text = read_text(params)
    blocks = read_blocks(params)
    if not text and not blocks:
        raise ApiError("no_text")
    return text or "", blocks or []


def _api_message(workspace: Workspace, message: Message) -> dict[str, Any]:
    return {**message.to_api(), "bot_id": workspace.bot_id, "team": workspace.team_id}
