"""Fake Web API methods that read the workspace directory: auth.test, users, user groups, channels."""

from __future__ import annotations

from typing import Any

from bot.sandbox.slack.replies import ApiError, Params
from bot.sandbox.slack.workspace import Workspace


def auth_test(workspace: Workspace, params: Params) -> dict[str, Any]:
    bot_user = workspace.directory.users.get(workspace.bot_user_id)
    return {
        "url": f"{workspace.root_url}/",
        "team": workspace.team_domain,
        "user": bot_user.name if bot_user else workspace.bot_user_id,
        "team_id": workspace.team_id,
        "user_id": workspace.bot_user_id,
        "bot_id": workspace.bot_id,
        "is_enterprise_install": False,
    }


def users_info(workspace: Workspace, params: Params) -> dict[str, Any]:
    user = workspace.directory.user(str(params.get("user") or ""))
    return {"user": user.to_api(workspace.team_id)}


def usergroups_users_list(workspace: Workspace, params: Params) -> dict[str, Any]:
    group_id = str(params.get("usergroup") or "")
    members = workspace.directory.usergroups.get(group_id)
    if members is None:
        raise ApiError("no_such_subteam")
    return {"users": list(members)}


def conversations_info(workspace: Workspace, params: Params) -> dict[str, Any]:
    channel = workspace.directory.resolve_channel(str(params.get("channel") or ""))

    # A private channel the bot is not in is invisible to it, so Slack reports it as missing.
    if channel.is_private and not channel.is_member:
        raise ApiError("channel_not_found")
    return {"channel": channel.to_api()}


DIRECTORY_METHODS = {
    "auth.test": auth_test,
    "users.info": users_info,
    "usergroups.users.list": usergroups_users_list,
    "conversations.info": conversations_info,
}
