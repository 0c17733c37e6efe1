"""One HTTP request to a target, with transport failures and error statuses mapped to bot errors."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from bot.errors import TargetRejected, TargetResponseInvalid, TargetTimeout, TargetUnavailable

logger = logging.getLogger(__name__)

# Large enough for a Prometheus exposition of a few thousand series, small enough that a
# runaway response cannot fill the bot's memory.
MAX_BODY_BYTES = 8 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024

# Path segments and query values at least this long are treated as possible API keys.
_MIN_SECRET_CHARS = 8


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A complete HTTP response and the time it took from sending to the last byte."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    latency_seconds: float


@dataclass(frozen=True, slots=True)
class TargetLabel:
    """A target's id for `TargetError.target` and its name for use in sentences."""

    target: str
    display_name: str


def url_secrets(url: str) -> list[str]:
    """Return the parts of a URL that may be credentials, to scrub from any text.

    These are the whole URL, its password, and path segments and query values of at least
    eight characters, where providers put API keys.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    candidates = [url, parts.password or ""]
    candidates += parts.path.split("/")
    candidates += [value for _, value in parse_qsl(parts.query)]
    return [candidate for candidate in candidates if len(candidate) >= _MIN_SECRET_CHARS]


def display_url(url: str) -> str:
    """Return the URL without user info, query and fragment, which may carry credentials."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return "the configured URL"
    if not parsed.host:
        return "the configured URL"
    return str(parsed.with_user(None).with_query(None).with_fragment(None))


async def send_request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    label: TargetLabel,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    allow_redirects: bool = True,
) -> HttpReply:
    """Send one request and read the whole body within `timeout` seconds.

    Raises TargetTimeout, TargetUnavailable (connection failed or dropped), TargetRejected
    (invalid URL) or TargetResponseInvalid (body over MAX_BODY_BYTES). The HTTP status is
    not checked here. Messages never contain the URL, because it may carry an API key, and
    the aiohttp error is chained only when its text does not contain the URL either.
    """
    started = time.perf_counter()
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            json=json_body,
            allow_redirects=allow_redirects,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            body = await _read_body(response, label=label)
            reply = HttpReply(
                status=response.status,
                headers=response.headers,
                body=body,
                latency_seconds=time.perf_counter() - started,
            )
    except TimeoutError as exc:
        raise TargetTimeout(
            label.target,
            f"{_capitalize(label.display_name)} did not respond within {timeout:g} seconds.",
            hint="Check that it is running and not overloaded, then retry.",
        ) from _chainable_cause(exc, url)
    except aiohttp.InvalidURL:
        # The exception text contains the URL, so it is not chained.
        raise TargetRejected(
            label.target,
            f"The URL configured for {label.display_name} is invalid.",
            hint="Correct the URL in the bot's settings.",
        ) from None
    except aiohttp.ClientConnectorError as exc:
        raise TargetUnavailable(
            label.target,
            f"Could not connect to {label.display_name}: {_describe_connect_failure(exc)}.",
            hint="Check that the service is running and reachable from the bot, then retry.",
        ) from _chainable_cause(exc, url)
    except aiohttp.ClientError as exc:
        raise TargetUnavailable(
            label.target,
            f"The connection to {label.display_name} failed before a complete response arrived.",
            hint="Retry; if it keeps failing, check the service's logs.",
        ) from _chainable_cause(exc, url)

    logger.debug(
        "%s %s returned HTTP %d in %.3f s",
        label.target,
        method,
        reply.status,
        reply.latency_seconds,
    )
    return reply


def read_json_object(reply: HttpReply) -> dict[str, Any]:
    """Decode the body as a JSON object; raise ValueError saying why it is not one."""
    try:
        document = json.loads(reply.body)
    except ValueError as exc:
        raise ValueError("the body is not JSON") from exc
    if not isinstance(document, dict):
        raise ValueError(f"the body is a JSON {json_type_name(document)}, not an object")
    return document


def json_type_name(value: Any) -> str:
    """Return the JSON name of a decoded value's type: object, array, string, number…"""
    match value:
        case None:
            return "null"
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case _:
            return "object"


def raise_for_error_status(reply: HttpReply, *, label: TargetLabel) -> None:
    """Raise the bot error for a status outside 2xx; return for a 2xx status.

    429 and 5xx raise TargetUnavailable, other 4xx raise TargetRejected, and anything else
    (1xx, an unfollowed 3xx) raises TargetResponseInvalid.
    """
    status = reply.status
    name = _capitalize(label.display_name)
    if 200 <= status < 300:
        return

    if status == 429:
        retry_after = reply.headers.get("Retry-After", "").strip()
        wait = f"{retry_after} seconds" if retry_after.isdigit() else "a while"
        raise TargetUnavailable(
            label.target,
            f"{name} is rate limiting the bot (HTTP 429).",
            hint=f"Retry after {wait}.",
        )
    if status in (401, 403):
        raise TargetRejected(
            label.target,
            f"{name} rejected the bot's credentials (HTTP {status}).",
            hint="Check the token or API key configured for it.",
        )
    if status == 404:
        raise TargetRejected(
            label.target,
            f"{name} returned HTTP 404 Not Found.",
            hint="Check that the configured URL points at the right service and path.",
        )
    if 400 <= status < 500:
        raise TargetRejected(label.target, f"{name} rejected the request with HTTP {status}.")
    if status >= 500:
        raise TargetUnavailable(
            label.target,
            f"{name} returned HTTP {status}.",
            hint="Retry; if it keeps failing, check the service's logs.",
        )
    raise TargetResponseInvalid(label.target, f"{name} returned unexpected HTTP {status}.")


async def _read_body(response: aiohttp.ClientResponse, *, label: TargetLabel) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise TargetResponseInvalid(
                label.target,
                f"{_capitalize(label.display_name)} sent a response larger than "
                f"{MAX_BODY_BYTES // (1024 * 1024)} MiB, so the bot stopped reading it.",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _chainable_cause(exc: BaseException, url: str) -> BaseException | None:
    """Return `exc` for `raise ... from`, or None when its traceback text contains the URL.

    aiohttp 3.14 puts the full URL into ConnectionTimeoutError and InvalidURL, and a chained
    cause ends up in every logged traceback.
    """
    text = "".join(traceback.format_exception(exc))
    if any(secret in text for secret in url_secrets(url)):
        return None
    return exc


def _describe_connect_failure(exc: aiohttp.ClientConnectorError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "its host name could not be resolved"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "the TLS handshake failed (check the certificate)"
    if isinstance(exc.os_error, ConnectionRefusedError):
        return "the connection was refused"
    return "the host is unreachable"


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]
