"""What the audit room needs from storage: an append-only, hash-chained store of predictions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from corral.audit.records import Checkpoint, Explanation, PredictionRecord
from corral.audit.retention import Anchor


class AuditStore(Protocol):
    """Persistence of :class:`PredictionRecord`, append-only.

    Every method is one atomic operation. Appends from several processes are
    serialised, so sequence numbers have no gaps and every record's
    ``prev_hash`` is the hash of the record before it.
    """

    def append(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        """Chain ``records`` after the current head and store them in one durable transaction.

        Returns the records as stored (with ``seq``, ``prev_hash`` and ``hash``).

        A prediction id is unique per model version: the answering record and each shadow's share it.

        Raises:
            AlreadyExistsError: a prediction id is already recorded for that version (nothing is written).
            StoreError: the database failed (nothing is written).
        """
        ...

    def get(self, prediction_id: str) -> PredictionRecord:
        """The record that answered one prediction (not a shadow's).

        Raises:
            PredictionNotFoundError: no prediction has this id.
        """
        ...

    def get_many(self, prediction_ids: Sequence[str]) -> dict[str, PredictionRecord]:
        """The records of those ids that exist, by id: the record that answered (a shadow's never does)."""
        ...

    def records_for(self, prediction_id: str) -> list[PredictionRecord]:
        """Every record of one prediction id, in ``seq`` order: the answer and each shadow's."""
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

    # Privacy and retention (corral.audit.privacy, corral.audit.retention)

    def subject_key(self, subject_ref: str, *, create: bytes | None = None) -> bytes | None:
        """The stored (wrapped) key of a data subject; ``None`` when it has none or it was destroyed.

        With ``create``, a subject without a live key is given ``create`` (a destroyed key is replaced:
        records under the old key stay erased). When two writers race, both get the one stored.
        """
        ...

    def destroy_subject_key(self, subject_ref: str) -> bool:
        """Destroy a subject's key for good (the row keeps when it was destroyed); ``False``: no live key."""
        ...

    def anchors(self) -> list[Anchor]:
        """Every anchor (where the pruned chain resumes), in ``seq`` order; the last is where verify starts."""
        ...

    def delete_through(self, seq: int, *, hash: str, export_url: str, after_seq: int) -> int:
        """Delete records ``seq <= seq`` (with their labels and explanations) and store the anchor, atomically.

        A compare-and-set: record ``seq`` must have ``hash``, and the newest anchor must be at ``after_seq``
        (0 when none). Deleting through an existing anchor with the same hash again is a no-op (returns 0).
        Returns how many records were deleted.

        Raises:
            ConflictError: ``seq`` is beyond the head, the hash differs, or the anchor moved meanwhile.
        """
        ...

    def get_policy(self, deployment: str) -> dict[str, Any] | None:
        """A deployment's stored :class:`~corral.audit.privacy.AuditPolicy` (as ``to_dict`` gave it)."""
        ...

    def set_policy(self, deployment: str, policy: Mapping[str, Any] | None) -> None:
        """Store (or with ``None`` remove) a deployment's audit policy."""
        ...

    def policies(self) -> dict[str, dict[str, Any]]:
        """Every stored audit policy, by deployment."""
        ...
