"""The training functions `corral demo`'s pipelines name (imported by name in the training child process)."""

from __future__ import annotations

import json
import time
from pathlib import Path
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


def hesitant(frame: pd.DataFrame, context: Any) -> Any:
    """A deliberately slow candidate: as accurate as :func:`car_loan`, but every call waits (what a careless
    change does, say a lookup per request): it passes the gate, and production catches it."""
    return Hesitant(car_loan(frame, context))


class Hesitant:
    """A fitted classifier whose every call pauses first (a custom-flavor model: ``save``, ``load``, ``predict``).

    The gate scores its evaluation rows in one call and pays the pause once; a server pays it on every request,
    so the guard's latency rule takes it off the traffic.
    """

    PAUSE_SECONDS = 0.25
    _FILE, _TYPES = "model.skops", "trusted_types.json"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.classes_ = list(model.classes_)

    def fit(self, features: pd.DataFrame, target: pd.Series) -> Hesitant:
        self.model.fit(features, target)
        self.classes_ = list(self.model.classes_)
        return self

    def save(self, path: Path) -> None:
        import skops.io as sio

        sio.dump(self.model, path / self._FILE)
        types = sorted(sio.get_untrusted_types(file=path / self._FILE))  # this model's own, trained just now
        (path / self._TYPES).write_text(json.dumps(types))

    @classmethod
    def load(cls, path: Path) -> Hesitant:
        import skops.io as sio

        trusted = json.loads((path / cls._TYPES).read_text())
        return cls(sio.load(path / cls._FILE, trusted=trusted))

    def predict(self, frame: pd.DataFrame) -> Any:
        time.sleep(self.PAUSE_SECONDS)
        return self.model.predict(frame)

    def predict_proba(self, frame: pd.DataFrame) -> Any:
        time.sleep(self.PAUSE_SECONDS)
        return self.model.predict_proba(frame)
