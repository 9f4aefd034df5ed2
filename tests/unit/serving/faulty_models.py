"""Custom (``python`` flavor) challengers that misbehave once armed: they register, load and warm like any
model, then raise or stall on traffic. Importable by name, as the custom runtime requires."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

ARMED = False  # tests arm the models after the server loaded them


class Faulty:
    """Predicts class 0 for everything; once :data:`ARMED`, ``raise`` mode fails and ``slow`` mode stalls."""

    classes_: ClassVar[list[int]] = [0, 1]

    def __init__(self, mode: str = "raise", delay: float = 0.05) -> None:
        self.mode = mode
        self.delay = delay

    def predict(self, frame: pd.DataFrame) -> Any:
        if ARMED and self.mode == "raise":
            raise RuntimeError("challenger exploded")
        if ARMED and self.mode == "slow":
            time.sleep(self.delay)
        return np.zeros(len(frame), dtype="int64")

    def save(self, path: Path) -> None:
        (path / "faulty.json").write_text(json.dumps({"mode": self.mode, "delay": self.delay}))

    @classmethod
    def load(cls, path: Path) -> Faulty:
        data = json.loads((path / "faulty.json").read_text())
        return cls(data["mode"], data["delay"])
