"""A self-contained HTML page of a :func:`~corral.monitoring.comparison.compare` result.

The page has a summary table of every version (traffic, latency, errors,
drift against the champion, agreement, verdict), the output distributions
overlaid in one inline SVG (bars per class side by side for classification,
step histograms on the common range for regression), the agreement and
confusion tables, each version's labelled quality with intervals, and the
paired (or unpaired) tests against the champion with their intervals,
p-values and verdicts. Like :mod:`corral.monitoring.report` it has no external
references (inline CSS and SVG, no scripts), and every string taken from the
result goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;color:#222;max-width:80rem}
h1{font-size:1.5rem;margin-bottom:.25rem}h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
h3{font-size:1rem;margin:1rem 0 .3rem}
.meta{color:#555;margin:0 0 1rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border-bottom:1px solid #ddd;padding:.2rem .6rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:4px;padding:0 .4rem;font-size:.8rem;color:#fff;background:#7f7f7f}
.better{background:#2ca02c}.worse{background:#d62728}.drifted{background:#d62728}.same{background:#2ca02c}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 .8rem;opacity:.7}
.note{color:#555;font-size:.85rem}
"""

_esc = html.escape


def _num(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


def _share(value: Any) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return f"{value:.1%}"


def _interval(lower: Any, upper: Any) -> str:
    if lower is None or upper is None:
        return ""
    return f" [{_num(lower)}, {_num(upper)}]"


def _share_interval(lower: Any, upper: Any) -> str:
    if lower is None or upper is None:
        return ""
    return f" [{_share(lower)}, {_share(upper)}]"


def _name(entry: Mapping[str, Any]) -> str:
    return f"{entry.get('model')}/{entry.get('version')}"


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _badge(text: str | None, kind: str = "") -> str:
    if text is None:
        return "–"
    return f'<span class="badge {_esc(kind)}">{_esc(text)}</span>'


def _verdict_badge(verdict: str | None) -> str:
    kind = {"better": "better", "worse": "worse"}.get(verdict or "", "")
    return _badge(verdict, kind)


# --- the summary ----------------------------------------------------------------------------------------------------


def _agreement_cell(agreement: Mapping[str, Any] | None) -> str:
    if agreement is None:
        return "champion"
    if not agreement.get("paired_rows"):
        return '<span class="note">no paired rows</span>'
    if "agreement" in agreement:
        return f"{_share(agreement['agreement'])}{_share_interval(agreement.get('lower'), agreement.get('upper'))}"
    if "mean_absolute_difference" in agreement:
        return f"MAD {_num(agreement['mean_absolute_difference'])}, r {_num(agreement.get('correlation'), 3)}"
    return _esc(str(agreement.get("reason", "–")))


def _drift_cell(drift: Mapping[str, Any] | None) -> str:
    if drift is None:
        return "reference"
    if drift.get("p_value") is None:
        return _esc(str(drift.get("reason", "–")))
    badge = _badge("drifted", "drifted") if drift.get("drifted") else _badge("same", "same")
    return f"{_esc(str(drift.get('detector')))} p={_num(drift['p_value'], 3)} {badge}"


def _errors_cell(errors: Mapping[str, Any] | None) -> str:
    if not errors or errors.get("rate") is None:
        return "–"
    return f"{_share(errors['rate'])} of {errors['requests']}" + (
        f" [{_share(errors.get('lower'))}, {_share(errors.get('upper'))}]" if errors.get("lower") is not None else ""
    )


def _summary_table(versions: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        "<table><tr><th></th><th>version</th><th>role</th><th class=num>rows</th><th class=num>labelled</th>"
        "<th class=num>latency p50 / p99 (ms)</th><th>error rate</th><th>output drift vs champion</th>"
        "<th>agreement with champion</th><th>verdict</th></tr>"
    ]
    for i, entry in enumerate(versions):
        latency = entry.get("latency_ms") or {}
        comparison = entry.get("comparison")
        verdict = "champion" if entry.get("champion") else _verdict_badge((comparison or {}).get("verdict"))
        rows.append(
            f'<tr><td><span style="color:{_colour(i)}">&#9632;</span></td><td>{_esc(_name(entry))}</td>'
            f"<td>{_esc(str(entry.get('role')))}</td><td class=num>{entry.get('rows')}</td>"
            f"<td class=num>{entry.get('labelled')}</td>"
            f"<td class=num>{_num(latency.get('p50'))} / {_num(latency.get('p99'))}</td>"
            f"<td>{_errors_cell(entry.get('errors'))}</td><td>{_drift_cell(entry.get('drift'))}</td>"
            f"<td>{_agreement_cell(entry.get('agreement'))}</td><td>{verdict}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


# --- distributions --------------------------------------------------------------------------------------------------

_WIDTH, _HEIGHT, _PAD, _AXIS = 640, 200, 6, 18


def _legend(versions: Sequence[Mapping[str, Any]]) -> str:
    items = "".join(
        f'<span style="background:{_colour(i)}"></span>{_esc(_name(e))} ({_esc(str(e.get("role")))})'
        for i, e in enumerate(versions)
    )
    return f'<p class="legend">{items}</p>'


def _class_bars(versions: Sequence[Mapping[str, Any]], classes: Sequence[Any]) -> str:
    shares = [list((e.get("output") or {}).get("shares") or [0.0] * len(classes)) for e in versions]
    top = max((s for row in shares for s in row), default=0.0) or 1.0
    plot = _HEIGHT - _AXIS
    step = (_WIDTH - 2 * _PAD) / max(len(classes), 1)
    bar = step * 0.8 / max(len(versions), 1)
    parts = [
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        'aria-label="output share per class">',
        f'<line x1="0" y1="{plot + 0.5}" x2="{_WIDTH}" y2="{plot + 0.5}" stroke="#999"/>',
    ]
    for c, cls in enumerate(classes):
        left = _PAD + c * step + step * 0.1
        for v, entry in enumerate(versions):
            share = float(shares[v][c]) if c < len(shares[v]) else 0.0
            h = (plot - _PAD) * share / top
            tip = _esc(f"{cls}: {_name(entry)} {share:.1%}")
            parts.append(
                f'<rect x="{left + v * bar:.2f}" y="{plot - h:.2f}" width="{max(bar - 1, 1):.2f}" height="{h:.2f}" '
                f'fill="{_colour(v)}" fill-opacity="0.8"><title>{tip}</title></rect>'
            )
        parts.append(
            f'<text x="{_PAD + c * step + step / 2:.2f}" y="{_HEIGHT - 4}" font-size="11" '
            f'text-anchor="middle">{_esc(str(cls))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _step_histograms(versions: Sequence[Mapping[str, Any]], edges: Sequence[float]) -> str:
    counts = [list((e.get("output") or {}).get("histogram") or []) for e in versions]
    shares = [[c / total for c in row] if (total := sum(row)) else [] for row in counts]
    top = max((s for row in shares for s in row), default=0.0) or 1.0
    plot = _HEIGHT - _AXIS
    bins = len(edges) - 1
    width = (_WIDTH - 2 * _PAD) / max(bins, 1)
    parts = [
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        'aria-label="output histograms">',
        f'<line x1="0" y1="{plot + 0.5}" x2="{_WIDTH}" y2="{plot + 0.5}" stroke="#999"/>',
        f'<text x="{_PAD}" y="{_HEIGHT - 4}" font-size="11">{_num(edges[0])}</text>',
        f'<text x="{_WIDTH - _PAD}" y="{_HEIGHT - 4}" font-size="11" text-anchor="end">{_num(edges[-1])}</text>',
    ]
    for v, row in enumerate(shares):
        if len(row) != bins:
            continue
        points = [f"{_PAD:.2f},{plot:.2f}"]
        for b, share in enumerate(row):
            y = plot - (plot - _PAD) * share / top
            points.append(f"{_PAD + b * width:.2f},{y:.2f}")
            points.append(f"{_PAD + (b + 1) * width:.2f},{y:.2f}")
        points.append(f"{_PAD + bins * width:.2f},{plot:.2f}")
        parts.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{_colour(v)}" stroke-width="2">'
            f"<title>{_esc(_name(versions[v]))}</title></polyline>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _quantile_table(versions: Sequence[Mapping[str, Any]]) -> str:
    names = list(next((e["output"]["quantiles"] for e in versions if (e.get("output") or {}).get("quantiles")), {}))
    if not names:
        return ""
    head = "".join(f"<th class=num>q{_esc(q)}</th>" for q in names)
    rows = [f"<table><tr><th>version</th><th class=num>mean</th><th class=num>std</th>{head}</tr>"]
    for entry in versions:
        output = entry.get("output") or {}
        quantiles = output.get("quantiles") or {}
        cells = "".join(f"<td class=num>{_num(quantiles.get(q))}</td>" for q in names)
        rows.append(
            f"<tr><td>{_esc(_name(entry))}</td><td class=num>{_num(output.get('mean'))}</td>"
            f"<td class=num>{_num(output.get('std'))}</td>{cells}</tr>"
        )
    rows.append("</table>")
    return "".join(rows)


# --- agreement and quality ------------------------------------------------------------------------------------------


def _confusion(agreement: Mapping[str, Any], classes: Sequence[Any], champion: str, name: str) -> str:
    matrix = agreement.get("confusion") or []
    head = "".join(f"<th class=num>{_esc(str(c))}</th>" for c in classes)
    rows = [f"<table><tr><th>{_esc(champion)} ↓ / {_esc(name)} →</th>{head}</tr>"]
    for cls, row in zip(classes, matrix, strict=False):
        cells = "".join(f"<td class=num>{int(n)}</td>" for n in row)
        rows.append(f"<tr><th>{_esc(str(cls))}</th>{cells}</tr>")
    rows.append("</table>")
    return "".join(rows)


def _agreement_section(result: Mapping[str, Any], versions: Sequence[Mapping[str, Any]]) -> str:
    champion = _name(versions[0]) if versions else ""
    classes = result.get("classes") or []
    out = []
    for entry in versions[1:]:
        agreement = entry.get("agreement") or {}
        name = _name(entry)
        out.append(f"<h3>{_esc(name)} ({_esc(str(entry.get('role')))})</h3>")
        if not agreement.get("paired_rows"):
            out.append(f'<p class="note">{_esc(str(agreement.get("reason", "no paired rows")))}</p>')
            continue
        if "agreement" in agreement:
            out.append(
                f"<p>{agreement['paired_rows']} paired requests; agreement {_share(agreement['agreement'])}"
                f"{_share_interval(agreement.get('lower'), agreement.get('upper'))}</p>"
            )
            out.append(_confusion(agreement, classes, champion, name))
        else:
            out.append(
                "<table><tr><th class=num>paired rows</th><th class=num>mean |difference|</th>"
                "<th class=num>mean difference</th><th class=num>max |difference|</th><th class=num>correlation</th>"
                f"</tr><tr><td class=num>{agreement.get('paired_rows')}</td>"
                f"<td class=num>{_num(agreement.get('mean_absolute_difference'))}</td>"
                f"<td class=num>{_num(agreement.get('mean_difference'))}</td>"
                f"<td class=num>{_num(agreement.get('max_absolute_difference'))}</td>"
                f"<td class=num>{_num(agreement.get('correlation'))}</td></tr></table>"
            )
    return "".join(out)


def _metric_cell(metric: Mapping[str, Any] | None) -> str:
    if not metric:
        return "<td class=num>–</td>"
    if metric.get("value") is None:
        return f'<td class=num title="{_esc(str(metric.get("reason") or ""))}">–</td>'
    return f"<td class=num>{_num(metric['value'])}{_interval(metric.get('lower'), metric.get('upper'))}</td>"


def _quality_table(versions: Sequence[Mapping[str, Any]]) -> str:
    names: list[str] = []
    for entry in versions:
        for name in (entry.get("quality") or {}).get("metrics") or {}:
            if name not in names:
                names.append(name)
    if not names:
        return '<p class="note">No labels have arrived for this window yet.</p>'
    head = "".join(f"<th class=num>{_esc(n)}</th>" for n in names)
    rows = [f"<table><tr><th>version</th><th class=num>labelled rows</th>{head}</tr>"]
    for entry in versions:
        quality = entry.get("quality") or {}
        metrics = quality.get("metrics") or {}
        cells = "".join(_metric_cell(metrics.get(n)) for n in names)
        rows.append(f"<tr><td>{_esc(_name(entry))}</td><td class=num>{quality.get('rows', 0)}</td>{cells}</tr>")
    rows.append("</table>")
    return "".join(rows)


def _tests_table(versions: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        "<table><tr><th>challenger</th><th>paired</th><th class=num>rows</th><th>metric</th><th>test</th>"
        "<th class=num>champion</th><th class=num>challenger</th><th class=num>difference [interval]</th>"
        "<th class=num>p-value</th><th>verdict</th></tr>"
    ]
    notes = []
    for entry in versions[1:]:
        comparison = entry.get("comparison") or {}
        name = _esc(_name(entry))
        paired = "yes" if comparison.get("paired") else "no (different requests)"
        tests = comparison.get("tests") or []
        if not tests:
            notes.append(f"<li>{name}: {_esc(str(comparison.get('reason', 'no labelled rows to compare')))}</li>")
        for test in tests:
            rows.append(
                f"<tr><td>{name}</td><td>{paired}</td><td class=num>{comparison.get('rows')}</td>"
                f"<td>{_esc(str(test.get('metric')))}</td><td>{_esc(str(test.get('test')))}</td>"
                f"<td class=num>{_num(test.get('champion'))}</td><td class=num>{_num(test.get('challenger'))}</td>"
                f"<td class=num>{_num(test.get('difference'))}{_interval(test.get('lower'), test.get('upper'))}</td>"
                f"<td class=num>{_num(test.get('p_value'), 3)}</td><td>{_verdict_badge(test.get('verdict'))}</td></tr>"
            )
    rows.append("</table>")
    return "".join(rows) + (f"<ul class=note>{''.join(notes)}</ul>" if notes else "")


# --- the page -------------------------------------------------------------------------------------------------------


def render_comparison_html(result: Mapping[str, Any], title: str = "Model comparison") -> str:
    """A self-contained HTML page of a :func:`~corral.monitoring.comparison.compare` result."""
    versions: list[Mapping[str, Any]] = list(result.get("versions") or [])
    window = result.get("window") or {}
    champion = result.get("champion") or {}
    deployments = ", ".join(str(d) for d in result.get("deployments") or [])
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="meta">deployment <b>{_esc(deployments)}</b> · {_esc(str(window.get("start")))} to '
        f"{_esc(str(window.get('end')))} · {result.get('rows')} rows · champion "
        f"<b>{_esc(_name(champion))}</b> · {_esc(str(result.get('task')))} · alpha {_num(result.get('alpha'))}</p>",
        "<h2>Versions</h2>",
        _summary_table(versions),
        "<h2>Output distributions</h2>",
        _legend(versions),
    ]
    if result.get("task") == "classification":
        out.append(_class_bars(versions, result.get("classes") or []))
    elif result.get("histogram_edges"):
        out.append(_step_histograms(versions, result["histogram_edges"]))
        out.append(_quantile_table(versions))
    out += [
        "<h2>Agreement with the champion</h2>",
        '<p class="note">On the requests both versions answered (same prediction ids).</p>',
        _agreement_section(result, versions),
        "<h2>Quality on labelled requests</h2>",
        _quality_table(versions),
        "<h3>Against the champion</h3>",
        '<p class="note">Differences are challenger minus champion, with '
        f"{_share(result.get('confidence'))} intervals; a verdict needs p &lt; {_num(result.get('alpha'))}.</p>",
        _tests_table(versions),
        "</body></html>",
    ]
    return "\n".join(out)


__all__ = ["PALETTE", "render_comparison_html"]
