"""``corral feedback FILE``: ground-truth labels for recorded predictions, from a CSV or Parquet file.

``-`` reads JSON lines from stdin instead, one ``{"prediction_id": ..., "label": ...}`` object a line.
Labels are sent in chunks of :data:`CHUNK`; each chunk is stored whole or not at all.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from corral.cli.context import services
from corral.cli.output import console, errors
from corral.core.files import read_frame
from corral.errors import CorralError, DataFileError
from corral.registry.environment import current_user

CHUNK = 5000


def feedback(
    file: Annotated[
        Path,
        typer.Argument(help="A .csv or .parquet file of prediction ids and labels; - for JSON lines on stdin."),
    ],
    id_column: Annotated[str, typer.Option("--id-column", help="The column of prediction ids.")] = "prediction_id",
    label_column: Annotated[str, typer.Option("--label-column", help="The column of labels.")] = "label",
) -> None:
    """Send ground-truth labels for recorded predictions (realized performance in `corral monitor`)."""
    items = _from_stdin(id_column, label_column) if str(file) == "-" else _from_file(file, id_column, label_column)
    if not items:
        raise DataFileError(f"{file}: no rows: nothing to send")
    svc = services()
    caller = svc.settings.user or current_user()
    recorded = unchanged = 0
    for start in range(0, len(items), CHUNK):
        try:
            result = svc.feedback.record(items[start : start + CHUNK], caller=caller)
        except CorralError:
            if start:
                errors.print(
                    f"rows 1 to {start} were stored before this error ({recorded} recorded, {unchanged} unchanged)",
                    markup=False,
                )
            raise
        recorded += result.recorded
        unchanged += result.unchanged
    console.print(f"{recorded} recorded, {unchanged} unchanged (of {len(items)} labels)", markup=False)


def _from_file(path: Path, id_column: str, label_column: str) -> list[dict[str, Any]]:
    frame = read_frame(path)
    missing = [c for c in (id_column, label_column) if c not in frame.columns]
    if missing:
        have = ", ".join(str(c) for c in frame.columns) or "none"
        raise DataFileError(f"{path}: no column {' or '.join(repr(c) for c in missing)}; its columns: {have}")
    ids = frame[id_column].tolist()  # .tolist() gives Python values (int, float, str), as JSON would
    labels = frame[label_column].tolist()
    return [{"prediction_id": _id(pid), "label": label} for pid, label in zip(ids, labels, strict=True)]


def _id(value: Any) -> Any:
    """Ids as text; a missing one stays missing so the service names the row."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _from_stdin(id_column: str, label_column: str) -> list[dict[str, Any]]:
    return [{"prediction_id": item.get(id_column), "label": item.get(label_column)} for item in _json_lines(sys.stdin)]


def _json_lines(lines: Any) -> Iterator[Mapping[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"stdin line {number} is not JSON: {exc.msg}") from exc
        if not isinstance(item, dict):
            raise DataFileError(
                f"stdin line {number} must be an object with the id and label, got {type(item).__name__}"
            )
        yield item
