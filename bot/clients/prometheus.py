"""The Meridian API's key metrics, read from its Prometheus text exposition.

Parsing uses prometheus_client's text parser (`text_string_to_metric_families`). In
prometheus_client 0.26 it raises ValueError or IndexError on malformed input, and it reads a
counter sample `meridian_operations_total` under a `# TYPE meridian_operations counter` line
as a family of its own, so the figures are looked up by sample name, not by family.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bot.clients.excerpt import excerpt
from bot.errors import TargetResponseInvalid

TARGET = "meridian-api"

POOL_SIZE = "meridian_db_pool_size"
POOL_IDLE = "meridian_db_pool_idle"
ORACLE_ENABLED = "meridian_oracle_enabled"
BASKETS = "meridian_baskets_total"
USERS = "meridian_users_total"
OPERATIONS = ("meridian_operations_total", "meridian_operations")
KEY_METRICS = (POOL_SIZE, POOL_IDLE, ORACLE_ENABLED, BASKETS, USERS, OPERATIONS[0])


@dataclass(frozen=True)
class MeridianMetrics:
    """The runbook's key metrics; a metric missing from the exposition is None."""

    pool_size: float | None
    pool_idle: float | None
    oracle_enabled: bool | None
    baskets: float | None
    users: float | None
    operations: dict[str, float] = field(default_factory=dict)  # by the `type` label
    samples: int = 0  # every sample in the exposition, the key metrics included

    @property
    def pool_in_use(self) -> float | None:
        if self.pool_size is None or self.pool_idle is None:
            return None
        return max(self.pool_size - self.pool_idle, 0.0)

    @property
    def pool_use_percent(self) -> float | None:
        """Connections in use as a percentage of the pool size; None when the size is unknown or 0."""
        in_use = self.pool_in_use
        if in_use is None or not self.pool_size:
            return None
        return 100.0 * in_use / self.pool_size

    @property
    def missing(self) -> list[str]:
        present = {
            POOL_SIZE: self.pool_size,
            POOL_IDLE: self.pool_idle,
            ORACLE_ENABLED: self.oracle_enabled,
            BASKETS: self.baskets,
            USERS: self.users,
            OPERATIONS[0]: self.operations or None,
        }
        return [name for name, value in present.items() if value is None]


def parse_meridian_metrics(text: str) -> MeridianMetrics:
    """Parse an exposition and pick out the key metrics.

    Raises TargetResponseInvalid when the text is not the Prometheus text format, quoting the
    start of the text and the parser's reason.
    """
    samples = _parse_samples(text)
    if not samples:
        raise TargetResponseInvalid(
            TARGET,
            f'The Meridian API\'s /metrics returned no metrics: "{excerpt(text)}"',
            hint="Check that MERIDIAN_API_URL points at the API, not at a proxy or a login page.",
        )

    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)

    operations: dict[str, float] = {}
    for name in OPERATIONS:
        for sample in by_name.get(name, []):
            kind = sample.labels.get("type", "")
            operations[kind] = operations.get(kind, 0.0) + sample.value

    oracle = _single(by_name, ORACLE_ENABLED)
    return MeridianMetrics(
        pool_size=_single(by_name, POOL_SIZE),
        pool_idle=_single(by_name, POOL_IDLE),
        oracle_enabled=None if oracle is None else oracle >= 1,
        baskets=_single(by_name, BASKETS),
        users=_single(by_name, USERS),
        operations=operations,
        samples=len(samples),
    )


def _parse_samples(text: str) -> list[Sample]:
    try:
        return [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    except (ValueError, IndexError) as error:
        raise TargetResponseInvalid(
            TARGET,
            f"The Meridian API's /metrics is not in the Prometheus text format ({excerpt(str(error), max_chars=120)}): "
            f'"{excerpt(text)}"',
            hint="Check the API's /metrics endpoint, or whether a proxy answers in its place.",
        ) from error


def _single(by_name: dict[str, list[Sample]], name: str) -> float | None:
    """Return the value of an unlabelled gauge; with several series, their sum."""
    values: Iterable[float] = (sample.value for sample in by_name.get(name, []))
    finite = [value for value in values if not math.isnan(value)]
    if not finite:
        return None
    return float(sum(finite))
