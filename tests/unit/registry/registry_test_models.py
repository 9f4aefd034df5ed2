"""Custom model classes for the registry tests (importable, as custom models must be)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


class Threshold:
    """Predicts 1 when ``column`` exceeds ``cut``."""

    def __init__(self, column: str, cut: float) -> None:
        self.column = column
        self.cut = cut

    def save(self, path: Path) -> None:
        (path / "params.json").write_text(json.dumps({"column": self.column, "cut": self.cut}))

    @classmethod
    def load(cls, path: Path) -> Threshold:
        data = json.loads((path / "params.json").read_text())
        return cls(data["column"], data["cut"])

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return (frame[self.column].to_numpy() > self.cut).astype(int)


class Forgetful(Threshold):
    """Saves without its cut, so the reloaded model predicts differently."""

    def save(self, path: Path) -> None:
        (path / "params.json").write_text(json.dumps({"column": self.column, "cut": -1e12}))
