"""Training functions for the subprocess tests, imported by the spawned child as ``training_functions:<name>``.

pytest puts this folder on ``sys.path`` and a spawned child inherits the parent's ``sys.path``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from corral.pipelines.training import TrainingContext

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression


def fit_logistic(frame: pd.DataFrame, context: TrainingContext) -> LogisticRegression:
    """A real model: logistic regression on every column but ``target``; logs and prints as it goes."""
    from sklearn.linear_model import LogisticRegression  # here, so that the other functions start quickly

    context.logger.info("training on %d rows with params %s", len(frame), dict(context.params))
    print("hello from stdout")
    print("hello from stderr", file=sys.stderr)
    if context.previous is not None:
        context.logger.info("replacing version %s", context.previous.get("version"))
    model = LogisticRegression(max_iter=int(context.params.get("max_iter", 5000)))
    model.fit(frame.drop(columns="target"), frame["target"])
    context.logger.warning("done, pid %d", os.getpid())
    return model


def fail(frame: pd.DataFrame, context: TrainingContext) -> Any:
    context.logger.info("about to fail")
    raise ValueError(f"the data has {len(frame)} rows, which is not enough")


def sleep_forever(frame: pd.DataFrame, context: TrainingContext) -> Any:
    """Writes its pid to ``params["pid_file"]`` and then hangs."""
    Path(context.params["pid_file"]).write_text(str(os.getpid()), encoding="utf-8")
    context.logger.info("sleeping")
    time.sleep(600)
    return None


def return_string(frame: pd.DataFrame, context: TrainingContext) -> Any:
    return "not a model"


def die(frame: pd.DataFrame, context: TrainingContext) -> Any:
    print("going down", flush=True)
    os._exit(3)
