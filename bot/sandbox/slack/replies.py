"""Error type of the fake Web API methods. A method raises `ApiError` and the server responds with `ok: false`."""

from __future__ import annotations

from typing import Any

Params = dict[str, Any]
"""Request parameters merged from the query string, a form body and a JSON body."""


class ApiError(Exception):
    """A Slack Web API error code, with any extra fields Slack puts in the error body."""

    def __init__(self, error: str, *, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        """HTTP status of the response. Web API methods use 200 for errors too, as Slack does."""
        self.extra = extra

    def to_body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, **self.extra}
