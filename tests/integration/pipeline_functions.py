"""Training functions for the pipeline integration tests, named ``pipeline_functions:<function>``.

The worker (a ``corral worker`` or ``corral serve`` subprocess) spawns a child that imports this module, so the
tests put this folder on the subprocesses' ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

TARGET = "target"


def good(frame: pd.DataFrame, context: Any) -> Any:
    """A scaled logistic regression: clearly better than a heavily regularised champion."""
    context.logger.info("training on %d rows with %s", len(frame), dict(context.params))
    features = frame.drop(columns=TARGET)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features, frame[TARGET])


def slow(frame: pd.DataFrame, context: Any) -> Any:
    """:func:`good` after sleeping ``params["seconds"]`` (default 2); writes its pid to ``params["pid_file"]``
    first when given (the child is its own process group, so a test that kills its worker kills it too)."""
    pid_file = context.params.get("pid_file")
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()), encoding="utf-8")
    seconds = float(context.params.get("seconds", 2.0))
    context.logger.info("sleeping %.1f s before fitting", seconds)
    time.sleep(seconds)
    return good(frame, context)
