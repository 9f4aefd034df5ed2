"""Offline drift reports: results as records, ordered by drift, and a self-contained HTML page.

Everything here is pure: it takes the :class:`DriftResult` list of
:func:`~corral.monitoring.detectors.compare_frames`, the two frames and the
signature, and returns plain data or a string. The HTML has no external
references at all (inline CSS, inline SVG histograms, no scripts), so the file
can be mailed or archived and opens the same anywhere. Every user string
(feature names, categories, titles) goes through :func:`html.escape`.

Ordering by drift: each result gets a *severity*, 1 at its detector's
threshold and above 1 when drifted: ``log(p) / log(threshold)`` for tests
(``ks``, ``chi2``) and ``statistic / threshold`` for distances. Drifted results
come first, then by severity, highest first; a feature ranks by its worst result.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from corral.core.schema import FeatureKind, Signature
from corral.monitoring.detectors import DriftResult
from corral.monitoring.distributions import Distribution, common_counts

HISTOGRAM_BINS = 10  # reference quantile bins for numerical histograms
TOP_CATEGORIES = 10  # categories drawn by name; the rest are pooled as "(other)"
MULTIVARIATE = "(all features)"  # the feature label of a multivariate result

_REFERENCE_COLOUR = "#1f77b4"
_CURRENT_COLOUR = "#ff7f0e"


def severity(result: DriftResult) -> float:
    """How far past its threshold a result is: 1 at the threshold, above 1 when drifted, 0 for no signal."""
    if result.p_value is not None and 0.0 < result.threshold < 1.0:
        p = min(max(result.p_value, 1e-300), 1.0) if math.isfinite(result.p_value) else 1.0
        return math.log(p) / math.log(result.threshold)
    if not math.isfinite(result.statistic):
        return math.inf if result.drifted else 0.0
    return result.statistic / result.threshold if result.threshold > 0 else result.statistic


def _key(result: DriftResult) -> tuple[bool, float]:
    return (not result.drifted, -severity(result))


def sort_results(results: Sequence[DriftResult]) -> list[DriftResult]:
    """The results by drift: multivariate ones first, then feature by feature in :func:`feature_order`.

    Within a feature (and among multivariate results), drifted first, then by :func:`severity`, highest first.
    """
    rank = {name: i for i, name in enumerate(feature_order(results))}
    return sorted(results, key=lambda r: (-1 if r.feature is None else rank[r.feature], *_key(r)))


def feature_order(results: Sequence[DriftResult]) -> list[str]:
    """The univariate features compared, ranked by their worst result (see :func:`sort_results`)."""
    worst: dict[str, tuple[bool, float]] = {}
    for result in results:
        if result.feature is None:
            continue
        key = _key(result)
        if result.feature not in worst or key < worst[result.feature]:
            worst[result.feature] = key
    return sorted(worst, key=lambda name: worst[name])


def summarize(results: Sequence[DriftResult]) -> dict[str, Any]:
    """``features``, ``drifted`` (counts), ``drifted_features`` (ranked) and the multivariate results' verdicts."""
    features = feature_order(results)
    drifted = {r.feature for r in results if r.drifted and r.feature is not None}
    return {
        "features": len(features),
        "drifted": len(drifted),
        "drifted_features": [name for name in features if name in drifted],
        "multivariate": [
            {"detector": r.detector, "statistic": _finite(r.statistic), "drifted": r.drifted}
            for r in results
            if r.feature is None
        ],
    }


def summary_line(results: Sequence[DriftResult]) -> str:
    """``"k of n features drifted"``, plus the multivariate verdicts when there are any."""
    summary = summarize(results)
    line = f"{summary['drifted']} of {summary['features']} features drifted"
    for item in summary["multivariate"]:
        verdict = "drifted" if item["drifted"] else "no drift"
        line += f"; {item['detector']} (all features): {verdict}"
    return line


def missing_rate(size: int, missing: int) -> float:
    total = size + missing
    return missing / total if total else 0.0


