"""A per-request outlier score against the training data: robust z-scores from the reference profile.

For each numerical feature the training median and interquartile range give a
robust scale (IQR / 1.349, the standard deviation of a normal distribution
with that IQR; the standard deviation when the IQR is zero). A row's score is
its largest absolute robust z-score over the features: "how many robust
standard deviations its most unusual feature is from the training median".
Missing values are skipped. Rows scoring above ``threshold`` are flagged.

It is cheap (one vectorized pass, microseconds per row), needs no model fitted
at registration, and is computed from the profile every version already has.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from corral.core.profile import Profile
from corral.core.schema import FeatureKind, Signature

DEFAULT_THRESHOLD = 6.0
_IQR_TO_SIGMA = 1.349


@dataclass(frozen=True, slots=True)
class AnomalyScorer:
    """Scores rows of a validated frame; see the module docstring."""

    columns: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    threshold: float = DEFAULT_THRESHOLD

    @classmethod
    def from_profile(
        cls, profile: Profile, signature: Signature, *, threshold: float = DEFAULT_THRESHOLD
    ) -> AnomalyScorer | None:
        """The scorer for a version, or ``None`` when it has no numerical feature with a usable profile."""
        columns, center, scale = [], [], []
        for spec in signature.inputs:
            feature = profile.features.get(spec.name)
            if spec.kind is not FeatureKind.NUMERICAL or feature is None or not feature.quantiles:
                continue
            q25, q50, q75 = (feature.quantiles.get(k) for k in ("0.25", "0.5", "0.75"))
            if q25 is None or q50 is None or q75 is None:
                continue
            spread = (q75 - q25) / _IQR_TO_SIGMA
            if not spread > 0:
                spread = feature.std or 0.0
            columns.append(spec.name)
            center.append(q50)
            scale.append(spread if spread > 0 else 1.0)
        if not columns:
            return None
        return cls(tuple(columns), np.asarray(center, dtype="float64"), np.asarray(scale, dtype="float64"), threshold)

    def score(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the score (largest absolute robust z; 0.0 when every value is missing) and the flag."""
        if list(frame.columns) == list(self.columns):  # all-numeric signatures: one block, no column selection
            values = frame.to_numpy(dtype="float64", na_value=np.nan)
        else:
            values = np.column_stack([frame[c].to_numpy(dtype="float64", na_value=np.nan) for c in self.columns])
        z = np.abs(values - self.center) / self.scale
        scores = np.fmax.reduce(z, axis=1, initial=0.0)  # fmax skips NaN: missing values do not score
        return scores, scores > self.threshold
