"""Training functions the pipeline tests name as ``pipeline_models:<function>`` (imported in a child process)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

TARGET = "target"


def good(frame: pd.DataFrame, context: Any) -> Any:
    """A scaled logistic regression: as good as or better than the champion."""
    context.logger.info("training on %d rows with %s", len(frame), dict(context.params))
    features = frame.drop(columns=TARGET)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features, frame[TARGET])


def bad(frame: pd.DataFrame, context: Any) -> Any:
    """Always answers the rarer class: clearly worse than any champion."""
    return DummyClassifier(strategy="constant", constant=0).fit(frame.drop(columns=TARGET), frame[TARGET])


def broken(frame: pd.DataFrame, context: Any) -> Any:
    raise RuntimeError("the feature store is down")
