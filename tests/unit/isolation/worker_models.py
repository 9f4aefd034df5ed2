"""Custom models that misbehave inside an isolated worker (shipped with the artifact through code_paths)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd


class Moody:
    """Answers ``2 * x``; exits the process when x == 13, sleeps a minute when x == 7 and two seconds when
    x == 11, raises when x == 5,
    and allocates ``x`` MiB when x >= 1000 (to meet a memory limit)."""

    def save(self, path: Path) -> None:
        (path / "moody.txt").write_text("moody")

    @classmethod
    def load(cls, path: Path) -> Moody:
        assert (path / "moody.txt").read_text() == "moody"
        return cls()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        x = frame["x"].to_numpy(dtype="float64")
        if (x == 13).any():
            os._exit(9)
        if (x == 7).any():
            time.sleep(60)
        if (x == 11).any():
            time.sleep(2)
        if (x == 5).any():
            raise ValueError("five is not a number this model likes")
        if (x >= 1000).any():
            hoard = np.ones(int(x.max()) * 1024 * 1024 // 8)
            return np.full(len(x), float(hoard.sum()))
        return 2 * x
