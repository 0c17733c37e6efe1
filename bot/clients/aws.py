"""boto3 clients for S3 and RDS, and the translation of their errors into the bot's errors.

boto3 is synchronous: callers run every call through `asyncio.to_thread`. Credentials come
from boto3's default chain (environment, shared files, instance or pod role); the bot never
reads or stores them itself.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from bot.errors import TargetError, TargetRejected, TargetTimeout, TargetUnavailable
from bot.observability.redaction import redactor

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 60
# botocore's "standard" retry mode retries throttling and 5xx answers with backoff.
MAX_ATTEMPTS = 3
_MESSAGE_LIMIT = 300

_THROTTLING = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded", "SlowDown", "TooManyRequestsException"})
_ACCESS = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"})


def boto_client(service: Literal["s3", "rds"], *, region: str | None, endpoint_url: str | None) -> Any:
    """Create a boto3 client with bounded timeouts; `endpoint_url` replaces AWS's own endpoint."""
    options: dict[str, Any] = {
        "region_name": region,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
        "retries": {"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
    }
    if service == "s3" and endpoint_url:
        # An endpoint such as http://127.0.0.1:5000 has no bucket subdomains.
        options["s3"] = {"addressing_style": "path"}
    session = boto3.session.Session()
    return session.client(service, endpoint_url=endpoint_url, config=Config(**options))


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def aws_error(error: Exception, *, target: str, action: str) -> TargetError:
    """Classify a boto3 exception by what happens next and word it for Slack (no secrets)."""
    if isinstance(error, ClientError):
        code = error_code(error)
        message = redactor.scrub(str(error.response.get("Error", {}).get("Message", "")))[:_MESSAGE_LIMIT]
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        text = f"{action} failed: {code or f'HTTP {status}'}" + (f" ({message})" if message else "")
        if code in _THROTTLING or status >= 500:
            return TargetUnavailable(target, text + ".", hint="AWS is busy or failing; try again in a few minutes.")
        if code in _ACCESS:
            return TargetRejected(target, text + ".", hint="Check the IAM policy of the bot's role for this action.")
        return TargetRejected(target, text + ".")
    if isinstance(error, ReadTimeoutError):
        return TargetTimeout(target, f"{action} timed out after {READ_TIMEOUT_SECONDS} s.", hint="Try again later.")
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return TargetUnavailable(
            target,
            f"{action} failed: the AWS endpoint could not be reached.",
            hint="Check AWS_REGION and AWS_ENDPOINT_URL, and the network path to AWS.",
        )
    if isinstance(error, NoCredentialsError):
        return TargetRejected(
            target,
            f"{action} failed: no AWS credentials were found.",
            hint="Give the bot an IAM role, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
        )
    if isinstance(error, BotoCoreError):
        return TargetUnavailable(target, f"{action} failed: {redactor.scrub(str(error))[:_MESSAGE_LIMIT]}.")
    raise TypeError(f"not an AWS error: {type(error).__name__}")
