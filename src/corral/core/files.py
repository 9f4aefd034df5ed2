"""Data files: which suffixes corral reads, and reading one CSV or Parquet file whole, with errors that name
the file and what is wrong (the drift command, feedback files and pipeline sources share them)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from corral.errors import DataFileError

CSV_SUFFIXES = frozenset({".csv"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})


def checked_suffix(path: Path) -> str:
    """``path``'s lower-case suffix, once it is a known type and the file exists.

    Raises:
        DataFileError: an unknown suffix, or no such file.
    """
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES | PARQUET_SUFFIXES:
        known = ", ".join(sorted(CSV_SUFFIXES | PARQUET_SUFFIXES))
        raise DataFileError(f"{path}: unknown file type {suffix or '(no suffix)'!r}; use one of {known}")
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    return suffix


def unreadable(path: Path, exc: Exception) -> DataFileError:
    """The error for a file that does not parse, with the first line of the parser's complaint."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataFileError(f"{path}: cannot read it as {path.suffix.lower()[1:]}: {detail}")


def read_frame(path: Path) -> pd.DataFrame:
    """Read a CSV (``.csv``) or Parquet (``.parquet``, ``.pq``) file.

    Raises:
        DataFileError: an unknown suffix, a missing file, or one that does not parse.
    """
    suffix = checked_suffix(path)
    try:
        return pd.read_csv(path) if suffix in CSV_SUFFIXES else pd.read_parquet(path)
    except Exception as exc:  # pandas and pyarrow raise many types for a bad file; all mean "cannot read it"
        raise unreadable(path, exc) from exc
