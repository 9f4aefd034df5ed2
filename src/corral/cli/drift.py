"""``corral drift REFERENCE CURRENT``: offline drift between two data files (CSV or Parquet)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
import typer
from rich.markup import escape

from corral.cli.output import console, table
from corral.core.files import CSV_SUFFIXES, checked_suffix, read_frame, unreadable
from corral.core.schema import FeatureSpec, Signature
from corral.errors import ConfigurationError, DataFileError, SchemaError
from corral.monitoring.detectors import DriftResult, compare_columns
from corral.monitoring.report import (
    MULTIVARIATE,
    render_html,
    report_data,
    result_record,
    sort_results,
    summary_line,
)

# pandas.read_csv's defaults, so that a CSV read column by column with pyarrow gives the frame pandas would
PANDAS_NA_VALUES = (
    *("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>"),
    *("N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"),
)
PANDAS_TRUE_VALUES = ("True", "TRUE", "true")
PANDAS_FALSE_VALUES = ("False", "FALSE", "false")

if TYPE_CHECKING:
    import pyarrow as pa


class ColumnSource:
    """A CSV or Parquet file read one column at a time, each column as :func:`read_frame`'s frame would hold it.

    Parquet: each :meth:`column` reads only that column's chunks (``pyarrow.parquet``). CSV: the file is
    parsed once into Arrow (``pyarrow.csv``, with pandas' missing-value and boolean spellings, header
    renaming and no date parsing) and each column is handed out once, then dropped. Either way a column
    becomes a pandas Series the way ``pd.read_csv`` / ``pd.read_parquet`` would make it, and no frame of
    the whole file is ever built.

    Raises:
        DataFileError: like :func:`read_frame`: an unknown suffix, a missing file, or one that does not parse.
    """

    def __init__(self, path: Path) -> None:
        suffix = checked_suffix(path)
        self.path = path
        self._parquet: Any = None
        self._table: dict[str, pa.ChunkedArray] = {}
        try:
            if suffix in CSV_SUFFIXES:
                self.columns = self._read_csv(path)
            else:
                self.columns = self._open_parquet(path)
        except DataFileError:
            raise
        except Exception as exc:  # pyarrow raises many types for a bad file; all mean "cannot read it"
            raise unreadable(path, exc) from exc

    def _open_parquet(self, path: Path) -> list[str]:
        import pyarrow.parquet as pq

        self._parquet = pq.ParquetFile(path)
        self.rows = self._parquet.metadata.num_rows
        names = list(self._parquet.schema_arrow.names)
        meta = self._parquet.schema_arrow.pandas_metadata or {}
        index = {c for c in meta.get("index_columns", []) if isinstance(c, str)}
        return [name for name in names if name not in index]

    def _read_csv(self, path: Path) -> list[str]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        def convert(**extra: Any) -> pacsv.ConvertOptions:
            return pacsv.ConvertOptions(
                null_values=list(PANDAS_NA_VALUES),
                true_values=list(PANDAS_TRUE_VALUES),
                false_values=list(PANDAS_FALSE_VALUES),
                strings_can_be_null=True,
                **extra,
            )

        parse = pacsv.ParseOptions(newlines_in_values=True)
        table = pacsv.read_csv(path, parse_options=parse, convert_options=convert())
        # pandas leaves dates and times as text: read those columns again as strings
        temporal = [i for i, f in enumerate(table.schema) if pa.types.is_temporal(f.type)]
        if temporal:
            # by position: a CSV header may repeat a name
            types = {f"c{i}": pa.string() for i in temporal}
            text = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(skip_rows=1, column_names=[f"c{i}" for i in range(table.num_columns)]),
                parse_options=parse,
                convert_options=convert(column_types=types, include_columns=list(types)),
            )
            for i in temporal:
                table = table.set_column(i, table.schema.field(i).name, text.column(f"c{i}"))
            del text
        names = _pandas_names(table.column_names)
        for i, name in enumerate(names):
            column = table.column(i)
            if pa.types.is_null(column.type):  # all missing: pandas reads it as float64 NaN
                column = column.cast(pa.float64())
            elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
                raise DataFileError(f"{path}: cannot read it as csv: column {name!r} is not UTF-8 text")
            self._table[name] = column
        self.rows = table.num_rows
        return names

    def column(self, name: str) -> pd.Series:
        """One column as a pandas Series (a CSV column can be taken only once)."""
        if self._parquet is None:
            return self._table.pop(name).to_pandas()
        try:
            # with the pandas metadata, as pd.read_parquet reads it (nullable Int64, boolean, categories, ...)
            frame = self._parquet.read(columns=[name], use_pandas_metadata=True).to_pandas()
            return frame.iloc[:, list(frame.columns).index(name)]
        except Exception as exc:  # a corrupt column chunk
            raise unreadable(self.path, exc) from exc


def _pandas_names(names: list[str]) -> list[str]:
    """CSV header names as ``pd.read_csv`` gives them: blanks ``Unnamed: i``, repeats ``name.1``, ``name.2``.

    pandas' own renaming: a repeated name gets the first ``.k`` suffix that is neither a name in the header
    nor one given already.
    """
    header = [name or f"Unnamed: {i}" for i, name in enumerate(names)]
    taken = set(header)
    counts: dict[str, int] = {}
    out: list[str] = []
    for old in header:
        name, count = old, counts.get(old, 0)
        while count > 0:
            counts[old] = count + 1
            name = f"{old}.{count}"
            count = count + 1 if name in taken else counts.get(name, 0)
        counts[name] = count + 1
        out.append(name)
    return out


def compare_files(
    reference: Path, current: Path, detectors: list[str] | None = None, target: str | None = None
) -> tuple[list[DriftResult], Signature]:
    """``compare_frames(ref, cur, Signature.infer(ref), detectors)`` on two data files, one feature at a time.

    The same results (and the same signature) as reading both files whole with :func:`read_frame`, dropping
    ``target`` and calling :func:`~corral.monitoring.detectors.compare_frames`; but only one column of each
    file is held at once (the whole frames are read only for a multivariate detector such as
    ``domain_classifier``), so the memory needed is a column's, not two files'.

    Raises:
        DataFileError: a file that cannot be read.
        SchemaError: the files' columns differ, ``target`` is not a column, or a column cannot be served.
    """
    ref_source, cur_source = ColumnSource(reference), ColumnSource(current)
    _check_names(ref_source.columns, cur_source.columns)
    names = list(ref_source.columns)
    if target is not None:
        if target not in names:
            raise SchemaError(f"--target {target!r} is not a column of {reference}")
        names.remove(target)
    specs: list[FeatureSpec] = []

    def pairs() -> Iterator[tuple[FeatureSpec, Any, Any]]:
        for name in names:
            ref_values = ref_source.column(name)
            spec = Signature.infer(ref_values.to_frame(name)).inputs[0]
            specs.append(spec)
            cur_values = cur_source.column(name)
            yield spec, ref_values, cur_values
            del ref_values, cur_values

    def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
        return read_frame(reference)[names], read_frame(current)[names]

    if not names:
        Signature.infer(pd.DataFrame())  # the error inferring a signature of no features gives
    results = compare_columns(pairs(), detectors, frames=frames)
    return results, Signature(inputs=tuple(specs))


def _check_names(ref: list[str], cur: list[str]) -> None:
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
    results, signature = compare_files(reference, current, names, target)
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
        # the histograms need every column of both files; only this option reads them whole
        ref_frame, cur_frame = read_frame(reference), read_frame(current)
        if target is not None:
            ref_frame, cur_frame = ref_frame.drop(columns=target), cur_frame.drop(columns=target)
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
