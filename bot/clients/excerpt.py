"""Short, printable excerpts of response bodies for error messages."""

from __future__ import annotations

from collections.abc import Iterable

from bot.clients.dsn import REDACTED

DEFAULT_EXCERPT_CHARS = 200


def excerpt(
    body: bytes | str,
    *,
    max_chars: int = DEFAULT_EXCERPT_CHARS,
    secrets: Iterable[str] = (),
) -> str:
    """Return one line of at most `max_chars` characters from a response body.

    Invalid UTF-8 becomes U+FFFD, control characters become spaces, runs of whitespace
    collapse to one space, and every occurrence of a secret becomes `***` before the text
    is cut, so a secret cannot survive in part.
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)

    printable = "".join(character if character.isprintable() else " " for character in text)
    one_line = " ".join(printable.split())
    if len(one_line) <= max_chars:
        return one_line
    return one_line[: max_chars - 1] + "…"
