"""A metric reading: what monitoring measures and alert rules judge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Reading:
    """A metric's value in a window (``None``: no value there), how many samples it rests on, and a few
    words naming what is behind it (e.g. the drifted features)."""

    value: float | None
    samples: int
    window_start: datetime | None = None
    detail: str | None = None
