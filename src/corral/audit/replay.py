"""Reproduce a recorded prediction: the archived version re-runs the stored input.

:func:`replay` takes the record and the version that made it, loaded (its artifact re-hashed on
load), validates the stored inputs with that version's signature, predicts the one row and
compares: the outputs must be equal and every probability within :data:`PROBABILITY_TOLERANCE`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from corral.audit.ports import AuditStore
from corral.audit.records import PredictionRecord, plain

PROBABILITY_TOLERANCE = 1e-12


class Infers(Protocol):
    """A loaded version (:class:`corral.registry.loaded.LoadedModel`): validates with its signature, then predicts."""

    def infer(self, data: Any, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """The recorded answer beside the one the archived version gives now."""

    prediction_id: str
    model: str
    version: int
    identical: bool
    recorded_output: Any
    replayed_output: Any
    recorded_probabilities: tuple[float, ...] | None
    replayed_probabilities: tuple[float, ...] | None
    max_abs_difference: float | None
    artifact_sha256: str = ""
    artifact_matches: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "prediction_id": self.prediction_id,
            "model": self.model,
            "version": self.version,
            "identical": self.identical,
            "recorded_output": self.recorded_output,
            "replayed_output": self.replayed_output,
            "recorded_probabilities": plain(self.recorded_probabilities),
            "replayed_probabilities": plain(self.replayed_probabilities),
            "max_abs_difference": plain(self.max_abs_difference),
            "artifact_sha256": self.artifact_sha256,
            "artifact_matches": self.artifact_matches,
        }


def replay(record: PredictionRecord, model: Infers, *, artifact_sha256: str | None = None) -> ReplayResult:
    """Re-run ``record``'s stored inputs through ``model`` (the version that answered) and compare.

    Args:
        record: the recorded prediction.
        model: its version, loaded; ``infer`` validates the inputs with the version's signature.
        artifact_sha256: the loaded artifact's hash, compared with the one the record names.

    ``identical`` means the outputs are equal (numbers within :data:`PROBABILITY_TOLERANCE`, labels
    exactly) and so are the probabilities. ``max_abs_difference`` is the largest difference over the
    probabilities and a numeric output (``None`` when there is nothing numeric to compare).

    Raises:
        SchemaError: the stored inputs no longer fit the version's signature.
    """
    prediction = model.infer([dict(record.inputs)])
    replayed_output = plain(np.asarray(prediction.values)[0])
    probabilities = getattr(prediction, "probabilities", None)
    replayed_probabilities = (
        None if probabilities is None else tuple(float(p) for p in np.asarray(probabilities, dtype="float64")[0])
    )
    recorded_output = plain(record.output)
    differences: list[float] = []
    same_output = _same_output(recorded_output, replayed_output, differences)
    same_probabilities = _same_probabilities(record.probabilities, replayed_probabilities, differences)
    matches = None if not artifact_sha256 or not record.artifact_sha256 else artifact_sha256 == record.artifact_sha256
    return ReplayResult(
        prediction_id=record.prediction_id,
        model=record.model,
        version=record.version,
        identical=same_output and same_probabilities,
        recorded_output=recorded_output,
        replayed_output=replayed_output,
        recorded_probabilities=record.probabilities,
        replayed_probabilities=replayed_probabilities,
        max_abs_difference=max(differences) if differences else None,
        artifact_sha256=record.artifact_sha256,
        artifact_matches=matches,
    )


def _same_output(recorded: Any, replayed: Any, differences: list[float]) -> bool:
    a, b = _number(recorded), _number(replayed)
    if a is not None and b is not None:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        differences.append(abs(a - b))
        return abs(a - b) <= PROBABILITY_TOLERANCE
    return bool(recorded == replayed)


def _same_probabilities(
    recorded: tuple[float | None, ...] | None, replayed: tuple[float, ...] | None, differences: list[float]
) -> bool:
    if recorded is None or replayed is None:
        return recorded is None and replayed is None
    if len(recorded) != len(replayed):
        return False
    same = True
    for r, p in zip(recorded, replayed, strict=True):
        if r is None or not math.isfinite(p):  # stored JSON writes NaN as null
            same = same and r is None and not math.isfinite(p)
            continue
        differences.append(abs(float(r) - p))
        same = same and abs(float(r) - p) <= PROBABILITY_TOLERANCE
    return same


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def replay_recorded(store: AuditStore, load: Callable[[str, int], Any], prediction_id: str) -> ReplayResult:
    """Replay the recorded prediction ``prediction_id`` on its version, loaded by ``load(model, version)``.

    The loaded version's artifact hash (``loaded.version.artifact_sha256`` when it has one) is
    compared with the record's.

    Raises:
        PredictionNotFoundError: no prediction has this id.
    """
    record = store.get(prediction_id)
    loaded = load(record.model, record.version)
    version = getattr(loaded, "version", None)
    return replay(record, loaded, artifact_sha256=getattr(version, "artifact_sha256", None))
