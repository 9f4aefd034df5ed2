"""Windows of a whole deployment version, and the aggregator that keeps them.

:class:`Aggregator` holds, per deployment version and window length (say one
hour and one day), the current window (:class:`DeploymentWindow`: a
:class:`~corral.monitoring.windows.FeatureWindow` per feature and per model
output). :meth:`Aggregator.drain` returns what accumulated since the last
drain; :func:`merge` adds windows up (see :mod:`corral.monitoring.windows` for
what merges exactly). :meth:`Aggregator.reject` counts values the server's
schema validation rejected for their type, without any values. Windows start at multiples of their length since the
Unix epoch, which is UTC.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from corral.core.profile import Profile
from corral.monitoring.windows import (
    DAY,
    DEFAULT_MAX_UNSEEN,
    HOUR,
    WINDOW_FORMAT,
    BatchBlock,
    CategoricalBatch,
    FeatureLayout,
    FeatureWindow,
    NumericBatch,
    as_float_matrix,
    categorical_batch,
    category_label,
)

# -- one deployment version ----------------------------------------------------------------------


class WindowKey(NamedTuple):
    """Which window: a deployment's model version over ``[start, start + length)`` (epoch seconds, UTC)."""

    deployment: str
    model: str
    version: int
    length: int
    start: int

    @property
    def start_time(self) -> datetime:
        return datetime.fromtimestamp(self.start, UTC)

    @property
    def end_time(self) -> datetime:
        return datetime.fromtimestamp(self.start + self.length, UTC)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "model": self.model,
            "version": self.version,
            "length": self.length,
            "start": self.start,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowKey:
        return cls(
            str(data["deployment"]), str(data["model"]), int(data["version"]), int(data["length"]), int(data["start"])
        )


