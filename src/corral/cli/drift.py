"""``corral drift REFERENCE CURRENT``: offline drift between two data files (CSV or Parquet)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape

from corral.cli.output import console, table
from corral.core.schema import Signature
from corral.errors import ConfigurationError, DataFileError, SchemaError
from corral.monitoring.detectors import compare_frames
from corral.monitoring.report import (
    MULTIVARIATE,
    render_html,
    report_data,
    result_record,
    sort_results,
    summary_line,
)

CSV_SUFFIXES = frozenset({".csv"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})


def read_frame(path: Path) -> pd.DataFrame:
    """Read a CSV (``.csv``) or Parquet (``.parquet``, ``.pq``) file.

    Raises:
        DataFileError: an unknown suffix, a missing file, or one that does not parse.
    """
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES | PARQUET_SUFFIXES:
        known = ", ".join(sorted(CSV_SUFFIXES | PARQUET_SUFFIXES))
        raise DataFileError(f"{path}: unknown file type {suffix or '(no suffix)'!r}; use one of {known}")
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        if suffix in CSV_SUFFIXES:
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except Exception as exc:  # pandas and pyarrow raise many types for a bad file; all mean "cannot read it"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFileError(f"{path}: cannot read it as {suffix[1:]}: {detail}") from exc


def _check_columns(reference: pd.DataFrame, current: pd.DataFrame) -> None:
    ref, cur = [str(c) for c in reference.columns], [str(c) for c in current.columns]
    if set(ref) != set(cur):
        only_ref = [c for c in ref if c not in cur]
        only_cur = [c for c in cur if c not in ref]
        parts = [f"only in reference: {only_ref}"] if only_ref else []
        parts += [f"only in current: {only_cur}"] if only_cur else []
        raise SchemaError(f"reference and current have different columns; {'; '.join(parts)}")


def _detectors(spec: str | None) -> list[str] | None:
    if spec is None:
        return None
    names = [name.strip().lower() for name in spec.split(",") if name.strip()]
    if not names:
        raise ConfigurationError("--detectors needs at least one detector name")
    return names


def drift(
    reference: Annotated[Path, typer.Argument(help="Reference data (training), .csv or .parquet.", show_default=False)],
    current: Annotated[Path, typer.Argument(help="Current data (production), .csv or .parquet.", show_default=False)],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON to this file.", show_default=False)
    ] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report to this file.", show_default=False)
    ] = None,
    detectors: Annotated[
        str | None,
        typer.Option(
            "--detectors", help="Comma-separated detector names (default: ks for numbers, chi2 for categories)."
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="A column to leave out (the label).", show_default=False)
    ] = None,
) -> None:
    """Compare two data files feature by feature and report which features drifted."""
    names = _detectors(detectors)
    ref_frame, cur_frame = read_frame(reference), read_frame(current)
    _check_columns(ref_frame, cur_frame)
    if target is not None:
        if target not in ref_frame.columns:
            raise SchemaError(f"--target {target!r} is not a column of {reference}")
        ref_frame, cur_frame = ref_frame.drop(columns=target), cur_frame.drop(columns=target)
    signature = Signature.infer(ref_frame)
    results = compare_frames(ref_frame, cur_frame, signature, names)
    if not results:
        raise ConfigurationError(f"none of the detectors {names} applies to these features' kinds")

    rows = []
    for result in sort_results(results):
        record = result_record(result, signature)
        rows.append(
            (
                escape(record["feature"]) if record["feature"] is not None else MULTIVARIATE,
                record["kind"],
                record["detector"],
                f"{record['statistic']:.4g}" if record["statistic"] is not None else "-",
                f"{record['p_value']:.3g}" if record["p_value"] is not None else "-",
                "yes" if record["drifted"] else "no",
                f"{record['reference_missing_rate']:.1%}",
                f"{record['current_missing_rate']:.1%}",
            )
        )
    table(
        escape(f"Drift: {reference.name} → {current.name}"),
        ["feature", "kind", "detector", "statistic", "p-value", "drifted", "missing ref", "missing cur"],
        rows,
    )
    console.print(summary_line(results), markup=False)
    if json_out is not None:
        _write(json_out, json.dumps(report_data(results, signature), indent=2) + "\n")
        console.print(f"wrote {json_out}", markup=False)
    if html_out is not None:
        page = render_html(
            results,
            ref_frame,
            cur_frame,
            signature,
            title=f"Drift: {reference.name} → {current.name}",
            reference_name=str(reference),
            current_name=str(current),
        )
        _write(html_out, page)
        console.print(f"wrote {html_out}", markup=False)


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DataFileError(f"{path}: cannot write it: {exc.strerror or exc}") from exc