def result_record(result: DriftResult, signature: Signature) -> dict[str, Any]:
    """One result as a JSON-ready mapping (non-finite numbers become ``None``)."""
    kinds = {spec.name: str(spec.kind) for spec in signature.inputs}
    return {
        "feature": result.feature,
        "kind": kinds.get(result.feature, "multivariate") if result.feature is not None else "multivariate",
        "detector": result.detector,
        "statistic": _finite(result.statistic),
        "p_value": None if result.p_value is None else _finite(result.p_value),
        "threshold": result.threshold,
        "drifted": result.drifted,
        "severity": _finite(severity(result)),
        "reference_size": result.reference_size,
        "current_size": result.current_size,
        "reference_missing": result.reference_missing,
        "current_missing": result.current_missing,
        "reference_missing_rate": missing_rate(result.reference_size, result.reference_missing),
        "current_missing_rate": missing_rate(result.current_size, result.current_missing),
        "binned": result.binned,
        "details": {k: _finite(v) for k, v in result.details.items()},
    }


def report_data(results: Sequence[DriftResult], signature: Signature) -> dict[str, Any]:
    """``{"summary": ..., "results": [...]}``, the results sorted by drift."""
    return {"summary": summarize(results), "results": [result_record(r, signature) for r in sort_results(results)]}


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# --- histograms ----------------------------------------------------------------------------------------------------


def histogram_bars(
    reference: pd.Series, current: pd.Series, kind: FeatureKind
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Bin labels and the reference and current proportions per bin.

    Numerical: :data:`HISTOGRAM_BINS` common bins from the reference quantiles
    (open at both ends). Categorical and boolean: the :data:`TOP_CATEGORIES`
    most frequent categories of both sides together, the rest as ``(other)``.
    """
    ref = Distribution.from_values(reference, kind)
    cur = Distribution.from_values(current, kind)
    if kind is FeatureKind.NUMERICAL:
        if ref.size == 0:
            return [], np.zeros(0), np.zeros(0)
        ref_counts, cur_counts, edges = common_counts(ref, cur, bins=HISTOGRAM_BINS)
        assert edges is not None
        labels = [f"{lo:.4g} – {hi:.4g}" for lo, hi in itertools.pairwise(edges)]
    else:
        ref_map = dict(zip(ref.categories, (ref.counts if ref.counts is not None else []), strict=True))
        cur_map = dict(zip(cur.categories, (cur.counts if cur.counts is not None else []), strict=True))
        totals = {k: ref_map.get(k, 0) + cur_map.get(k, 0) for k in set(ref_map) | set(cur_map)}
        ranked = sorted(totals, key=lambda k: (-totals[k], k))
        labels = ranked[:TOP_CATEGORIES]
        ref_counts = np.asarray([ref_map.get(k, 0) for k in labels], dtype="float64")
        cur_counts = np.asarray([cur_map.get(k, 0) for k in labels], dtype="float64")
        rest = ranked[TOP_CATEGORIES:]
        if rest:
            labels.append("(other)")
            ref_counts = np.append(ref_counts, sum(ref_map.get(k, 0) for k in rest))
            cur_counts = np.append(cur_counts, sum(cur_map.get(k, 0) for k in rest))
    return labels, _proportions(ref_counts), _proportions(cur_counts)


def _proportions(counts: np.ndarray) -> np.ndarray:
    total = float(counts.sum())
    return counts / total if total > 0 else np.zeros_like(counts, dtype="float64")


def histogram_svg(labels: Sequence[str], reference: np.ndarray, current: np.ndarray, *, title: str = "") -> str:
    """An inline SVG of overlaid reference and current bars (proportions), each bar with a tooltip."""
    width, height, pad = 360, 120, 4
    if not labels:
        return f'<svg width="{width}" height="24" role="img"><text x="4" y="16" font-size="12">no values</text></svg>'
    top = float(max(reference.max(initial=0.0), current.max(initial=0.0))) or 1.0
    step = (width - 2 * pad) / len(labels)
    bar = max(step * 0.8, 1.0)
    parts = [
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
        f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="#999"/>',
    ]
    for i, label in enumerate(labels):
        x = pad + i * step + (step - bar) / 2
        for share, colour, side in (
            (reference[i], _REFERENCE_COLOUR, "reference"),
            (current[i], _CURRENT_COLOUR, "current"),
        ):
            h = (height - pad) * float(share) / top
            tip = html.escape(f"{label}: {side} {float(share):.1%}")
            parts.append(
                f'<rect x="{x:.2f}" y="{height - h:.2f}" width="{bar:.2f}" height="{h:.2f}" '
                f'fill="{colour}" fill-opacity="0.5"><title>{tip}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


# --- the page -------------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;color:#222;max-width:72rem}
h1{font-size:1.5rem;margin-bottom:.25rem}h2{font-size:1.1rem;margin:0 0 .5rem}
.meta{color:#555;margin:0 0 1rem}.summary{font-size:1.1rem;margin:1rem 0}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border-bottom:1px solid #ddd;padding:.2rem .6rem;text-align:left}
th{background:#f5f5f5}.num{text-align:right;font-variant-numeric:tabular-nums}
.feature{border:1px solid #ddd;border-radius:6px;padding:1rem;margin:1rem 0;display:flex;gap:1.5rem;flex-wrap:wrap}
.feature.drifted{border-color:#d62728;border-width:2px}
.badge{display:inline-block;border-radius:4px;padding:0 .4rem;font-size:.8rem;color:#fff;background:#2ca02c}
.badge.drifted{background:#d62728}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 .8rem;opacity:.6}
"""


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.4g}"


