from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from corral.core.anomaly import AnomalyScorer
from corral.core.profile import Profile, profile_frame
from corral.core.schema import Signature


@pytest.fixture
def training() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"a": rng.normal(10, 2, 5000), "b": rng.normal(-3, 0.5, 5000), "c": rng.choice(["x", "y"], 5000)}
    )


def scorer_for(frame: pd.DataFrame, **kw: float) -> AnomalyScorer:
    sig = Signature.infer(frame)
    scorer = AnomalyScorer.from_profile(Profile(len(frame), profile_frame(frame, sig)), sig, **kw)
    assert scorer is not None
    return scorer


def test_scores_are_robust_z_of_the_most_unusual_feature(training: pd.DataFrame) -> None:
    scorer = scorer_for(training)
    assert scorer.columns == ("a", "b")  # categorical features are not scored
    np.testing.assert_allclose(scorer.center, training[["a", "b"]].median(), rtol=1e-12)
    iqr = training[["a", "b"]].quantile(0.75) - training[["a", "b"]].quantile(0.25)
    np.testing.assert_allclose(scorer.scale, iqr / 1.349, rtol=1e-12)
    rows = pd.DataFrame(
        {"a": [scorer.center[0], scorer.center[0] + 3 * scorer.scale[0], 100.0], "b": [-3.0, -3.0, -3.0]}
    )
    scores, flagged = scorer.score(rows)
    assert scores[1] == pytest.approx(max(3.0, abs(-3.0 - scorer.center[1]) / scorer.scale[1]))
    assert flagged.tolist() == [False, False, True] and scores[2] > 40


def test_training_rows_are_rarely_flagged_and_missing_values_are_skipped(training: pd.DataFrame) -> None:
    scorer = scorer_for(training)
    _, flagged = scorer.score(training)
    assert flagged.mean() < 0.001
    scores, flagged = scorer.score(pd.DataFrame({"a": [np.nan], "b": [np.nan]}))
    assert scores.tolist() == [0.0] and flagged.tolist() == [False]


def test_constant_features_and_no_numerical_features() -> None:
    constant = pd.DataFrame({"k": [5.0] * 100, "v": np.arange(100.0)})
    scorer = scorer_for(constant)
    scores, _ = scorer.score(pd.DataFrame({"k": [5.0, 6.0], "v": [50.0, 50.0]}))
    assert scores[0] < 1 and scores[1] == pytest.approx(1.0)  # zero spread: unit scale, no division by zero
    only_text = pd.DataFrame({"c": ["x", "y"]})
    sig = Signature.infer(only_text)
    assert AnomalyScorer.from_profile(Profile(2, profile_frame(only_text, sig)), sig) is None
