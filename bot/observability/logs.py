"""Logging set-up: JSON or text lines, correlation and run ids, secrets scrubbed."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from bot.observability import context
from bot.observability.redaction import redactor


class ContextFilter(logging.Filter):
    """Attach the current correlation id and run id to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = context.correlation_id.get()
        record.run_id = context.run_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None),
            "run_id": getattr(record, "run_id", None),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redactor.scrub(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s %(run_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redactor.scrub(super().format(record))


def configure_logging(*, log_format: str, level: str, stream=None) -> None:
    """Send every logger's records to `stream` (stderr by default) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())

    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Bolt logs a failed verification with the request body at INFO in some versions.
    logging.getLogger("slack_bolt").setLevel(max(logging.WARNING, logging.getLevelName(level)))
