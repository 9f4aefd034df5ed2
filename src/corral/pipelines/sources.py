"""Training data for a pipeline: files (CSV or Parquet, one path or a glob), combined, and checked.

The checks run before training so that a run fails with a reason a person can act on (the target column
went missing, a feature is a copy of the label, the schema changed) rather than with a model that
quietly learned the wrong thing.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from corral.core.files import read_frame
from corral.errors import DataFileError

_GLOB_CHARACTERS = frozenset("*?[")

DataCheck = Callable[..., list[str]]
"""A check of training data: ``(frame, target, ...) -> problems``, each a sentence; no problems is ``[]``."""


def read_file_source(path_or_glob: str | Path) -> pd.DataFrame:
    """Read a CSV (``.csv``) or Parquet (``.parquet``, ``.pq``) file, or every file a glob matches.

    The files a glob matches are read in sorted order and concatenated (:func:`combine`), so their columns
    must agree.

    Raises:
        DataFileError: a glob that matches nothing (the message quotes the pattern), a missing file, an
            unknown suffix, a file that does not parse, or files whose columns differ.
    """
    text = str(path_or_glob)
    if not _GLOB_CHARACTERS & set(text):
        return read_frame(Path(text))
    matches = sorted(p for p in glob.glob(text, recursive=True) if Path(p).is_file())
    if not matches:
        raise DataFileError(f"no file matches {text!r}")
    return combine([read_frame(Path(p)) for p in matches], names=matches)


def combine(frames: Sequence[pd.DataFrame], *, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Concatenate frames with the same columns (in any order; the result keeps the first frame's order).

    ``names`` labels the frames in error messages (file paths, source descriptions); by default they are
    numbered from 1.

    Raises:
        DataFileError: no frames, or a frame whose columns differ from the first's; the message names the
            columns it adds and lacks.
    """
    if not frames:
        raise DataFileError("no training data: there are no frames to combine")
    labels = list(names) if names is not None else [f"frame {i}" for i in range(1, len(frames) + 1)]
    if len(labels) != len(frames):
        raise ValueError(f"{len(labels)} names for {len(frames)} frames")
    first = list(frames[0].columns)
    for label, frame in zip(labels[1:], frames[1:], strict=True):
        columns = list(frame.columns)
        if set(columns) != set(first) or len(columns) != len(first):
            added = [c for c in columns if c not in first]
            lacks = [c for c in first if c not in columns]
            parts = []
            if added:
                parts.append(f"has {_names(added)} that {labels[0]} lacks")
            if lacks:
                parts.append(f"lacks {_names(lacks)}")
            if not parts:
                parts.append("repeats a column name")
            raise DataFileError(f"the columns differ: {label} {' and '.join(parts)}")
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    aligned = [frames[0], *(frame[first] for frame in frames[1:])]
    return pd.concat(aligned, ignore_index=True)


def _names(columns: Sequence[object]) -> str:
    return ", ".join(repr(str(c)) for c in columns)


def _same_values(a: pd.Series, b: pd.Series) -> bool:
    """Whether two columns hold the same values row by row (missing matching missing), whatever their dtypes."""
    missing = a.isna().to_numpy(dtype=bool)
    if not np.array_equal(missing, b.isna().to_numpy(dtype=bool)):
        return False
    numeric_a = pd.api.types.is_numeric_dtype(a.dtype) or pd.api.types.is_bool_dtype(a.dtype)
    numeric_b = pd.api.types.is_numeric_dtype(b.dtype) or pd.api.types.is_bool_dtype(b.dtype)
    if numeric_a != numeric_b:
        return False
    present = ~missing
    try:
        if numeric_a:
            left = a.to_numpy(dtype=float, na_value=np.nan)[present]
            right = b.to_numpy(dtype=float, na_value=np.nan)[present]
        else:
            left = a.astype(object).to_numpy()[present]
            right = b.astype(object).to_numpy()[present]
        return bool(np.all(left == right))
    except (TypeError, ValueError):  # values that do not compare are not the same values
        return False


def check_training_data(frame: pd.DataFrame, target: str, expected_columns: Sequence[str] | None = None) -> list[str]:
    """Problems that make the data unfit to train on; ``[]`` when there are none.

    Finds: no rows; the target column missing; a target with fewer than two distinct values; a feature
    column identical to the target (label leakage, named); and, given ``expected_columns`` (the feature
    columns the current model was trained on; the target is ignored on both sides, so it may be listed or
    not), feature columns added or removed since.
    """
    problems: list[str] = []
    if len(frame) == 0:
        problems.append("the training data has no rows")
    if target not in frame.columns:
        problems.append(f"the target column {target!r} is missing (columns: {_names(list(frame.columns))})")
    elif len(frame) > 0:
        labels = frame[target]
        if isinstance(labels, pd.DataFrame):
            problems.append(f"the target column {target!r} appears more than once")
        else:
            distinct = labels.dropna().unique()
            if len(distinct) == 0:
                problems.append(f"the target column {target!r} has no values (all missing)")
            elif len(distinct) == 1:
                problems.append(f"the target column {target!r} has one value ({distinct[0]!r}): nothing to learn")
            for column in frame.columns:
                if column == target:
                    continue
                feature = frame[column]
                if isinstance(feature, pd.Series) and _same_values(feature, labels):
                    problems.append(
                        f"the feature {str(column)!r} is identical to the target {target!r} (label leakage)"
                    )
    if expected_columns is not None:
        present = [str(c) for c in frame.columns if str(c) != target]
        expected = [str(c) for c in expected_columns if str(c) != target]
        added = [c for c in present if c not in set(expected)]
        removed = [c for c in expected if c not in set(present)]
        if added or removed:
            parts = []
            if added:
                parts.append(f"added {_names(added)}")
            if removed:
                parts.append(f"removed {_names(removed)}")
            problems.append(f"the schema changed since the last training data: {'; '.join(parts)}")
    return problems


__all__ = ["DataCheck", "check_training_data", "combine", "read_file_source"]
