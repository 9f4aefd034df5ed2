"""Production windows of one feature: fixed-memory, mergeable counts laid out by the reference profile.

Whole deployment windows and the aggregator that feeds them live in
:mod:`corral.monitoring.aggregator`: the model server hands every answered
batch to ``Aggregator.update``; ``Aggregator.drain`` hands back what
accumulated since the last drain. Each process flushes these *deltas* to the
store every few seconds and the store adds them up with ``merge``, so the
numbers a window ends with do not depend on how traffic was spread over
processes, batches or flushes.

What one feature's aggregate (:class:`FeatureWindow`) holds, laid out by the
reference :class:`~corral.core.profile.FeatureProfile` stored with the version:

- every kind: ``count`` (present values), ``missing`` (``None``/NaN, and for
  numbers also infinities, as in the reference profile) and ``invalid``: values
  of the wrong type that the server's schema validation rejected before the
  window could see them (counted with :meth:`FeatureWindow.add_invalid`; they
  are in neither ``count`` nor ``missing``);
- numerical: ``min``, ``max``, the mean and the sum of squared deviations
  (``m2``) merged with Chan et al.'s parallel algorithm (numerically stable;
  sums of squares would cancel catastrophically for large, tightly spread
  values), a histogram over the reference ``bin_edges`` with open ends (like
  :func:`corral.core.profile.histogram`), and ``below`` / ``above``: values
  under the training minimum or over the training maximum;
- categorical and boolean: counts per reference category and, for categories
  the reference does not list, exact counts per category for at most
  ``max_unseen`` distinct ones plus an ``overflow`` count for the rest.

Merges are associative and commutative. Every count (``invalid`` included), the histograms, min and
max merge exactly; the mean and ``m2`` up to floating-point rounding (about
1e-15 relative). Unseen-category counts merge exactly while the distinct unseen
categories of the merged windows number at most ``max_unseen``; beyond that
the ``max_unseen`` most frequent (ties by name) are kept and the rest move to
``overflow``, so which categories are named may then depend on the merge
order, but their total (``unseen_total``) stays exact. Memory per window is
fixed by the reference layout and the cap, never by traffic.

Windows start at multiples of their length since the Unix epoch, which is UTC:
an hour window starts on the hour, a day window at 00:00 UTC.

Serialized windows written before ``invalid`` existed have no such key; they
load with ``invalid`` 0.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from corral.core.profile import FeatureProfile
from corral.core.schema import FeatureKind

DEFAULT_MAX_UNSEEN = 100
HOUR = 3600
DAY = 86400
WINDOW_FORMAT = 1


# -- layout: what the reference profile fixes ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeatureLayout:
    """The shape of one column's aggregate, taken from its reference profile.

    Attributes:
        name: the column.
        kind: numerical, categorical or boolean.
        edges: the reference histogram's bin edges (numerical); ``len(edges) - 1``
            bins, or one bin when the reference had fewer than two edges.
        low: the training minimum (numerical), ``None`` when unknown.
        high: the training maximum (numerical), ``None`` when unknown.
        categories: the reference categories, in the profile's order (categorical).
    """

    name: str
    kind: FeatureKind
    edges: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    categories: tuple[str, ...] = ()

    @classmethod
    def from_profile(cls, profile: FeatureProfile) -> FeatureLayout:
        if profile.kind is FeatureKind.NUMERICAL:
            low = profile.min if profile.min is not None else (profile.bin_edges[0] if profile.bin_edges else None)
            high = profile.max if profile.max is not None else (profile.bin_edges[-1] if profile.bin_edges else None)
            return cls(
                profile.name,
                profile.kind,
                edges=tuple(float(e) for e in profile.bin_edges),
                low=None if low is None else float(low),
                high=None if high is None else float(high),
            )
        return cls(profile.name, profile.kind, categories=tuple(str(c) for c in profile.categories))

    @property
    def numerical(self) -> bool:
        return self.kind is FeatureKind.NUMERICAL

    @property
    def bins(self) -> int:
        return max(len(self.edges) - 1, 1)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": str(self.kind)}
        if self.numerical:
            out |= {"edges": list(self.edges), "low": self.low, "high": self.high}
        else:
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureLayout:
        return cls(
            name=str(data["name"]),
            kind=FeatureKind(data["kind"]),
            edges=tuple(float(e) for e in data.get("edges", ())),
            low=None if data.get("low") is None else float(data["low"]),
            high=None if data.get("high") is None else float(data["high"]),
            categories=tuple(str(c) for c in data.get("categories", ())),
        )


class BatchBlock:
    """Precomputed arrays to aggregate several numerical columns with one set of numpy calls."""

    def __init__(self, layouts: Sequence[FeatureLayout]) -> None:
        self.names = [f.name for f in layouts]
        inner = [f.edges[1:-1] if len(f.edges) > 2 else () for f in layouts]
        width = max((len(e) for e in inner), default=0)
        self.inner = np.full((len(layouts), width), np.inf)  # +inf pads: no value is above them
        for j, edges in enumerate(inner):
            self.inner[j, : len(edges)] = edges
        bins = [f.bins for f in layouts]
        self.offsets = np.concatenate([[0], np.cumsum(bins)]).astype(np.int64)
        self.total_bins = int(self.offsets[-1])
        self.low = np.array([-np.inf if f.low is None else f.low for f in layouts])
        self.high = np.array([np.inf if f.high is None else f.high for f in layouts])

    def stats(self, values: np.ndarray) -> list[NumericBatch]:
        """Per column of ``values`` (rows × columns, float64, NaN missing), the batch's moments and counts."""
        finite = np.isfinite(values)
        n = finite.sum(axis=0)
        zeroed = np.where(finite, values, 0.0)
        safe_n = np.maximum(n, 1)
        mean = zeroed.sum(axis=0) / safe_n
        deviation = np.where(finite, values - mean, 0.0)
        m2 = np.einsum("ij,ij->j", deviation, deviation)
        low = np.where(finite, values, np.inf).min(axis=0, initial=np.inf)
        high = np.where(finite, values, -np.inf).max(axis=0, initial=-np.inf)
        below = (finite & (values < self.low)).sum(axis=0)
        above = (finite & (values > self.high)).sum(axis=0)
        # searchsorted(inner, v, side="left") is the number of inner edges strictly below v
        if self.inner.shape[1]:
            index = (values[:, :, None] > self.inner[None, :, :]).sum(axis=2)
        else:
            index = np.zeros(values.shape, dtype=np.int64)
        flat = (index + self.offsets[:-1][None, :])[finite]
        hist = np.bincount(flat, minlength=self.total_bins)
        rows = values.shape[0]
        out = []
        for j, (nj, mj, m2j, lo, hi, bj, aj) in enumerate(
            zip(
                n.tolist(),
                mean.tolist(),
                m2.tolist(),
                low.tolist(),
                high.tolist(),
                below.tolist(),
                above.tolist(),
                strict=True,
            )
        ):
            counts = hist[self.offsets[j] : self.offsets[j + 1]]
            out.append(NumericBatch(nj, rows - nj, mj, m2j, lo, hi, bj, aj, counts))
        return out


