"""What monitoring needs from storage: deployment windows, and labels joined to recorded predictions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the port stays cheap to import; the aggregator pulls in numpy and pandas
    from corral.monitoring.aggregator import DeploymentWindow
    from corral.monitoring.feedback import Label, Outcome


class MonitoringStore(Protocol):
    """Persistence of :class:`DeploymentWindow` aggregates, keyed by :class:`~corral.monitoring.aggregator.WindowKey`.

    Every method is one atomic operation. Windows are added up on write, so
    several processes may flush partial windows of the same key: the stored
    window is the :func:`~corral.monitoring.aggregator.merge` of everything
    flushed for it.
    """

    def add_windows(self, windows: Sequence[DeploymentWindow]) -> None:
        """Add windows into the store, in one transaction (all or nothing).

        For each window, if one with the same key is stored, the stored window
        becomes ``merge(stored, window)``; otherwise it is stored as is.
        Concurrent calls for the same key are serialised, so none is lost.

        Raises:
            ValueError: a window's columns differ from the stored window's (nothing is written).
            StoreError: the database failed (nothing is written).
        """
        ...

    def get_windows(
        self,
        deployment: str,
        *,
        length: int,
        since: int | None = None,
        model: str | None = None,
        version: int | None = None,
    ) -> list[DeploymentWindow]:
        """A deployment's stored windows of ``length`` seconds, ordered by start (then model and version).

        Args:
            since: only windows starting at or after this time (epoch seconds).
            model: only this model's windows.
            version: only this version's windows.
        """
        ...

    def get_config(self, deployment: str) -> dict[str, Any] | None:
        """The deployment's monitoring configuration as stored (``None``: never set)."""
        ...

    def set_config(self, deployment: str, config: Mapping[str, Any] | None) -> None:
        """Store (or, with ``None``, remove) the deployment's monitoring configuration."""
        ...

    def delete_before(self, start: int) -> int:
        """Delete every window starting before ``start`` (epoch seconds); returns how many were deleted."""
        ...

    def close(self) -> None:
        """Release what the store holds (an SQL store disposes of its engine)."""
        ...


class FeedbackStore(Protocol):
    """Ground-truth labels joined to the recorded predictions they belong to.

    Labels live beside the prediction log (which stays append-only): one label
    per prediction id.
    """

    def outcomes_for(self, prediction_ids: Sequence[str]) -> dict[str, Outcome]:
        """The recorded predictions among ``prediction_ids`` (with their label, if any), by id."""
        ...

    def add_labels(self, labels: Sequence[Label]) -> None:
        """Store labels in one transaction (all or nothing).

        Raises:
            PredictionNotFoundError: an id has no recorded prediction (nothing is written).
            AlreadyExistsError: an id already has a different label (nothing is written).
        """
        ...

    def outcomes(
        self,
        deployment: str,
        *,
        since: datetime,
        until: datetime,
        model: str | None = None,
        version: int | None = None,
        role: str | None = "primary",
        labelled_only: bool = False,
    ) -> list[Outcome]:
        """Recorded predictions of ``deployment`` made in ``[since, until)``, oldest first, with their labels.

        ``role=None`` gives every role (champion, shadows, splits, canaries): shadows share the champion's
        prediction ids, and a label given for an id applies to every version's record of it.
        """
        ...

    def scores(
        self,
        deployment: str,
        *,
        since: datetime,
        until: datetime,
        model: str | None = None,
        version: int | None = None,
        role: str | None = "primary",
    ) -> Iterator[tuple[float, ...] | None]:
        """The class probabilities of each prediction :meth:`outcomes` would give (``None`` for one recorded
        without), oldest first, read as they are consumed.

        What CBPE needs of every row in a window: the alert loop judges the latest hour every minute, and an
        :class:`Outcome` per row of it held a few hundred bytes each, all at once.
        """
        ...
