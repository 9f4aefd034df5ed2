"""Training functions run in a spawned child: a real model comes back; failures, hangs and junk become errors.

Each child costs a second or two to spawn, so the tests share as few as they can.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.errors import ConfigurationError, LimitExceededError, RegistrationError
from corral.pipelines.training import TrainingContext, parse_function_ref, train_in_subprocess

pytestmark = pytest.mark.slow


def test_a_real_model_trains_in_the_child_and_comes_back(cancer: pd.DataFrame) -> None:
    reports: list[str] = []
    result = train_in_subprocess(
        "training_functions:fit_logistic",
        cancer,
        {"params": {"max_iter": 5000}, "previous": {"version": 3}, "run": "ignored"},
        timeout_seconds=120,
        on_log=reports.append,
        log_every_seconds=0.2,
    )
    assert isinstance(result.model, LogisticRegression)
    features = cancer.drop(columns="target")
    here = LogisticRegression(max_iter=5000).fit(features, cancer["target"])
    np.testing.assert_array_equal(result.model.predict(features), here.predict(features))
    np.testing.assert_allclose(result.model.predict_proba(features), here.predict_proba(features), atol=1e-6)
    assert 0 < result.seconds < 120
    log = result.log
    assert f"training on {len(cancer)} rows with params {{'max_iter': 5000}}" in log
    assert "replacing version 3" in log
    assert "hello from stdout" in log and "hello from stderr" in log
    assert "WARNING corral.training: done, pid" in log
    child_pid = int(log.rsplit("done, pid ", 1)[1].split()[0])
    assert child_pid != os.getpid()
    assert log.index("training on") < log.index("hello from stdout") < log.index("done, pid")
    assert reports and all(isinstance(r, str) for r in reports)


def test_a_function_that_raises_gives_its_exception_and_traceback(cancer: pd.DataFrame) -> None:
    with pytest.raises(RegistrationError) as caught:
        train_in_subprocess("training_functions:fail", cancer.head(5), {}, timeout_seconds=60)
    message = str(caught.value)
    assert "training_functions:fail raised ValueError: the data has 5 rows, which is not enough" in message
    assert "Traceback" in message or "training_functions.py" in message
    assert 'raise ValueError(f"the data has' in message


def test_a_function_past_its_timeout_is_killed(tmp_path: Path, cancer: pd.DataFrame) -> None:
    pid_file = tmp_path / "pid"
    began = time.monotonic()
    with pytest.raises(LimitExceededError, match=r"timeout of 2 s and was stopped after 2\.\d s"):
        train_in_subprocess(
            "training_functions:sleep_forever",
            cancer.head(5),
            {"params": {"pid_file": str(pid_file)}},
            timeout_seconds=2,
        )
    assert time.monotonic() - began < 10
    assert multiprocessing.active_children() == []
    pid = int(pid_file.read_text(encoding="utf-8"))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_function_returning_a_string_is_not_a_model(cancer: pd.DataFrame) -> None:
    with pytest.raises(RegistrationError, match="returned a str, not a model"):
        train_in_subprocess("training_functions:return_string", cancer.head(5), {}, timeout_seconds=60)


def test_a_child_that_dies_is_an_error_with_its_log(cancer: pd.DataFrame) -> None:
    with pytest.raises(RegistrationError, match="exited with code 3 without a result") as caught:
        train_in_subprocess("training_functions:die", cancer.head(5), {}, timeout_seconds=60)
    assert "going down" in str(caught.value)


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("no_such_module_for_corral:train", "ModuleNotFoundError: No module named 'no_such_module_for_corral'"),
        ("training_functions:no_such_function", "AttributeError"),
    ],
)
def test_a_function_that_does_not_import(ref: str, why: str, cancer: pd.DataFrame) -> None:
    with pytest.raises(ConfigurationError, match="does not import") as caught:
        train_in_subprocess(ref, cancer.head(5), {}, timeout_seconds=60)
    assert ref in str(caught.value) and why in str(caught.value)


@pytest.mark.parametrize("ref", ["training_functions", "training_functions:", ":fit", ""])
def test_a_malformed_reference_is_refused_before_spawning(ref: str) -> None:
    with pytest.raises(ConfigurationError, match="module:function"):
        parse_function_ref(ref)
    with pytest.raises(ConfigurationError, match="module:function"):
        train_in_subprocess(ref, pd.DataFrame(), {}, timeout_seconds=1)


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="positive"):
        train_in_subprocess("training_functions:fail", pd.DataFrame(), {}, timeout_seconds=0)


def test_the_context_defaults() -> None:
    context = TrainingContext()
    assert dict(context.params) == {} and context.previous is None and context.logger.name == "corral.training"
