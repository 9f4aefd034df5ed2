"""Time triggers: intervals, five-field cron schedules in UTC, and when a pipeline is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from corral.errors import ConfigurationError
from corral.pipelines.entities import Pipeline
from corral.pipelines.schedule import due, next_run, parse_every, validate_cron

SUNDAY_NOON = datetime(2024, 6, 2, 12, 0, tzinfo=UTC)  # 2 June 2024 was a Sunday


def pipeline(**changes: object) -> Pipeline:
    fields: dict[str, object] = {
        "name": "fraud-retrain",
        "train": "mymodule:train",
        "data": ({"kind": "file", "path": "data/*.csv"},),
        "target": "label",
        "deployment": "fraud",
    }
    fields.update(changes)
    return Pipeline(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("6h", 21600), ("1d", 86400), ("2w", 1209600), ("1h30m", 5400), ("1.5h", 5400)],
)
def test_parse_every(text: str, seconds: float) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "6", "h", "6x", "six hours", "-5m", "6h and", "0s"])
def test_parse_every_refuses_bad_text_and_names_it(text: str) -> None:
    with pytest.raises(ConfigurationError, match=repr(text).replace("(", r"\(")):
        parse_every(text)


def test_cron_next_run_from_a_sunday() -> None:
    # 03:00 every Monday: from Sunday noon, the next is Monday 3 June 03:00 UTC
    assert next_run("0 3 * * 1", None, None, SUNDAY_NOON) == datetime(2024, 6, 3, 3, 0, tzinfo=UTC)
    # after that run, the one a week later
    last = datetime(2024, 6, 3, 3, 0, 5, tzinfo=UTC)
    assert next_run("0 3 * * 1", None, last, SUNDAY_NOON) == datetime(2024, 6, 10, 3, 0, tzinfo=UTC)


def test_cron_every_quarter_hour_and_naive_times_are_utc() -> None:
    naive = datetime(2024, 6, 2, 12, 7)
    assert next_run("*/15 * * * *", None, naive, naive) == datetime(2024, 6, 2, 12, 15, tzinfo=UTC)


def test_cron_is_read_in_utc_whatever_the_zone_of_the_times() -> None:
    now = datetime(2024, 6, 2, 4, 30, tzinfo=timezone(timedelta(hours=2)))  # 02:30 UTC
    assert next_run("0 3 * * *", None, None, now) == datetime(2024, 6, 2, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("0 3 * *", "five fields"),
        ("0 3 * * 1 2024", "five fields"),
        ("61 * * * *", "out of range"),
        ("0 25 * * *", "out of range"),
        ("every monday", "five fields"),
        ("a b c d e", "does not parse"),
    ],
)
def test_bad_cron_expressions_are_refused_with_the_text(expression: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why) as caught:
        next_run(expression, None, None, SUNDAY_NOON)
    assert repr(expression) in str(caught.value)
    with pytest.raises(ConfigurationError):
        validate_cron(expression)


def test_interval_counts_from_the_last_run_or_now() -> None:
    assert next_run(None, 3600, None, SUNDAY_NOON) == SUNDAY_NOON
    last = SUNDAY_NOON - timedelta(minutes=20)
    assert next_run(None, parse_every("30m"), last, SUNDAY_NOON) == SUNDAY_NOON + timedelta(minutes=10)


def test_no_trigger_has_no_next_run_and_both_are_refused() -> None:
    assert next_run(None, None, None, SUNDAY_NOON) is None
    with pytest.raises(ConfigurationError, match="not both"):
        next_run("0 3 * * 1", 60, None, SUNDAY_NOON)
    with pytest.raises(ConfigurationError, match="positive"):
        next_run(None, 0, None, SUNDAY_NOON)


def test_due_for_intervals() -> None:
    hourly = pipeline(every_seconds=3600.0)
    assert due(hourly, None, SUNDAY_NOON)  # never ran: at once
    assert not due(hourly, SUNDAY_NOON - timedelta(minutes=59), SUNDAY_NOON)
    assert due(hourly, SUNDAY_NOON - timedelta(minutes=60), SUNDAY_NOON)
    assert not due(pipeline(every_seconds=3600.0, enabled=False), None, SUNDAY_NOON)


def test_due_for_cron() -> None:
    weekly = pipeline(schedule="0 3 * * 1", created_at=SUNDAY_NOON - timedelta(days=1))
    assert not due(weekly, None, SUNDAY_NOON)  # created Saturday; Monday 03:00 has not come
    monday = datetime(2024, 6, 3, 3, 0, tzinfo=UTC)
    assert due(weekly, None, monday)
    assert due(weekly, None, monday + timedelta(days=3))  # a missed slot still fires once
    assert not due(weekly, monday + timedelta(seconds=30), monday + timedelta(days=3))  # ran this week
    assert due(weekly, monday + timedelta(seconds=30), monday + timedelta(days=7))
    assert due(pipeline(schedule="0 3 * * 1"), None, SUNDAY_NOON)  # no creation time, never ran: at once


def test_due_without_a_time_trigger_is_never() -> None:
    assert not due(pipeline(on_alerts=("drift",)), None, SUNDAY_NOON)