def window_start(at: float | datetime, length: int) -> int:
    """The start (epoch seconds) of the ``length``-second window holding ``at``: a UTC-aligned multiple of it."""
    if length <= 0:
        raise ValueError(f"window length must be a positive number of seconds, got {length}")
    seconds = at.timestamp() if isinstance(at, datetime) else float(at)
    return int(seconds // length) * length


@dataclass(frozen=True, slots=True)
class WindowLayout:
    """Every feature's and output's layout for one model version (built once, shared by its windows)."""

    features: tuple[FeatureLayout, ...]
    outputs: tuple[FeatureLayout, ...] = ()
    _blocks: dict[str, BatchBlock] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_profile(cls, profile: Profile) -> WindowLayout:
        return cls(
            tuple(FeatureLayout.from_profile(f) for f in profile.features.values()),
            tuple(FeatureLayout.from_profile(f) for f in profile.outputs.values()),
        )

    def block(self, group: str) -> BatchBlock:
        found = self._blocks.get(group)
        if found is None:
            layouts = self.features if group == "features" else self.outputs
            found = self._blocks[group] = BatchBlock([f for f in layouts if f.numerical])
        return found

    def to_dict(self) -> dict[str, Any]:
        return {"features": [f.to_dict() for f in self.features], "outputs": [f.to_dict() for f in self.outputs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowLayout:
        return cls(
            tuple(FeatureLayout.from_dict(f) for f in data["features"]),
            tuple(FeatureLayout.from_dict(f) for f in data.get("outputs", ())),
        )


_Batch = dict[str, NumericBatch | CategoricalBatch]


def output_columns(
    values: Any, probabilities: np.ndarray | None = None, classes: Sequence[Any] | None = None
) -> dict[str, Any]:
    """A model's outputs as the reference profile names them: ``prediction`` and ``proba_<class>``."""
    out: dict[str, Any] = {"prediction": values}
    if probabilities is not None and classes is not None:
        matrix = np.asarray(probabilities, dtype="float64")
        for i, cls in enumerate(classes):
            out[f"proba_{category_label(cls)}"] = matrix[:, i]
    return out


class DeploymentWindow:
    """One deployment version's window: a :class:`FeatureWindow` per feature and per model output.

    Args:
        key: which deployment, model, version and window.
        layout: the version's reference layout (``WindowLayout.from_profile(profile)``).
        max_unseen: the cap on distinct unseen categories tracked per column.
    """

    __slots__ = ("features", "key", "layout", "max_unseen", "outputs")

    def __init__(self, key: WindowKey, layout: WindowLayout, *, max_unseen: int = DEFAULT_MAX_UNSEEN) -> None:
        self.key = key
        self.layout = layout
        self.max_unseen = max_unseen
        self.features = {f.name: FeatureWindow(f, max_unseen=max_unseen) for f in layout.features}
        self.outputs = {f.name: FeatureWindow(f, max_unseen=max_unseen) for f in layout.outputs}

    @property
    def rows(self) -> int:
        """The most rows any column saw (every column sees every row when frames are complete)."""
        return max((w.total for w in [*self.features.values(), *self.outputs.values()]), default=0)

    def update(self, frame: pd.DataFrame, outputs: pd.DataFrame | Mapping[str, Any] | None = None) -> None:
        """Add one answered batch: the validated feature frame and, optionally, the outputs.

        ``outputs`` maps output names (as in the reference profile: ``prediction``,
        ``proba_<class>``; see :func:`output_columns`) to one value per row.
        Columns the reference does not know are ignored.
        """
        self._apply(batch_stats(self.layout, frame, outputs, self.max_unseen))

    def reject(self, feature: str, count: int | np.integer[Any] = 1) -> bool:
        """Count ``count`` values of ``feature`` rejected for their type; ``False`` for an unknown feature.

        Raises:
            ValueError: ``count`` is negative or not a whole number.
        """
        window = self.features.get(feature)
        if window is None:
            return False
        window.add_invalid(count)
        return True

    def _apply(self, batch: tuple[_Batch, _Batch]) -> None:
        for group, stats in zip((self.features, self.outputs), batch, strict=True):
            for name, stat in stats.items():
                window = group[name]
                if isinstance(stat, NumericBatch):
                    window._add_numeric(stat)
                else:
                    window._add_categorical(stat)

    def absorb(self, other: DeploymentWindow) -> None:
        """Add ``other`` (the same key) into this window, in place."""
        if other.key != self.key:
            raise ValueError(f"cannot merge windows {self.key} and {other.key}")
        for mine, theirs in ((self.features, other.features), (self.outputs, other.outputs)):
            if mine.keys() != theirs.keys():
                raise ValueError(f"cannot merge windows of {self.key}: their columns differ")
            for name, window in theirs.items():
                mine[name].absorb(window)

    def copy(self) -> DeploymentWindow:
        out = DeploymentWindow(self.key, self.layout, max_unseen=self.max_unseen)
        out.absorb(self)
        return out

    def merge(self, other: DeploymentWindow) -> DeploymentWindow:
        """A new window holding both (neither is changed)."""
        out = self.copy()
        out.absorb(other)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable; each column carries its layout, so a store can merge without the profile."""
        return {
            "format": WINDOW_FORMAT,
            "key": self.key.to_dict(),
            "max_unseen": self.max_unseen,
            "features": [w.to_dict() for w in self.features.values()],
            "outputs": [w.to_dict() for w in self.outputs.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeploymentWindow:
        features = [FeatureWindow.from_dict(f) for f in data["features"]]
        outputs = [FeatureWindow.from_dict(f) for f in data.get("outputs", ())]
        layout = WindowLayout(tuple(w.layout for w in features), tuple(w.layout for w in outputs))
        out = cls(WindowKey.from_dict(data["key"]), layout, max_unseen=int(data["max_unseen"]))
        out.features = {w.name: w for w in features}
        out.outputs = {w.name: w for w in outputs}
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeploymentWindow):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"DeploymentWindow({self.key}, rows={self.rows})"


def merge(a: DeploymentWindow, b: DeploymentWindow) -> DeploymentWindow:
    """``a`` and ``b`` added up (associative and commutative; see the module docstring for the cap)."""
    return a.merge(b)


def merge_all(windows: Iterable[DeploymentWindow]) -> dict[WindowKey, DeploymentWindow]:
    """Add up windows by key, as the store does with flushed deltas."""
    out: dict[WindowKey, DeploymentWindow] = {}
    for window in windows:
        found = out.get(window.key)
        if found is None:
            out[window.key] = window.copy()
        else:
            found.absorb(window)
    return out


def batch_stats(
    layout: WindowLayout,
    frame: pd.DataFrame,
    outputs: pd.DataFrame | Mapping[str, Any] | None = None,
    max_unseen: int = DEFAULT_MAX_UNSEEN,
) -> tuple[_Batch, _Batch]:
    """One batch's per-column statistics, computed once and added to any number of windows."""
    return (
        _group_stats(layout.features, layout.block("features"), frame, max_unseen),
        _group_stats(layout.outputs, layout.block("outputs"), outputs, max_unseen) if outputs is not None else {},
    )


def _group_stats(
    layouts: Sequence[FeatureLayout], block: BatchBlock, data: pd.DataFrame | Mapping[str, Any], cap: int
) -> _Batch:
    present = set(data.keys())
    out: _Batch = {}
    numeric = [name for name in block.names if name in present]
    if numeric:
        if len(numeric) == len(block.names):
            stats = block.stats(_matrix(data, numeric))
            out.update(zip(numeric, stats, strict=True))
        else:  # some numerical columns are absent: aggregate those present one by one
            for f in layouts:
                if f.numerical and f.name in present:
                    out[f.name] = BatchBlock([f]).stats(as_float_matrix(data[f.name]))[0]
    for f in layouts:
        if not f.numerical and f.name in present:
            out[f.name] = categorical_batch(f, data[f.name], cap)
    return out


def _matrix(data: pd.DataFrame | Mapping[str, Any], names: list[str]) -> np.ndarray:
    if isinstance(data, pd.DataFrame):
        whole = len(data.columns) == len(names) and data.columns.tolist() == names  # no column selection to pay for
        matrix: np.ndarray = (data if whole else data[names]).to_numpy(dtype="float64", na_value=np.nan)
        return matrix
    return np.column_stack([as_float_matrix(data[name])[:, 0] for name in names])


# -- the aggregator --------------------------------------------------------------------------------


class Aggregator:
    """The current windows of several deployment versions and window lengths, in one process.

    Register each served version with :meth:`track` (its reference profile
    fixes the layout), hand every answered batch to :meth:`update`, and call
    :meth:`drain` every few seconds: it returns what accumulated since the
    previous drain, one :class:`DeploymentWindow` per key touched, for the
    store to add up. A batch lands in the window of each length holding the
    clock's time (or ``at``); a new window opens when the time crosses a
    boundary. Memory holds only the windows touched since the last drain.

    Args:
        lengths: window lengths in seconds (windows start at UTC multiples of them).
        clock: seconds since the epoch (injectable for tests).
        max_unseen: the cap on distinct unseen categories per column.
    """

    def __init__(
        self,
        lengths: Sequence[int] = (HOUR, DAY),
        *,
        clock: Callable[[], float] = time.time,
        max_unseen: int = DEFAULT_MAX_UNSEEN,
    ) -> None:
        if not lengths or any(int(n) != n or n <= 0 for n in lengths):
            raise ValueError(f"window lengths must be positive whole seconds, got {list(lengths)}")
        self.lengths = tuple(sorted({int(n) for n in lengths}))
        self.clock = clock
        self.max_unseen = max_unseen
        self._layouts: dict[tuple[str, str, int], WindowLayout] = {}
        self._windows: dict[WindowKey, DeploymentWindow] = {}

    def track(self, deployment: str, model: str, version: int, profile: Profile | WindowLayout) -> None:
        """Aggregate ``deployment``'s ``model`` version against its reference profile."""
        layout = profile if isinstance(profile, WindowLayout) else WindowLayout.from_profile(profile)
        self._layouts[(deployment, model, version)] = layout

    def untrack(self, deployment: str, model: str, version: int) -> None:
        """Stop aggregating a version (windows already accumulated still drain)."""
        self._layouts.pop((deployment, model, version), None)

    def tracking(self, deployment: str, model: str, version: int) -> bool:
        return (deployment, model, version) in self._layouts

    def update(
        self,
        deployment: str,
        model: str,
        version: int,
        frame: pd.DataFrame,
        outputs: pd.DataFrame | Mapping[str, Any] | None = None,
        *,
        at: float | datetime | None = None,
    ) -> None:
        """Add one answered batch to the current window of every length.

        Raises:
            KeyError: the version is not tracked.
        """
        layout = self._layouts.get((deployment, model, version))
        if layout is None:
            raise KeyError(f"monitoring does not track {model} v{version} on deployment {deployment!r}")
        now = self.clock() if at is None else at
        batch = batch_stats(layout, frame, outputs, self.max_unseen)
        for length in self.lengths:
            self._window(WindowKey(deployment, model, version, length, window_start(now, length)), layout)._apply(batch)

    def reject(
        self,
        deployment: str,
        model: str,
        version: int,
        feature: str,
        count: int | np.integer[Any] = 1,
        *,
        at: float | datetime | None = None,
    ) -> bool:
        """Count ``count`` values of ``feature`` that schema validation rejected for their type.

        They are counted as ``invalid`` in the current window of every length
        (the one holding ``at``, or the clock's time). Rejections are often what
        a broken client sends before anything valid, so an untracked version or a
        feature its profile does not list is ignored, not raised: the result says
        whether anything was counted.

        Raises:
            ValueError: ``count`` is negative or not a whole number.
        """
        layout = self._layouts.get((deployment, model, version))
        if layout is None or not any(f.name == feature for f in layout.features):
            return False
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
            raise ValueError(f"rejected count of {feature!r} must be a whole number >= 0, got {count!r}")
        if count == 0:
            return True
        now = self.clock() if at is None else at
        for length in self.lengths:
            self._window(WindowKey(deployment, model, version, length, window_start(now, length)), layout).reject(
                feature, int(count)
            )
        return True

    def _window(self, key: WindowKey, layout: WindowLayout) -> DeploymentWindow:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = DeploymentWindow(key, layout, max_unseen=self.max_unseen)
        return window

    @property
    def pending(self) -> int:
        """Windows holding data not yet drained."""
        return len(self._windows)

    def restore(self, window: DeploymentWindow) -> None:
        """Give back a drained window (its flush failed): it is added to whatever accumulated since."""
        current = self._windows.get(window.key)
        if current is None:
            self._windows[window.key] = window
        else:
            current.absorb(window)

    def drain(self) -> list[DeploymentWindow]:
        """The partial windows accumulated since the last drain (oldest first); they are forgotten here."""
        drained = sorted(self._windows.values(), key=lambda w: (w.key.start, w.key.length, w.key[:3]))
        self._windows = {}
        return drained