def _badge(drifted: bool) -> str:
    return '<span class="badge drifted">drifted</span>' if drifted else '<span class="badge">no drift</span>'


def _stats_table(results: Sequence[DriftResult]) -> str:
    rows = [
        "<table><tr><th>detector</th><th>statistic</th><th>p-value</th><th>threshold</th><th>drifted</th>"
        "<th>n ref / cur</th><th>missing ref / cur</th></tr>"
    ]
    for r in results:
        rows.append(
            f"<tr><td>{html.escape(r.detector)}</td><td class=num>{_num(r.statistic)}</td>"
            f"<td class=num>{_num(r.p_value)}</td><td class=num>{_num(r.threshold)}</td><td>{_badge(r.drifted)}</td>"
            f"<td class=num>{r.reference_size} / {r.current_size}</td>"
            f"<td class=num>{missing_rate(r.reference_size, r.reference_missing):.1%} / "
            f"{missing_rate(r.current_size, r.current_missing):.1%}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def render_html(
    results: Sequence[DriftResult],
    reference: pd.DataFrame,
    current: pd.DataFrame,
    signature: Signature,
    *,
    title: str = "Drift report",
    reference_name: str = "reference",
    current_name: str = "current",
) -> str:
    """A self-contained HTML drift report: summary, then one section per feature, most drifted first.

    Each section has a reference-vs-current histogram (inline SVG) and the
    feature's statistics. No external resources, no scripts; every user string is escaped.
    """
    esc = html.escape
    kinds: Mapping[str, FeatureKind] = {spec.name: spec.kind for spec in signature.inputs}
    by_feature: dict[str, list[DriftResult]] = {}
    for result in sort_results(results):
        if result.feature is not None:
            by_feature.setdefault(result.feature, []).append(result)
    multivariate = [r for r in sort_results(results) if r.feature is None]
    summary = summarize(results)

    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">reference: <b>{esc(reference_name)}</b> ({len(reference)} rows) · '
        f"current: <b>{esc(current_name)}</b> ({len(current)} rows)</p>",
        f'<p class="summary"><b>{esc(summary_line(results))}</b></p>',
    ]
    if summary["drifted_features"]:
        names = ", ".join(esc(n) for n in summary["drifted_features"])
        out.append(f"<p>Drifted: {names}</p>")
    if multivariate:
        out.append(f"<h2>{esc(MULTIVARIATE)}</h2>{_stats_table(multivariate)}")
    out.append(
        '<p class="legend">bars: share of values per bin'
        f'<span style="background:{_REFERENCE_COLOUR}"></span>reference'
        f'<span style="background:{_CURRENT_COLOUR}"></span>current</p>'
    )
    for name in feature_order(results):
        feature_results = by_feature[name]
        drifted = any(r.drifted for r in feature_results)
        kind = kinds.get(name, FeatureKind.NUMERICAL)
        labels, ref_share, cur_share = histogram_bars(reference[name], current[name], kind)
        out.append(
            f'<section class="feature{" drifted" if drifted else ""}"><div>'
            f"<h2>{esc(name)} {_badge(drifted)}</h2><p class=meta>{esc(str(kind))}</p>"
            f"{histogram_svg(labels, ref_share, cur_share, title=name)}</div>"
            f"<div>{_stats_table(feature_results)}</div></section>"
        )
    out.append("</body></html>")
    return "\n".join(out)


__all__ = [
    "HISTOGRAM_BINS",
    "MULTIVARIATE",
    "TOP_CATEGORIES",
    "feature_order",
    "histogram_bars",
    "histogram_svg",
    "missing_rate",
    "render_html",
    "report_data",
    "result_record",
    "severity",
    "sort_results",
    "summarize",
    "summary_line",
]
