"""The feedback service: labels checked against the answering version, all or nothing, idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from corral.audit.records import PredictionRecord
from corral.core.schema import OutputSpec, Task
from corral.errors import AlreadyExistsError, FeedbackError, PredictionNotFoundError
from corral.monitoring.feedback import FeedbackService
from corral.storage.memory import MemoryAuditStore, MemoryFeedbackStore

SPECS = {
    ("clf", 1): OutputSpec(Task.CLASSIFICATION, "int64", (0, 1), probabilities=True),
    ("names", 1): OutputSpec(Task.CLASSIFICATION, "object", ("bad", "good"), probabilities=True),
    ("reg", 1): OutputSpec(Task.REGRESSION, "float64"),
}


@pytest.fixture
def service() -> FeedbackService:
    audit = MemoryAuditStore()
    now = datetime.now(UTC)
    audit.append(
        [PredictionRecord(f"c{i}", now, "d", "clf", 1, {"x": i}, i % 2) for i in range(3)]
        + [PredictionRecord("n0", now, "d", "names", 1, {"x": 0}, "good")]
        + [PredictionRecord("r0", now, "d", "reg", 1, {"x": 0}, 1.5)]
    )
    return FeedbackService(MemoryFeedbackStore(audit), lambda m, v: SPECS[(m, v)])


def test_labels_are_stored_once_and_resending_changes_nothing(service: FeedbackService) -> None:
    first = service.record([{"prediction_id": "c0", "label": 1}, {"prediction_id": "r0", "label": 2}])
    assert first.to_dict() == {"recorded": 2, "unchanged": 0}
    again = service.record([{"prediction_id": "c0", "label": 1}, {"prediction_id": "c1", "label": "0"}])
    assert again.to_dict() == {"recorded": 1, "unchanged": 1}
    stored = service.store.outcomes_for(["c1", "r0"])
    assert stored["c1"].label == 0 and stored["r0"].label == 2.0  # "0" taken as the class 0


def test_a_different_label_for_a_labelled_prediction_is_refused(service: FeedbackService) -> None:
    service.record([{"prediction_id": "c0", "label": 1}])
    with pytest.raises(AlreadyExistsError, match="already labelled 1"):
        service.record([{"prediction_id": "c2", "label": 0}, {"prediction_id": "c0", "label": 0}])
    assert not service.store.outcomes_for(["c2"])["c2"].labelled  # nothing of the batch was stored


def test_unknown_ids_are_named_and_nothing_is_stored(service: FeedbackService) -> None:
    with pytest.raises(PredictionNotFoundError, match="ghost-1, ghost-2"):
        service.record(
            [
                {"prediction_id": "c0", "label": 1},
                {"prediction_id": "ghost-1", "label": 1},
                {"prediction_id": "ghost-2", "label": 1},
            ]
        )
    assert not service.store.outcomes_for(["c0"])["c0"].labelled


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "no items"),
        (["c0"], "must be an object"),
        ([{"label": 1}], "no prediction_id"),
        ([{"prediction_id": "c0"}], "has no label"),
        ([{"prediction_id": "c0", "label": 7}], r"not one of the model's classes \[0, 1\]"),
        ([{"prediction_id": "n0", "label": "meh"}], "not one of the model's classes"),
        ([{"prediction_id": "r0", "label": "high"}], "must be a finite number"),
        ([{"prediction_id": "r0", "label": True}], "must be a finite number"),
        ([{"prediction_id": "r0", "label": float("inf")}], "must be a finite number"),
        ([{"prediction_id": "c0", "label": 1}, {"prediction_id": "c0", "label": 0}], "twice in this batch"),
    ],
)
def test_bad_feedback_is_refused_with_the_reason(service: FeedbackService, items: list, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(FeedbackError, match=message):
        service.record(items)


def test_batches_over_the_limit_are_refused(service: FeedbackService) -> None:
    service.max_batch = 2
    with pytest.raises(FeedbackError, match="over the limit of 2"):
        service.record([{"prediction_id": f"c{i}", "label": 0} for i in range(3)])
