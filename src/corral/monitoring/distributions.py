"""One feature's distribution, as raw samples or as counts, so both compare the same way.

Drift detectors compare a *reference* (training data, or the profile stored
with a model version) with a *current* production window. The data comes in
two shapes:

- **samples** (offline): the column itself, a numpy array or pandas Series.
  Missing values (``NaN``, ``None``, and for numbers ``±inf`` like the
  profiles) are dropped and counted in ``missing``. Numerical samples are
  sorted once here, so every detector can use ``searchsorted``.
- **counts** (streaming): numerical counts over bin edges (the reference
  profile's quantile edges, open at both ends like
  :func:`corral.core.profile.histogram`), or category counts (plus the
  profile's ``other`` bucket).

Categorical and boolean samples are always turned into category counts (a
univariate test of a categorical column needs nothing else), with the labels
stringified exactly like :func:`corral.core.profile.profile_column` does.

:func:`common_counts` puts two distributions on common bins (or categories);
:func:`cdfs_on_merged_grid` evaluates two sample CDFs on their merged values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from corral.core.profile import FeatureProfile, histogram
from corral.core.schema import FeatureKind
from corral.errors import DriftInputError

DEFAULT_SAMPLE_BINS = 10  # quantile bins of the reference when both sides are samples


@dataclass(frozen=True, slots=True, eq=False)
class Distribution:
    """One feature's values: sorted samples, or counts over bins or categories.

    Build one with :meth:`from_values`, :meth:`from_profile` or :meth:`from_counts`.

    Attributes:
        kind: numerical, categorical or boolean.
        samples: numerical samples, sorted and finite (``None`` when binned).
        edges: numerical bin edges, ``len(counts) + 1`` of them (binned only).
        counts: counts per bin, or per category in ``categories`` order.
        categories: category labels (categorical and boolean only).
        other: count of the profile's ``other`` bucket (rare categories not named).
        missing: values that were missing (not in ``samples`` or ``counts``).
        std: standard deviation when known (samples, or the stored profile).
        name: the feature's name, carried into results.
    """

    kind: FeatureKind
    samples: np.ndarray | None = None
    edges: np.ndarray | None = None
    counts: np.ndarray | None = None
    categories: tuple[str, ...] = ()
    other: int = 0
    missing: int = 0
    std: float | None = None
    name: str = ""

    @property
    def numerical(self) -> bool:
        return self.kind is FeatureKind.NUMERICAL

    @property
    def binned(self) -> bool:
        """True for counts (binned numbers or categories), False for raw numerical samples."""
        return self.samples is None

    @property
    def size(self) -> int:
        """How many non-missing values the distribution holds."""
        if self.samples is not None:
            return int(self.samples.size)
        total = int(self.counts.sum()) if self.counts is not None else 0
        return total + self.other

    @property
    def missing_rate(self) -> float:
        total = self.size + self.missing
        return self.missing / total if total else 0.0

    @property
    def midpoints(self) -> np.ndarray:
        """Bin midpoints (binned numerical only)."""
        if self.edges is None:
            raise DriftInputError(f"{self._label()} has no bins")
        mids: np.ndarray = (self.edges[:-1] + self.edges[1:]) / 2.0
        return mids

    def _label(self) -> str:
        return f"feature {self.name!r}" if self.name else "distribution"

    @classmethod
    def from_values(
        cls, values: Any, kind: FeatureKind, *, edges: Sequence[float] | np.ndarray | None = None, name: str = ""
    ) -> Distribution:
        """From raw values (array-like or Series); with ``edges`` numbers are binned on them.

        Raises:
            DriftInputError: numerical values that are not numbers, or bad edges.
        """
        kind = FeatureKind(kind)
        if kind is not FeatureKind.NUMERICAL:
            return cls._categorical_from_values(values, kind, name)
        try:
            if isinstance(values, pd.Series | pd.Index):
                array = values.to_numpy(dtype="float64", na_value=np.nan)
            else:
                array = np.asarray(values, dtype="float64")
        except (TypeError, ValueError) as exc:
            raise DriftInputError(f"feature {name!r} is numerical but its values are not numbers: {exc}") from exc
        array = array.ravel()
        finite = np.isfinite(array)
        present = array if finite.all() else array[finite]
        missing = int(array.size - present.size)
        if edges is not None:
            edge_array = _check_edges(edges, name)
            counts = histogram(present, edge_array).astype("int64")
            return cls(kind, edges=edge_array, counts=counts, missing=missing, std=_std(present), name=name)
        samples = np.sort(present)
        return cls(kind, samples=samples, missing=missing, std=_std(samples), name=name)

    @classmethod
    def _categorical_from_values(cls, values: Any, kind: FeatureKind, name: str) -> Distribution:
        series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object))
        present = series.dropna()
        merged: dict[str, int] = {}
        for key, count in present.value_counts(sort=False).items():
            label = str(key.item() if isinstance(key, np.generic) else key)
            merged[label] = merged.get(label, 0) + int(count)
        return cls.from_counts(merged, kind, missing=int(series.size - present.size), name=name)

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int] | Sequence[int] | np.ndarray,
        kind: FeatureKind,
        *,
        edges: Sequence[float] | np.ndarray | None = None,
        other: int = 0,
        missing: int = 0,
        std: float | None = None,
        name: str = "",
    ) -> Distribution:
        """From counts: per bin over ``edges`` (numerical) or a ``{category: count}`` mapping.

        Raises:
            DriftInputError: negative counts, counts that do not fit the edges, or the wrong shape for the kind.
        """
        kind = FeatureKind(kind)
        if missing < 0 or other < 0:
            raise DriftInputError(f"feature {name!r}: missing and other counts cannot be negative")
        if kind is FeatureKind.NUMERICAL:
            if edges is None or isinstance(counts, Mapping):
                raise DriftInputError(f"numerical feature {name!r} needs bin counts with their bin edges")
            edge_array = _check_edges(edges, name)
            array = _check_counts(counts, name)
            if array.size != edge_array.size - 1:
                raise DriftInputError(
                    f"feature {name!r} has {array.size} bin counts for {edge_array.size} edges (need one fewer)"
                )
            return cls(kind, edges=edge_array, counts=array, missing=missing, std=std, name=name)
        if not isinstance(counts, Mapping):
            raise DriftInputError(f"{kind} feature {name!r} needs a {{category: count}} mapping")
        labels = tuple(str(k) for k in counts)
        array = _check_counts([int(v) for v in counts.values()], name)
        return cls(kind, counts=array, categories=labels, other=int(other), missing=missing, name=name)

    @classmethod
    def from_profile(cls, profile: FeatureProfile) -> Distribution:
        """From a stored :class:`FeatureProfile` (a reference profile, or a window profiled on its bins)."""
        if profile.kind is FeatureKind.NUMERICAL:
            empty = not profile.bin_edges  # a column with no numbers at all
            return cls.from_counts(
                [0] if empty else list(profile.bin_counts),
                profile.kind,
                edges=(0.0, 0.0) if empty else profile.bin_edges,
                missing=profile.missing,
                std=profile.std,
                name=profile.name,
            )
        return cls.from_counts(
            profile.categories, profile.kind, other=profile.other, missing=profile.missing, name=profile.name
        )


def _std(values: np.ndarray) -> float | None:
    return float(np.std(values, ddof=1)) if values.size > 1 else None


def _check_edges(edges: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(edges, dtype="float64")
    if array.ndim != 1 or array.size < 2 or not np.isfinite(array).all() or (np.diff(array) < 0).any():
        raise DriftInputError(f"feature {name!r}: bin edges must be at least two finite, non-decreasing numbers")
    return array


def _check_counts(counts: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(counts, dtype="int64")
    if array.ndim != 1 or (array < 0).any():
        raise DriftInputError(f"feature {name!r}: counts must be a flat sequence of non-negative integers")
    return array


def common_counts(
    reference: Distribution, current: Distribution, *, bins: int = DEFAULT_SAMPLE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Both distributions' counts over common bins or categories: ``(reference, current, edges)``.

    - categories: the union of both sides' labels (a label one side never saw
      counts 0 there). When a side has an ``other`` bucket, the other side's
      labels it does not name may be hiding in it, so they are folded into
      ``other`` too, which then becomes one more common category;
    - numbers, both binned: the edges must be the same;
    - numbers, one binned: the samples are binned on the other side's edges;
    - numbers, both samples: ``bins`` quantile bins of the reference (fewer
      when quantiles coincide), open at both ends.

    ``edges`` is ``None`` for categories.
    """
    if not reference.numerical:
        ref_counts, cur_counts = _common_categories(reference, current)
        return ref_counts, cur_counts, None
    if reference.edges is not None and current.edges is not None:
        if not np.array_equal(reference.edges, current.edges):
            raise DriftInputError(
                f"{reference._label()}: reference and current were binned on different edges; "
                "count the production window on the reference profile's bin edges"
            )
        edges = reference.edges
    elif reference.edges is not None:
        edges = reference.edges
    elif current.edges is not None:
        edges = current.edges
    else:
        assert reference.samples is not None
        edges = np.unique(np.quantile(reference.samples, np.linspace(0.0, 1.0, bins + 1)))
        if edges.size == 1:
            edges = np.array([edges[0], edges[0]])
    return _counts_on(reference, edges), _counts_on(current, edges), edges


