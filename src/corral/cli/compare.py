"""``corral compare NAME``: every version on a deployment side by side, on the same traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from corral.app import deployment_comparison
from corral.cli.context import services
from corral.cli.output import console, emit_json, table


def compare(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    window: Annotated[int, typer.Option(help="Compare the last this many seconds.")] = 3600,
    html: Annotated[Path | None, typer.Option(help="Also write the self-contained HTML report here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """The champion and every shadow, split and canary on the same requests: counts, latency, output
    distributions, agreement, and labelled quality with confidence intervals and paired significance tests."""
    result = deployment_comparison(services(), name, window=window)
    if html is not None:
        from corral.monitoring.comparison_report import render_comparison_html

        html.write_text(render_comparison_html(result, f"{name}: versions compared"), encoding="utf-8")
    if as_json:
        emit_json(result)
        return
    if not result.get("versions"):
        console.print(f"{name}: {result.get('reason', 'nothing to compare')} (last {window} s)")
        return
    table(
        f"{name}: last {window} s, {result['rows']} rows",
        ["version", "role", "rows", "p50 ms", "p99 ms", "agreement", "labelled", "accuracy / rmse", "verdict"],
        [_row(v) for v in result["versions"]],
    )
    if html is not None:
        console.print(f"report written to {html}")


def _row(version: dict[str, Any]) -> tuple[Any, ...]:
    latency = version.get("latency_ms") or {}
    agreement = version.get("agreement") or {}
    rate = agreement.get("agreement")
    metrics = (version.get("quality") or {}).get("metrics") or {}
    metric = metrics.get("accuracy") or metrics.get("rmse") or {}
    value = metric.get("value")
    comparison = version.get("comparison") or {}
    return (
        f"{version['model']}:{version['version']}",
        version["role"] + (" (champion)" if version.get("champion") else ""),
        version["rows"],
        _num(latency.get("p50")),
        _num(latency.get("p99")),
        f"{rate:.1%}" if isinstance(rate, float) else ("-" if version.get("champion") else "no paired rows"),
        version.get("labelled", 0),
        _num(value),
        comparison.get("verdict") or "-",
    )


def _num(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else "-"
