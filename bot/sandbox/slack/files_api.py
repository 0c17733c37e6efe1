"""Fake file upload flow: files.getUploadURLExternal, the upload URL itself, files.completeUploadExternal."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from bot.sandbox.slack.chat_api import channel_for_post
from bot.sandbox.slack.records import UploadedFile
from bot.sandbox.slack.replies import ApiError, Params
from bot.sandbox.slack.workspace import Workspace


@dataclass
class PendingUpload:
    """A file id handed out by files.getUploadURLExternal, waiting for its bytes and completion."""

    file_id: str
    filename: str
    length: int
    content: bytes | None = None


class Uploads:
    """Upload URLs handed out and not yet completed, keyed by file id."""

    def __init__(self) -> None:
        self.pending: dict[str, PendingUpload] = {}
        self._ids = itertools.count(1)

    def get_upload_url(self, workspace: Workspace, params: Params) -> dict[str, Any]:
        filename = str(params.get("filename") or "")
        length = _parse_length(params.get("length"))
        if not filename or length is None:
            raise ApiError("invalid_arguments")

        file_id = f"F{next(self._ids):08d}"
        self.pending[file_id] = PendingUpload(file_id=file_id, filename=filename, length=length)
        return {"upload_url": f"{workspace.root_url}/upload/v1/{file_id}", "file_id": file_id}

    def receive(self, file_id: str, content: bytes) -> bool:
        """Store the bytes posted to an upload URL; return False for an unknown file id."""
        upload = self.pending.get(file_id)
        if upload is None:
            return False
        upload.content = content
        return True

    def complete(self, workspace: Workspace, params: Params) -> dict[str, Any]:
        requested = _parse_files(params.get("files"))
        channel_id = params.get("channel_id") or None
        if channel_id is None and params.get("channels"):
            channel_id = str(params["channels"]).split(",")[0]
        channel = channel_for_post(workspace, str(channel_id)) if channel_id else None

        uploads: list[tuple[PendingUpload, str]] = []
        for item in requested:
            upload = self.pending.get(str(item.get("id")))
            # NOTE: the fake returns file_not_found both for an unknown id and for one whose bytes never
            # arrived. Slack's error for the second case is not confirmed.
            if upload is None or upload.content is None:
                raise ApiError("file_not_found")
            uploads.append((upload, str(item.get("title") or upload.filename)))

        completed: list[dict[str, Any]] = []
        for upload, title in uploads:
            del self.pending[upload.file_id]
            stored = UploadedFile(
                id=upload.file_id,
                filename=upload.filename,
                title=title,
                content=upload.content or b"",
                channel=channel.id if channel else None,
                thread_ts=params.get("thread_ts") or None,
                initial_comment=params.get("initial_comment") or None,
            )
            workspace.files.append(stored)
            workspace.publish("file", stored)
            completed.append(_api_file(stored))
        return {"files": completed}


def _parse_length(raw: object) -> int | None:
    try:
        length = int(str(raw))
    except ValueError:
        return None
    return length if length >= 0 else None


def _parse_files(raw: object) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ApiError("invalid_arguments") from None
    if not isinstance(raw, list) or not raw or not all(isinstance(item, dict) for item in raw):
        raise ApiError("invalid_arguments")
    return raw


def _api_file(stored: UploadedFile) -> dict[str, Any]:
    return {
        "id": stored.id,
        "name": stored.filename,
        "title": stored.title,
        "size": len(stored.content),
        "channels": [stored.channel] if stored.channel else [],
    }
