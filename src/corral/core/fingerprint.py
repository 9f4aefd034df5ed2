"""Training-data fingerprints: SHA-256 over a canonical serialization of a frame.

The same data gives the same fingerprint whatever the column order, the
pandas version or the incidental dtype (an ``int32`` column read back as
``int64`` or ``float64`` hashes the same). Row order is kept: a model trained
on the same rows in another order is not guaranteed to be the same model.

Canonical form, per column, columns sorted by name::

    b"C" name-utf8 b"\\x00" kind-letter  then the column's values

- numbers (ints, floats; not bools): float64 little-endian, every NaN/None as
  one fixed NaN bit pattern, ``-0.0`` as ``0.0``;
- booleans: one byte each, 0, 1, or 2 for missing;
- everything else as text: a 4-byte little-endian length then UTF-8, with
  length ``0xFFFFFFFF`` for missing.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

import numpy as np
import pandas as pd

_MISSING = struct.pack("<I", 0xFFFFFFFF)
_CANONICAL_NAN = np.frombuffer(struct.pack("<d", float("nan")), dtype="<f8")[0]


@dataclass(frozen=True, slots=True)
class DataFingerprint:
    """What identifies a training set: its hash, its size and where it came from."""

    sha256: str
    rows: int
    columns: int
    source: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"sha256": self.sha256, "rows": self.rows, "columns": self.columns, "source": self.source}


def fingerprint_frame(frame: pd.DataFrame, *, source: str | None = None) -> DataFingerprint:
    """Hash a frame canonically (see the module docstring for the exact form)."""
    digest = hashlib.sha256()
    digest.update(b"corral-fingerprint-v1\x00")
    digest.update(struct.pack("<QQ", len(frame), frame.shape[1]))
    for name in sorted(frame.columns, key=str):
        column = frame[name]
        if pd.api.types.is_bool_dtype(column.dtype):
            kind = b"b"
        elif pd.api.types.is_numeric_dtype(column.dtype):
            kind = b"n"
        else:
            kind = b"s"
        digest.update(b"C" + str(name).encode() + b"\x00" + kind)
        digest.update(_column_bytes(column, kind))
    return DataFingerprint(digest.hexdigest(), len(frame), frame.shape[1], source)


def _column_bytes(column: pd.Series, kind: bytes) -> bytes:
    if kind == b"n":
        values = column.to_numpy(dtype="float64", na_value=np.nan).astype("<f8", copy=True)
        values[values == 0.0] = 0.0  # folds -0.0 into 0.0
        values[np.isnan(values)] = _CANONICAL_NAN
        return bytes(values.tobytes())
    if kind == b"b":
        missing = column.isna().to_numpy()
        values = column.fillna(False).to_numpy(dtype=bool).astype("u1")
        values[missing] = 2
        return bytes(values.tobytes())
    parts = []
    for value in column.astype(object).tolist():
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            parts.append(_MISSING)
        else:
            encoded = str(value).encode("utf-8")
            parts.append(struct.pack("<I", len(encoded)))
            parts.append(encoded)
    return b"".join(parts)
