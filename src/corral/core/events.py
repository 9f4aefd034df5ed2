"""The one event type that tells other rooms a prediction happened.

Serving builds a :class:`PredictionEvent` per row it answers and hands batches
of them to every :class:`PredictionSink` (audit, monitoring), off the
response path; serving never imports those rooms.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class PredictionEvent:
    """One answered row: who answered, with what, given what, and how fast."""

    prediction_id: str
    timestamp: datetime
    deployment: str
    model: str
    version: int
    inputs: dict[str, Any]
    output: Any
    probabilities: tuple[float, ...] | None = None
    role: str = "primary"
    latency_ms: float = 0.0
    request_id: str | None = None
    out_of_range: tuple[str, ...] = ()
    anomaly_score: float | None = None
    anomaly_flagged: bool = False
    caller: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class PredictionSink(Protocol):
    """Receives prediction events in batches; may be sync or async."""

    def submit(self, events: Sequence[PredictionEvent]) -> Awaitable[None] | None: ...

    def reject(self, deployment: str, model: str, version: int, feature: str, rows: int) -> None:
        """A request of ``rows`` rows was refused because of ``feature``'s values (a type violation)."""
        ...
