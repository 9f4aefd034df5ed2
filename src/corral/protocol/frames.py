"""Inference request inputs to a pandas frame for a tabular model.

Three layouts are accepted, tried in this order:

(a) one input per feature column, named like the column, each of shape ``[N]``
    or ``[N, 1]``, all with the same ``N`` (the usual KServe/MLServer
    "columnar" form, and what mixed-type tables need);
(b) exactly one input, any name, of shape ``[N, C]`` with ``C`` the number of
    columns, holding the features in column order;
(c) exactly one input, not named like a column, of shape ``[C]``: a single row.

Values keep their datatype (INT32 stays int32; the server's
``Signature.validate`` coerces them); BYTES give ``str`` and BOOL ``bool``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from corral.errors import ProtocolError
from corral.protocol.tensors import as_array
from corral.protocol.types import InferenceRequest, TensorInput


def request_to_frame(request: InferenceRequest, columns: Sequence[str]) -> pd.DataFrame:
    """Turn a request's inputs into a frame with ``columns`` in order.

    Args:
        request: a request from :func:`~corral.protocol.codec.decode_request`
            (or built by hand; its data is checked either way).
        columns: the model's feature columns, in order.

    Returns:
        A frame with exactly ``columns`` and one row per instance.

    Raises:
        ProtocolError: when the inputs fit none of the layouts (naming every
            missing and unexpected input at once), when column inputs have
            different lengths or a shape that is not ``[N]``/``[N, 1]``, or
            when BYTES data is not UTF-8 text.
    """
    columns = list(columns)
    if not request.inputs:
        raise ProtocolError("the request has no inputs")
    known = set(columns)
    if len(request.inputs) == 1:
        tensor = request.inputs[0]
        shape = list(tensor.shape)
        width = len(columns)
        if len(shape) == 2 and shape[1] == width:  # (b); for one column also (a) with [N, 1]
            return _matrix_frame(tensor, columns)
        if tensor.name not in known and shape == [width]:  # (c)
            return _matrix_frame(tensor, columns, single_row=True)
    return _column_frame(request.inputs, columns, known)


def _matrix_frame(tensor: TensorInput, columns: list[str], *, single_row: bool = False) -> pd.DataFrame:
    what = f"input {tensor.name!r}"
    array = as_array(tensor.data, tensor.datatype, tensor.shape, what)
    if single_row:
        array = array.reshape(1, len(columns))
    _check_text(array, what)
    if array.dtype.kind == "O":
        return pd.DataFrame({name: array[:, i] for i, name in enumerate(columns)}, columns=columns)
    return pd.DataFrame(array, columns=columns)


def _column_frame(inputs: list[TensorInput], columns: list[str], known: set[str]) -> pd.DataFrame:
    names = [t.name for t in inputs]
    missing = [c for c in columns if c not in names]
    unexpected = [n for n in names if n not in known]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if missing or unexpected or duplicated:
        problems = []
        if missing:
            problems.append(f"missing inputs: {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected inputs: {', '.join(unexpected)}")
        if duplicated:
            problems.append(f"duplicate inputs: {', '.join(duplicated)}")
        raise ProtocolError(
            f"inputs do not match the model's columns ({'; '.join(problems)}); send one input per column "
            f"(shape [N] or [N, 1]), or one input of shape [N, {len(columns)}] with the columns in order, "
            f"or one of shape [{len(columns)}] for a single row"
        )
    arrays: dict[str, npt.NDArray[Any]] = {}
    for tensor in inputs:
        what = f"input {tensor.name!r}"
        array = as_array(tensor.data, tensor.datatype, tensor.shape, what)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        elif array.ndim != 1:
            raise ProtocolError(f"{what} has shape {list(tensor.shape)}; a column input must have shape [N] or [N, 1]")
        _check_text(array, what)
        arrays[tensor.name] = array
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ProtocolError(f"column inputs must all have the same length, got {listed}")
    ordered = [arrays[name] for name in columns]
    if all(a.dtype.kind == "f" for a in ordered):  # the common case: one float block, built at once
        return pd.DataFrame(np.column_stack(ordered).astype("float64", copy=False), columns=columns)
    return pd.DataFrame(dict(zip(columns, ordered, strict=True)), columns=columns)


def _check_text(array: npt.NDArray[Any], what: str) -> None:
    if array.dtype.kind == "O" and any(isinstance(item, bytes) for item in array.flat):
        raise ProtocolError(f"{what} holds BYTES that are not UTF-8 text; a table column needs strings")


__all__ = ["request_to_frame"]
