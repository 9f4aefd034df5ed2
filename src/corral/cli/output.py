"""Printing for the CLI: rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

PIPED_WIDTH = 160
"""Columns of a table written to a pipe or a file without ``COLUMNS`` set (rich would assume 80 and cut
model names short in wide tables such as ``corral compare``)."""


def _console(*, stderr: bool = False) -> Console:
    out = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPED_WIDTH
    return out


console = _console()
errors = _console(stderr=True)


def emit_json(data: Any) -> None:
    """Plain JSON on stdout (no colour, no wrapping) so scripts can parse it."""
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*(_cell(v) for v in row))
    console.print(out)


def fields(title: str, items: Iterable[tuple[str, Any]]) -> None:
    out = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 0))
    out.add_column(style="bold")
    out.add_column()
    for key, value in items:
        out.add_row(key, _cell(value))
    console.print(out)


def when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)
