"""Command-line parsing: limits on numbers and durations are usage errors, never crashes."""

from __future__ import annotations

import pytest

from bot.durations import parse_duration
from bot.errors import UsageError
from procedures import build_catalog


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scale 101", "N: `101` is more than the maximum, 100."),
        ("scale 99999999999999999999", "N: `99999999999999999999` is more than the maximum, 100."),
        ("db kill 99999999999", "PID: `99999999999` is more than the maximum, 2,147,483,647."),
        ("logs --tail 10001", "--tail: `10001` is more than the maximum, 10,000."),
        ("logs --since 99999999999d", "--since: `99999999999d` is longer than the maximum of 3650 days."),
        ("logs --grep (unclosed", "--grep: `(unclosed` is not a valid regular expression"),
    ],
)
def test_limits_are_usage_errors(text: str, expected: str) -> None:
    with pytest.raises(UsageError) as error:
        build_catalog().parse(text)

    assert error.value.message.startswith(expected)


def test_duration_within_limit() -> None:
    assert parse_duration("3650d").days == 3650


def test_runaway_pattern_stopped() -> None:
    from bot.engine.patterns import LinePattern

    pattern = LinePattern("(a|aa)+$", budget_seconds=0.2)

    with pytest.raises(UsageError) as error:
        pattern.search("a" * 60 + "!")

    assert error.value.message == "`(a|aa)+$` took too long to match."
    assert "nested repeats" in (error.value.hint or "")


def test_pattern_budget_is_shared() -> None:
    from bot.engine.patterns import LinePattern

    pattern = LinePattern("pool exhausted", budget_seconds=0.0)

    with pytest.raises(UsageError):
        pattern.search("ERROR pool exhausted")


def test_rest_argument_joins_words() -> None:
    invocation = build_catalog().parse("page API down since 10:02 --severity warning")

    assert invocation.args["message"] == "API down since 10:02"
    assert invocation.args["severity"] == "warning"