class NumericBatch(NamedTuple):
    present: int
    missing: int
    mean: float
    m2: float
    min: float
    max: float
    below: int
    above: int
    hist: np.ndarray


class CategoricalBatch(NamedTuple):
    present: int
    missing: int
    known: np.ndarray
    unseen: dict[str, int]
    overflow: int


# -- one feature ---------------------------------------------------------------------------------


class FeatureWindow:
    """One column's aggregate over one window (see the module docstring for what it holds)."""

    __slots__ = (
        "above",
        "below",
        "count",
        "hist",
        "invalid",
        "known",
        "layout",
        "m2",
        "max",
        "max_unseen",
        "mean",
        "min",
        "missing",
        "overflow",
        "unseen",
    )

    def __init__(self, layout: FeatureLayout, *, max_unseen: int = DEFAULT_MAX_UNSEEN) -> None:
        if max_unseen < 0:
            raise ValueError(f"max_unseen must be >= 0, got {max_unseen}")
        self.layout = layout
        self.max_unseen = max_unseen
        self.count = 0
        self.missing = 0
        self.invalid = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min: float | None = None
        self.max: float | None = None
        self.below = 0
        self.above = 0
        self.hist = np.zeros(layout.bins if layout.numerical else 0, dtype=np.int64)
        self.known = np.zeros(0 if layout.numerical else len(layout.categories), dtype=np.int64)
        self.unseen: dict[str, int] = {}
        self.overflow = 0

    @classmethod
    def from_profile(cls, profile: FeatureProfile, *, max_unseen: int = DEFAULT_MAX_UNSEEN) -> FeatureWindow:
        return cls(FeatureLayout.from_profile(profile), max_unseen=max_unseen)

    @property
    def name(self) -> str:
        return self.layout.name

    # -- derived numbers ------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Rows seen: present plus missing."""
        return self.count + self.missing

    @property
    def missing_rate(self) -> float:
        return self.missing / self.total if self.total else 0.0

    @property
    def invalid_rate(self) -> float:
        """Rejected values of the wrong type among all values sent: ``invalid / (total + invalid)``."""
        sent = self.total + self.invalid
        return self.invalid / sent if sent else 0.0

    @property
    def variance(self) -> float:
        """Sample variance (``ddof=1``) of the present values; 0 with fewer than two."""
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0

    @property
    def std(self) -> float:
        return float(np.sqrt(self.variance))

    @property
    def out_of_range(self) -> int:
        """Present values outside the training range (numerical)."""
        return self.below + self.above

    @property
    def out_of_range_rate(self) -> float:
        return self.out_of_range / self.count if self.count else 0.0

    @property
    def unseen_total(self) -> int:
        """Present values of categories the reference does not list (exact, cap or not)."""
        return sum(self.unseen.values()) + self.overflow

    @property
    def unseen_rate(self) -> float:
        return self.unseen_total / self.count if self.count else 0.0

    def categories(self) -> dict[str, int]:
        """Counts per reference category."""
        return dict(zip(self.layout.categories, self.known.tolist(), strict=True))

    # -- adding data ----------------------------------------------------------------------------

    def update(self, values: Any) -> None:
        """Add a batch of this column's values (a Series, array or list; ``None``/NaN are missing)."""
        if self.layout.numerical:
            numbers = as_float_matrix(values)
            self._add_numeric(BatchBlock([self.layout]).stats(numbers)[0])
        else:
            self._add_categorical(categorical_batch(self.layout, values, self.max_unseen))

    def add_invalid(self, n: int | np.integer[Any] = 1) -> None:
        """Count ``n`` values of this column that were rejected for their type (no values are needed).

        Raises:
            ValueError: ``n`` is negative or not a whole number.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"invalid count of {self.name!r} must be a whole number >= 0, got {n!r}")
        self.invalid += int(n)

    def _add_numeric(self, batch: NumericBatch) -> None:
        self.missing += batch.missing
        if batch.present:
            self._add_moments(batch.present, batch.mean, batch.m2, batch.min, batch.max)
            self.below += batch.below
            self.above += batch.above
            self.hist += batch.hist

    def _add_moments(self, count: int, mean: float, m2: float, low: float | None, high: float | None) -> None:
        """Chan et al.'s parallel update of (count, mean, m2) with another group's."""
        if count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = count, mean, m2
        else:
            total = self.count + count
            delta = mean - self.mean
            self.mean += delta * count / total
            self.m2 += m2 + delta * delta * self.count * count / total
            self.count = total
        self.min = low if self.min is None or (low is not None and low < self.min) else self.min
        self.max = high if self.max is None or (high is not None and high > self.max) else self.max

    def _add_categorical(self, batch: CategoricalBatch) -> None:
        self.count += batch.present
        self.missing += batch.missing
        self.known += batch.known
        self._add_unseen(batch.unseen, batch.overflow)

    def _add_unseen(self, unseen: Mapping[str, int], overflow: int) -> None:
        self.overflow += overflow
        if not unseen:
            return
        merged = dict(self.unseen)
        for key, n in unseen.items():
            merged[key] = merged.get(key, 0) + n
        self.unseen, dropped = _cap(merged, self.max_unseen)
        self.overflow += dropped

    def absorb(self, other: FeatureWindow) -> None:
        """Add ``other`` into this window, in place."""
        if other.layout != self.layout:
            raise ValueError(f"cannot merge windows of {self.name!r}: their reference layouts differ")
        if other.max_unseen != self.max_unseen:
            raise ValueError(f"cannot merge windows of {self.name!r}: max_unseen differs")
        self.invalid += other.invalid
        if self.layout.numerical:
            self.missing += other.missing
            self._add_moments(other.count, other.mean, other.m2, other.min, other.max)
            self.below += other.below
            self.above += other.above
            self.hist += other.hist
        else:
            self.count += other.count
            self.missing += other.missing
            self.known += other.known
            self._add_unseen(other.unseen, other.overflow)

    def copy(self) -> FeatureWindow:
        out = FeatureWindow(self.layout, max_unseen=self.max_unseen)
        out.absorb(self)
        return out

    def merge(self, other: FeatureWindow) -> FeatureWindow:
        """A new window holding both (neither is changed)."""
        out = self.copy()
        out.absorb(other)
        return out

    # -- serialization --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layout": self.layout.to_dict(),
            "max_unseen": self.max_unseen,
            "count": self.count,
            "missing": self.missing,
            "invalid": self.invalid,
        }
        if self.layout.numerical:
            out |= {
                "mean": self.mean,
                "m2": self.m2,
                "min": self.min,
                "max": self.max,
                "below": self.below,
                "above": self.above,
                "hist": self.hist.tolist(),
            }
        else:
            out |= {"known": self.known.tolist(), "unseen": dict(self.unseen), "overflow": self.overflow}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureWindow:
        layout = FeatureLayout.from_dict(data["layout"])
        out = cls(layout, max_unseen=int(data["max_unseen"]))
        out.count = int(data["count"])
        out.missing = int(data["missing"])
        out.invalid = int(data.get("invalid", 0))  # absent from windows stored before it existed
        if layout.numerical:
            out.mean = float(data["mean"])
            out.m2 = float(data["m2"])
            out.min = None if data["min"] is None else float(data["min"])
            out.max = None if data["max"] is None else float(data["max"])
            out.below = int(data["below"])
            out.above = int(data["above"])
            out.hist = _counts(data["hist"], layout.bins, layout.name)
        else:
            out.known = _counts(data["known"], len(layout.categories), layout.name)
            out.unseen = {str(k): int(v) for k, v in data["unseen"].items()}
            out.overflow = int(data["overflow"])
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureWindow):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FeatureWindow({self.name!r}, count={self.count}, missing={self.missing}, invalid={self.invalid})"


def _counts(values: Sequence[Any], size: int, name: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.int64)
    if out.shape != (size,):
        raise ValueError(f"window of {name!r} has {out.size} counts where its layout has {size}")
    return out


def _cap(counts: dict[str, int], cap: int) -> tuple[dict[str, int], int]:
    """Keep the ``cap`` most frequent (ties by name); return them and how many values were dropped."""
    if len(counts) <= cap:
        return counts, 0
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[:cap])
    return kept, sum(n for _, n in ranked[cap:])


def as_float_matrix(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        column = values.astype("float64", copy=False)
    elif isinstance(values, pd.Series):
        column = values.to_numpy(dtype="float64", na_value=np.nan)
    else:
        column = pd.Series(np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values)
        column = column.to_numpy(dtype="float64", na_value=np.nan)
    matrix: np.ndarray = column.reshape(-1, 1)
    return matrix


def categorical_batch(layout: FeatureLayout, values: Any, cap: int) -> CategoricalBatch:
    """Counts per reference category and per unseen category (the ``cap`` most frequent) of one batch."""
    keys, numbers, missing = _distinct(values)
    positions = _positions(layout.categories)
    known = [0] * len(layout.categories)
    unseen: dict[str, int] = {}
    for key, n in zip(keys, numbers, strict=True):  # one step per distinct value, not per row
        position = positions.get(key)
        if position is None:
            unseen[key] = unseen.get(key, 0) + n
        else:
            known[position] += n
    unseen, overflow = _cap(unseen, cap)
    return CategoricalBatch(sum(numbers), missing, np.array(known, dtype=np.int64), unseen, overflow)


def _distinct(values: Any) -> tuple[list[str], list[int], int]:
    """The distinct present values of a column as the reference names them, their counts, and the missing count."""
    array = values.to_numpy() if isinstance(values, pd.Series) and isinstance(values.dtype, np.dtype) else values
    if isinstance(array, np.ndarray) and array.dtype.kind in "biuf":
        missing = 0
        if array.dtype.kind == "f":
            present = ~np.isnan(array)
            missing = int(array.size - present.sum())
            array = array[present]
        uniques, counts = np.unique(array, return_counts=True)
        return uniques.astype(str).tolist(), counts.tolist(), missing
    if not isinstance(values, pd.Series | pd.Index | pd.Categorical | np.ndarray):
        values = np.asarray(values, dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    found = codes >= 0
    counts = np.bincount(codes[found], minlength=len(uniques))
    used = counts > 0  # a Categorical column lists its unused categories too
    numbers = counts[used].tolist()
    return [category_label(v) for v in np.asarray(uniques, dtype=object)[used]], numbers, int(codes.size - found.sum())


@functools.lru_cache(maxsize=256)
def _positions(categories: tuple[str, ...]) -> dict[str, int]:
    return {category: i for i, category in enumerate(categories)}


def category_label(value: Any) -> str:
    """A category as the reference profile names it."""
    return str(value.item() if isinstance(value, np.generic) else value)
