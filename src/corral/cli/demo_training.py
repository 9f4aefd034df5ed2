"""The training functions `corral demo`'s pipelines name (imported by name in the training child process)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from corral.datasets import CATEGORICAL, TARGET


def car_loan(frame: pd.DataFrame, context: Any) -> Any:
    """Gradient boosting on the car-loan applications (categories one-hot encoded)."""
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    context.logger.info("training on %d applications, the previous version is %s", len(frame), context.previous)
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), CATEGORICAL), remainder="passthrough"),
        HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=7),
    )
    return model.fit(frame.drop(columns=TARGET), frame[TARGET])


def careless(frame: pd.DataFrame, context: Any) -> Any:
    """A deliberately bad candidate: it predicts that every loan is repaid."""
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="constant", constant=1).fit(frame.drop(columns=TARGET), frame[TARGET])