def _counts_on(dist: Distribution, edges: np.ndarray) -> np.ndarray:
    if dist.samples is not None:
        return histogram(dist.samples, edges).astype("float64")
    assert dist.counts is not None
    return dist.counts.astype("float64")


def _common_categories(reference: Distribution, current: Distribution) -> tuple[np.ndarray, np.ndarray]:
    assert reference.counts is not None
    assert current.counts is not None
    ref = dict(zip(reference.categories, reference.counts.tolist(), strict=True))
    cur = dict(zip(current.categories, current.counts.tolist(), strict=True))
    ref_other, cur_other = reference.other, current.other
    if reference.other:
        for label in [k for k in cur if k not in ref]:
            cur_other += cur.pop(label)
    if current.other:
        for label in [k for k in ref if k not in cur]:
            ref_other += ref.pop(label)
    labels = sorted(set(ref) | set(cur))
    ref_counts = [ref.get(label, 0) for label in labels]
    cur_counts = [cur.get(label, 0) for label in labels]
    if ref_other or cur_other:
        ref_counts.append(ref_other)
        cur_counts.append(cur_other)
    return np.asarray(ref_counts, dtype="float64"), np.asarray(cur_counts, dtype="float64")


def cdfs_on_merged_grid(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical CDFs of two sorted samples at each distinct value of both: ``(grid, cdf_ref, cdf_cur)``.

    What scipy's ``ks_2samp`` and ``wasserstein_distance`` evaluate, without
    sorting again: a stable merge of the two sorted runs, then running counts
    of which side each merged value came from (read at the last of equal values).
    """
    merged = np.concatenate([reference, current])
    order = np.argsort(merged, kind="stable")  # two sorted runs: a merge
    grid = merged[order]
    cum_ref = np.cumsum(order < reference.size)
    cum_cur = np.arange(1, grid.size + 1) - cum_ref
    last = np.empty(grid.size, dtype=bool)
    last[:-1] = grid[1:] != grid[:-1]
    last[-1] = True
    if not last.all():
        grid, cum_ref, cum_cur = grid[last], cum_ref[last], cum_cur[last]
    return grid, cum_ref / reference.size, cum_cur / current.size


__all__ = ["DEFAULT_SAMPLE_BINS", "Distribution", "cdfs_on_merged_grid", "common_counts"]
