"""The bot's own Prometheus metrics, served on GET /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class BotMetrics:
    """Counters and histograms of one bot process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "meridian_bot_commands_total",
            "Slash commands received, by command and outcome.",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.runs = Counter(
            "meridian_bot_runs_total",
            "Runs finished, by procedure and final state.",
            ["procedure", "state"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "meridian_bot_run_duration_seconds",
            "Time from a run's start to its end, by procedure.",
            ["procedure"],
            registry=self.registry,
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
        )
        self.approvals = Counter(
            "meridian_bot_approvals_total",
            "Approval decisions, by procedure and decision.",
            ["procedure", "decision"],
            registry=self.registry,
        )
        self.slack_errors = Counter(
            "meridian_bot_slack_api_errors_total",
            "Slack Web API calls that failed, by method and error.",
            ["method", "error"],
            registry=self.registry,
        )
        self.rejected_requests = Counter(
            "meridian_bot_rejected_requests_total",
            "Requests to /slack/events rejected before Bolt, by reason.",
            ["reason"],
            registry=self.registry,
        )
        # The backup figures that the runbook's alert rules read. The `location` label
        # (s3://bucket/prefix) keeps each gauge absent until the bot knows its value, so
        # a restart never exports a 0 that would fire those alerts.
        self.backup_last_success_timestamp = Gauge(
            "backup_last_success_timestamp",
            "Unix time of the newest good backup dump (checksum present, no failed verification).",
            ["location"],
            registry=self.registry,
        )
        self.backup_size_bytes = Gauge(
            "backup_size_bytes",
            "Size in bytes of the newest good backup dump.",
            ["location"],
            registry=self.registry,
        )
        self.backup_verification_success = Gauge(
            "backup_verification_success",
            "1 when the latest restore test of a backup passed, 0 when it failed.",
            ["location"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
