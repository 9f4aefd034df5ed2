"""Delayed ground truth: labels for recorded predictions, checked before anything is stored.

A batch of feedback is taken whole or not at all. Each item names a
``prediction_id`` the audit log recorded and a ``label`` of the right type for
the version that answered it: one of a classifier's classes (a label sent as
``"1"`` for the class ``1`` is taken as that class), a finite number for a
regressor. Sending the same label again is a no-op (so clients may retry);
a *different* label for a labelled prediction is refused, because quietly
relabelling would rewrite past performance figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from corral.core.schema import OutputSpec, Task
from corral.errors import AlreadyExistsError, FeedbackError, PredictionNotFoundError
from corral.monitoring.ports import FeedbackStore

MAX_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class Label:
    """A ground-truth label for one prediction."""

    prediction_id: str
    label: Any
    received_at: datetime
    caller: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """A recorded prediction, with its label once one arrived."""

    prediction_id: str
    timestamp: datetime
    deployment: str
    model: str
    version: int
    role: str
    output: Any
    probabilities: tuple[float, ...] | None = None
    label: Any = None
    labelled: bool = False
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """What a feedback batch did: labels newly stored, and labels that were already there unchanged."""

    recorded: int
    unchanged: int

    def to_dict(self) -> dict[str, int]:
        return {"recorded": self.recorded, "unchanged": self.unchanged}


class FeedbackService:
    """Validates and stores labels.

    Args:
        store: labels joined to the prediction log.
        outputs: ``(model, version) -> OutputSpec`` of the version that answered.
    """

    def __init__(
        self,
        store: FeedbackStore,
        outputs: Callable[[str, int], OutputSpec],
        *,
        max_batch: int = MAX_BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.outputs = outputs
        self.max_batch = max_batch
        self.clock = clock

    def record(self, items: Sequence[Mapping[str, Any]], *, caller: str | None = None) -> FeedbackResult:
        """Store labels for recorded predictions, all or nothing.

        Raises:
            FeedbackError: a malformed item, a label of the wrong type, or a different label for a labelled id.
            PredictionNotFoundError: an id the prediction log does not have.
        """
        wanted = self._parse(items)
        known = self.store.outcomes_for(list(wanted))
        unknown = [pid for pid in wanted if pid not in known]
        if unknown:
            shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            raise PredictionNotFoundError(f"no recorded prediction has id {shown}; nothing was stored")
        now = datetime.fromtimestamp(self.clock(), UTC)
        new: list[Label] = []
        specs: dict[tuple[str, int], OutputSpec] = {}
        for pid, raw in wanted.items():
            outcome = known[pid]
            key = (outcome.model, outcome.version)
            spec = specs.get(key) or specs.setdefault(key, self.outputs(*key))
            label = coerce_label(raw, spec, pid)
            if outcome.labelled:
                if outcome.label != label:
                    raise AlreadyExistsError(
                        f"prediction {pid} is already labelled {outcome.label!r}; a different label {label!r} "
                        "is refused (nothing was stored)"
                    )
                continue
            new.append(Label(pid, label, now, caller))
        if new:
            self.store.add_labels(new)
        return FeedbackResult(recorded=len(new), unchanged=len(wanted) - len(new))

    def _parse(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not items:
            raise FeedbackError("feedback has no items: send {'prediction_id': ..., 'label': ...} or a list of them")
        if len(items) > self.max_batch:
            raise FeedbackError(f"{len(items)} feedback items is over the limit of {self.max_batch} per request")
        wanted: dict[str, Any] = {}
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise FeedbackError(f"feedback item {i} must be an object with prediction_id and label")
            pid, label = item.get("prediction_id"), item.get("label")
            if not isinstance(pid, str) or not pid:
                raise FeedbackError(f"feedback item {i} has no prediction_id (a non-empty string)")
            if label is None or (isinstance(label, float) and math.isnan(label)):
                raise FeedbackError(f"feedback item {i} (prediction {pid}) has no label")
            if pid in wanted and wanted[pid] != label:
                raise FeedbackError(f"prediction {pid} appears twice in this batch with different labels")
            wanted[pid] = label
        return wanted


def coerce_label(label: Any, spec: OutputSpec, prediction_id: str) -> Any:
    """``label`` as the version's output type, or :class:`FeedbackError` naming the prediction and the problem."""
    if spec.task == Task.REGRESSION or spec.classes is None:
        if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
            raise FeedbackError(f"label {label!r} for prediction {prediction_id} must be a finite number (a regressor)")
        return float(label)
    for cls in spec.classes:
        if label == cls and type(label) is type(cls):
            return cls
    matches = [cls for cls in spec.classes if str(cls) == str(label)]
    if len(matches) == 1 and not isinstance(label, (dict, list)):
        return matches[0]
    raise FeedbackError(
        f"label {label!r} for prediction {prediction_id} is not one of the model's classes {list(spec.classes)}"
    )
