"""Redaction of passwords in PostgreSQL connection strings."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

# libpq also accepts the password as a query parameter (`?password=...`) or as a key/value
# pair (`host=... password=...`), so both forms are redacted besides the URL's user info.
_PASSWORD_PARAMETER = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)")


def redact_dsn(dsn: str) -> str:
    """Return the DSN with every password replaced by `***`, for messages and logs.

    A URL keeps its scheme, user, hosts, database and parameters. A string that is not a
    URL is still scanned for `password=` pairs.
    """
    redacted = _PASSWORD_PARAMETER.sub(rf"\g<1>{REDACTED}", dsn)
    if "://" not in redacted:
        return redacted

    try:
        parts = urlsplit(redacted)
    except ValueError:
        # An unparsable URL could hide its password anywhere, so show only the scheme.
        return f"{dsn.split('://', 1)[0]}://{REDACTED}"

    # The user info ends at the last "@", because a password with an unencoded "@" is
    # still a password to libpq.
    user_info, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in user_info:
        return redacted
    user = user_info.split(":", 1)[0]
    netloc = f"{user}:{REDACTED}@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
