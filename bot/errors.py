"""Errors whose message is written for the person in Slack, classified by what happens next.

- The user can fix it: `UsageError`, `PermissionDenied`, `Refused`.
- Retry later: `TargetUnavailable` and its `TargetTimeout`.
- Give up and report: `TargetRejected`, `TargetResponseInvalid`.

Anything else that escapes a step is unexpected: the engine logs it with an error id and shows
the user only that id.
"""

from __future__ import annotations


class BotError(Exception):
    """An error with a plain-sentence message that is safe to show in Slack."""

    retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def user_message(self) -> str:
        if self.hint:
            return f"{self.message} {self.hint}"
        return self.message


class UsageError(BotError):
    """The command line is invalid; the user can correct it and try again."""


class PermissionDenied(BotError):
    """The user lacks the role that the command needs."""

    def __init__(self, message: str, *, role: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.role = role


class Refused(BotError):
    """The request is understood and permitted but unsafe or impossible right now."""


class TargetError(BotError):
    """A system the bot talks to (API, database, RPC, cluster, AWS) failed."""

    def __init__(self, target: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.target = target


class TargetUnavailable(TargetError):
    """The target could not be reached or is overloaded; the same call may work later."""

    retryable = True


class TargetTimeout(TargetUnavailable):
    """The target did not respond within its timeout."""


class TargetRejected(TargetError):
    """The target refused the request (authentication, permission, not found)."""


class TargetResponseInvalid(TargetError):
    """The target returned a response the bot cannot read."""
