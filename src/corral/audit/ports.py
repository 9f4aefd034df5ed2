"""What the audit room needs from storage: an append-only, hash-chained store of predictions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from corral.audit.records import Checkpoint, Explanation, PredictionRecord


class AuditStore(Protocol):
    """Persistence of :class:`PredictionRecord`, append-only.

    Every method is one atomic operation. Appends from several processes are
    serialised, so sequence numbers have no gaps and every record's
    ``prev_hash`` is the hash of the record before it.
    """

    def append(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        """Chain ``records`` after the current head and store them in one durable transaction.

        Returns the records as stored (with ``seq``, ``prev_hash`` and ``hash``).

        Raises:
            AlreadyExistsError: a prediction id is already recorded (nothing is written).
            StoreError: the database failed (nothing is written).
        """
        ...

    def get(self, prediction_id: str) -> PredictionRecord:
        """The record of one prediction.

        Raises:
            PredictionNotFoundError: no prediction has this id.
        """
        ...

    def get_many(self, prediction_ids: Sequence[str]) -> dict[str, PredictionRecord]:
        """The records of those ids that exist, by id."""
        ...

    def search(
        self,
        *,
        deployment: str | None = None,
        model: str | None = None,
        version: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
        output: Any = None,
        fields: Mapping[str, Any] | None = None,
    ) -> list[PredictionRecord]:
        """Records in ``seq`` order matching every given filter; ``since`` inclusive, ``until`` exclusive.

        ``output`` matches the recorded output exactly; ``fields`` matches input fields by value
        (e.g. ``{"customer_id": "C-1"}``). Page with ``after_seq`` = the last ``seq`` of the previous page.
        """
        ...

    def count(self, *, model: str | None = None, version: int | None = None) -> int:
        """How many records (of one model, or one version) the log holds."""
        ...

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a signed checkpoint (one per ``seq``; storing the same one again is a no-op)."""
        ...

    def checkpoints(self, *, after_seq: int = 0) -> list[Checkpoint]:
        """Stored checkpoints after ``after_seq``, in ``seq`` order."""
        ...

    def put_explanation(self, explanation: Explanation) -> None:
        """Store (or replace) a prediction's explanation.

        Raises:
            PredictionNotFoundError: the prediction is not recorded.
        """
        ...

    def get_explanation(self, prediction_id: str) -> Explanation | None:
        """A prediction's stored explanation, if any."""
        ...

    def scan(self, *, after_seq: int = 0, chunk: int = 5000) -> Iterator[PredictionRecord]:
        """Every record after ``after_seq`` in ``seq`` order, read ``chunk`` at a time (for verification)."""
        ...

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the newest record; ``(0, GENESIS)`` for an empty log."""
        ...

    def close(self) -> None:
        """Release what the store holds."""
        ...
