"""Reference profiles: a compact statistical summary of training data.

A profile is computed once at registration and stored with the version.
Monitoring compares production windows against it, so its shape is the
contract between the registry and monitoring:

- numerical features: count, missing, min/max/mean/std, quantiles, and a
  histogram over ``bins`` quantile edges (``bins + 1`` edges, first and last
  the training min and max; production values outside fall in under/overflow);
- categorical and boolean features: count, missing, and category counts
  (the top ``max_categories``; the rest summed under ``other``);
- the model's outputs on the training features, profiled the same way
  (label counts for classifiers, a histogram for regressors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from corral.core.schema import FeatureKind, Signature

PROFILE_FORMAT = 1
QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


@dataclass(frozen=True, slots=True)
class FeatureProfile:
    """Summary of one column (a feature, or a model output)."""

    name: str
    kind: FeatureKind
    count: int
    missing: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)
    bin_edges: tuple[float, ...] = ()
    bin_counts: tuple[int, ...] = ()
    categories: dict[str, int] = field(default_factory=dict)
    other: int = 0

    @property
    def missing_rate(self) -> float:
        total = self.count + self.missing
        return self.missing / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": str(self.kind), "count": self.count, "missing": self.missing}
        if self.kind is FeatureKind.NUMERICAL:
            out |= {
                "min": self.min,
                "max": self.max,
                "mean": self.mean,
                "std": self.std,
                "quantiles": self.quantiles,
                "bin_edges": list(self.bin_edges),
                "bin_counts": list(self.bin_counts),
            }
        else:
            out |= {"categories": self.categories, "other": self.other}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureProfile:
        return cls(
            name=data["name"],
            kind=FeatureKind(data["kind"]),
            count=int(data["count"]),
            missing=int(data["missing"]),
            min=data.get("min"),
            max=data.get("max"),
            mean=data.get("mean"),
            std=data.get("std"),
            quantiles=dict(data.get("quantiles", {})),
            bin_edges=tuple(data.get("bin_edges", ())),
            bin_counts=tuple(int(c) for c in data.get("bin_counts", ())),
            categories={str(k): int(v) for k, v in data.get("categories", {}).items()},
            other=int(data.get("other", 0)),
        )


@dataclass(frozen=True, slots=True)
class Profile:
    """Profiles of every feature and of the model's outputs, over ``rows`` rows."""

    rows: int
    features: dict[str, FeatureProfile]
    outputs: dict[str, FeatureProfile] = field(default_factory=dict)
    format: int = PROFILE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "rows": self.rows,
            "features": [f.to_dict() for f in self.features.values()],
            "outputs": [f.to_dict() for f in self.outputs.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        return cls(
            rows=int(data["rows"]),
            features={f["name"]: FeatureProfile.from_dict(f) for f in data["features"]},
            outputs={f["name"]: FeatureProfile.from_dict(f) for f in data.get("outputs", [])},
            format=int(data.get("format", PROFILE_FORMAT)),
        )


def profile_column(
    name: str, values: pd.Series, kind: FeatureKind, *, bins: int = 20, max_categories: int = 200
) -> FeatureProfile:
    """Profile one column; numbers get quantile bins, everything else category counts."""
    missing = int(values.isna().sum())
    present = values.dropna()
    if kind is not FeatureKind.NUMERICAL:
        counts = present.map(lambda v: str(v.item() if isinstance(v, np.generic) else v)).value_counts()
        counts = counts.sort_values(ascending=False, kind="stable")
        top = counts.iloc[:max_categories]
        return FeatureProfile(
            name,
            kind,
            len(present),
            missing,
            categories={str(k): int(v) for k, v in top.items()},
            other=int(counts.iloc[max_categories:].sum()),
        )
    numbers = present.to_numpy(dtype="float64")
    numbers = numbers[np.isfinite(numbers)]
    if numbers.size == 0:
        return FeatureProfile(name, kind, 0, missing + len(present))
    qs = np.quantile(numbers, QUANTILES)
    edges = np.unique(np.quantile(numbers, np.linspace(0.0, 1.0, bins + 1)))
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
    counts = histogram(numbers, edges)
    return FeatureProfile(
        name,
        kind,
        int(numbers.size),
        missing + int(len(present) - numbers.size),
        min=float(numbers.min()),
        max=float(numbers.max()),
        mean=float(numbers.mean()),
        std=float(numbers.std(ddof=1)) if numbers.size > 1 else 0.0,
        quantiles={f"{q:g}": float(v) for q, v in zip(QUANTILES, qs, strict=True)},
        bin_edges=tuple(float(e) for e in edges),
        bin_counts=tuple(int(c) for c in counts),
    )


def histogram(values: np.ndarray, edges: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Counts per bin, right-closed like the training bins, with the ends open.

    Values below the first edge count in the first bin and values above the
    last edge in the last bin, so production data always lands somewhere.
    """
    edges = np.asarray(edges, dtype="float64")
    nbins = max(len(edges) - 1, 1)
    index = np.searchsorted(edges[1:-1], values, side="left") if len(edges) > 2 else np.zeros(len(values), int)
    return np.bincount(np.clip(index, 0, nbins - 1), minlength=nbins)


def profile_frame(frame: pd.DataFrame, signature: Signature, *, bins: int = 20) -> dict[str, FeatureProfile]:
    """Profile every signature feature present in ``frame``."""
    return {spec.name: profile_column(spec.name, frame[spec.name], spec.kind, bins=bins) for spec in signature.inputs}
