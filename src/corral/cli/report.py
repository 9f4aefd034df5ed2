"""``corral report NAME VERSION``: a model report for a reviewer, as one offline HTML (or Markdown, or JSON) file."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from corral.cli.context import services
from corral.errors import DataFileError
from corral.model_report import build_report, render_html, render_markdown


class ReportFormat(StrEnum):
    HTML = "html"
    MD = "md"
    JSON = "json"


def report(
    name: Annotated[str, typer.Argument(help="Registered model name.", show_default=False)],
    version: Annotated[str, typer.Argument(help="Version number, or an alias (champion, latest).", show_default=False)],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="File to write, or a folder for NAME-VERSION.EXT (default: here).", show_default=False
        ),
    ] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="html, md (Markdown) or json.")] = (
        ReportFormat.HTML
    ),
) -> None:
    """Write a model report: lineage, training data profile, alias and serving history, live drift; print its path."""
    facts = build_report(services(), name, version)
    if fmt is ReportFormat.HTML:
        text = render_html(facts)
    elif fmt is ReportFormat.MD:
        text = render_markdown(facts)
    else:
        text = json.dumps(facts, indent=2) + "\n"
    identity = facts["identity"]
    filename = f"{identity['model']}-{identity['version']}.{fmt.value}"
    path = out / filename if out is not None and out.is_dir() else (out or Path(filename))
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DataFileError(f"{path}: cannot write it: {exc.strerror or exc}") from exc
    print(path)
