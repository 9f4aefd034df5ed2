"""When a pipeline's time trigger fires: five-field cron expressions (UTC) and fixed intervals.

Everything here is a pure function of the pipeline's trigger, its last run and the current time, so any
number of workers can ask whether a pipeline is due and get the same answer; the store's ``enqueue``
(one queued or running run per pipeline) keeps them from starting it twice.

Times without a timezone are taken as UTC; the times returned are timezone-aware UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from croniter import croniter

from corral.errors import ConfigurationError
from corral.pipelines.entities import Pipeline

UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_WHOLE = re.compile(r"(?:\s*\d+(?:\.\d+)?\s*[smhdw]\s*)+", re.IGNORECASE)


def parse_every(text: str) -> float:
    """Seconds in an interval written as ``90s``, ``30m``, ``6h``, ``1d``, ``2w`` or a sum such as ``1h30m``.

    Raises:
        ConfigurationError: text that is not such an interval, or one of zero length; the message quotes it.
    """
    if not isinstance(text, str) or not _WHOLE.fullmatch(text):
        raise ConfigurationError(
            f"cannot read the interval {text!r}: write a number and a unit (s, m, h, d, w), e.g. 90s, 30m, 6h, 1d"
        )
    seconds = sum(float(number) * UNIT_SECONDS[unit.lower()] for number, unit in _PART.findall(text))
    if seconds <= 0:
        raise ConfigurationError(f"the interval {text!r} must be longer than zero")
    return seconds


def validate_cron(expression: str) -> str:
    """The expression, stripped, when it is a valid five-field cron expression (minute hour day month weekday).

    Raises:
        ConfigurationError: anything else; the message quotes the expression and says what is wrong.
    """
    if not isinstance(expression, str):
        raise ConfigurationError(f"a cron schedule must be text, got {type(expression).__name__}")
    fields = expression.split()
    if len(fields) != 5:
        raise ConfigurationError(
            f"bad cron schedule {expression!r}: it needs five fields (minute hour day-of-month month day-of-week, "
            f"UTC), found {len(fields)}"
        )
    if not croniter.is_valid(" ".join(fields)):
        raise ConfigurationError(
            f"bad cron schedule {expression!r}: a field is out of range or does not parse "
            "(minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6)"
        )
    return " ".join(fields)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _next_cron(expression: str, after: datetime) -> datetime:
    result = croniter(validate_cron(expression), after).get_next(datetime)
    assert isinstance(result, datetime)
    return _utc(result)


def next_run(
    pipeline_schedule: str | None, every_seconds: float | None, last: datetime | None, now: datetime
) -> datetime | None:
    """When the time trigger fires next; ``None`` for a pipeline with neither a schedule nor an interval.

    A cron schedule fires at its first time strictly after the last run, or after ``now`` when it never ran
    (so a new schedule waits for its first slot). An interval fires ``every_seconds`` after the last run, or
    ``now`` when it never ran.

    Raises:
        ConfigurationError: both a schedule and an interval, a bad cron expression, or an interval that is
            not positive.
    """
    if pipeline_schedule is not None and every_seconds is not None:
        raise ConfigurationError("give a schedule or an interval, not both")
    now = _utc(now)
    if pipeline_schedule is not None:
        return _next_cron(pipeline_schedule, _utc(last) if last is not None else now)
    if every_seconds is not None:
        if every_seconds <= 0:
            raise ConfigurationError(f"the interval must be positive, got {every_seconds} s")
        if last is None:
            return now
        return _utc(last) + timedelta(seconds=float(every_seconds))
    return None


def due(pipeline: Pipeline, last_run_time: datetime | None, now: datetime) -> bool:
    """Whether the pipeline's time trigger has fired since its last run.

    A disabled pipeline, or one without a schedule or interval, is never due. A cron pipeline that never ran
    counts from its creation (``created_at``): it is due once a slot has passed since then; without a
    creation time it is due at once, like an interval pipeline that never ran.
    """
    if not pipeline.enabled:
        return False
    now = _utc(now)
    if pipeline.schedule is not None and last_run_time is None:
        if pipeline.created_at is None:
            validate_cron(pipeline.schedule)
            return True
        return _next_cron(pipeline.schedule, _utc(pipeline.created_at)) <= now
    when = next_run(pipeline.schedule, pipeline.every_seconds, last_run_time, now)
    return when is not None and when <= now


__all__ = ["UNIT_SECONDS", "due", "next_run", "parse_every", "validate_cron"]
