"""Chart.js configurations built from the views' data: plain dicts, rendered into a ``data-chart`` attribute
and drawn by ``static/corral.js``. Every chart here has data or is left out, so an empty canvas never shows."""

from __future__ import annotations

import itertools
from typing import Any

# Okabe-Ito: distinguishable with the common colour-vision deficiencies
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C6D1F", "#000000")
MOST_FEATURES = 8


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _label(version: dict[str, Any]) -> str:
    role = "champion" if version.get("champion") else version.get("role", "")
    return f"{version['model']}:{version['version']} ({role})"


def deployment_charts(page: dict[str, Any]) -> dict[str, Any]:
    """Output distributions overlaid, latency, agreement with the champion, labelled quality over time."""
    out: dict[str, Any] = {}
    comparison = page.get("comparison") or {}
    compared = comparison.get("versions") or []
    if compared:
        out["outputs"] = _outputs_chart(comparison, compared)
        out["latency"] = {
            "type": "bar",
            "data": {
                "labels": [_label(v) for v in compared],
                "datasets": [
                    {
                        "label": "p50 (ms)",
                        "data": [(v.get("latency_ms") or {}).get("p50") for v in compared],
                        "backgroundColor": colour(0),
                    },
                    {
                        "label": "p99 (ms)",
                        "data": [(v.get("latency_ms") or {}).get("p99") for v in compared],
                        "backgroundColor": colour(1),
                    },
                ],
            },
            "options": {"scales": {"y": {"title": {"display": True, "text": "milliseconds"}}}},
        }
        agreeing = [v for v in compared if (v.get("agreement") or {}).get("agreement") is not None]
        if agreeing:
            out["agreement"] = {
                "type": "bar",
                "data": {
                    "labels": [_label(v) for v in agreeing],
                    "datasets": [
                        {
                            "label": "agreement with the champion",
                            "data": [v["agreement"]["agreement"] for v in agreeing],
                            "backgroundColor": colour(2),
                        }
                    ],
                },
                "options": {"scales": {"y": {"min": 0, "max": 1}}},
            }
    timeline = page.get("timeline")
    if timeline and any(any(p for p in v["points"]) for v in timeline["versions"]):
        out["quality"] = _timeline_chart(timeline)
    return out


def _outputs_chart(comparison: dict[str, Any], compared: list[dict[str, Any]]) -> dict[str, Any]:
    if comparison.get("task") == "classification":
        labels = [str(c) for c in comparison.get("classes") or []]
        datasets = [
            {"label": _label(v), "data": (v.get("output") or {}).get("shares") or [], "backgroundColor": colour(i)}
            for i, v in enumerate(compared)
        ]
        axis = "share of predictions"
    else:
        edges = comparison.get("histogram_edges") or []
        labels = [f"{a:.3g}–{b:.3g}" for a, b in itertools.pairwise(edges)]
        datasets = []
        for i, v in enumerate(compared):
            counts = (v.get("output") or {}).get("histogram") or []
            total = sum(counts) or 1
            datasets.append(
                {"label": _label(v), "data": [c / total for c in counts], "backgroundColor": colour(i) + "99"}
            )
        axis = "share of predictions"
    return {
        "type": "bar",
        "data": {"labels": labels, "datasets": datasets},
        "options": {"scales": {"y": {"title": {"display": True, "text": axis}}}},
    }


def _timeline_chart(timeline: dict[str, Any]) -> dict[str, Any]:
    starts = [b["start"] for b in timeline["buckets"]]
    short = len(starts) > 1 and starts[0][:16] == starts[1][:16]  # buckets under a minute: show the seconds
    labels = [s[11:19] if short else s[5:16].replace("T", " ") for s in starts]
    datasets = []
    for i, v in enumerate(timeline["versions"]):
        name = f"{v['model']}:{v['version']} ({', '.join(v['roles'])})"
        points = v["points"]
        datasets.append(
            {
                "label": name,
                "data": [p["value"] if p else None for p in points],
                "borderColor": colour(i),
                "backgroundColor": colour(i),
                "spanGaps": True,
            }
        )
        datasets.append(
            {
                "label": f"{name} interval",
                "data": [[p["lower"], p["upper"]] if p and p["lower"] is not None else None for p in points],
                "type": "bar",
                "backgroundColor": colour(i) + "40",
                "barPercentage": 0.3,
            }
        )
    return {
        "type": "line",
        "data": {"labels": labels, "datasets": datasets},
        "options": {"scales": {"y": {"title": {"display": True, "text": f"{timeline['metric']} (95% interval)"}}}},
    }


def drift_charts(page: dict[str, Any]) -> dict[str, Any]:
    """Drift score over time for the most drifted features, and each column's two histograms."""
    out: dict[str, Any] = {}
    history = page.get("history") or {}
    windows = history.get("windows") or []
    features = history.get("features") or {}
    if windows and features:
        latest = {name: next((s for s in reversed(scores) if s is not None), 0.0) for name, scores in features.items()}
        shown = sorted(features, key=lambda n: -latest[n])[:MOST_FEATURES]
        labels = [w["start_time"][5:16].replace("T", " ") for w in windows]
        datasets = [
            {
                "label": name,
                "data": features[name],
                "borderColor": colour(i),
                "backgroundColor": colour(i),
                "spanGaps": True,
            }
            for i, name in enumerate(shown)
        ]
        threshold = history.get("threshold_score", 1.0)
        datasets.append(
            {
                "label": "drift threshold",
                "data": [threshold] * len(windows),
                "borderColor": "#555555",
                "borderDash": [6, 4],
                "pointRadius": 0,
            }
        )
        out["history"] = {
            "type": "line",
            "data": {"labels": labels, "datasets": datasets},
            "options": {"scales": {"y": {"title": {"display": True, "text": "drift score (1 = threshold)"}}}},
        }
    for column in (page.get("histograms") or {}).get("histograms") or []:
        if not column.get("labels"):
            continue
        out[f"hist:{column['name']}"] = {
            "type": "bar",
            "data": {
                "labels": column["labels"],
                "datasets": [
                    {"label": "reference (training)", "data": column["reference"], "backgroundColor": colour(0) + "B0"},
                    {"label": "production window", "data": column["current"], "backgroundColor": colour(1) + "B0"},
                ],
            },
            "options": {"scales": {"y": {"title": {"display": True, "text": "share of rows"}}}},
        }
    return out


def explanation_charts(explanation: dict[str, Any] | None) -> dict[str, Any]:
    """A waterfall per explained output: from the base value, each feature's contribution (largest first)."""
    if not explanation or not explanation.get("contributions"):
        return {}
    out: dict[str, Any] = {}
    contributions = explanation["contributions"]
    for k, output in enumerate(explanation["outputs"]):
        ranked = sorted(contributions, key=lambda f: -abs(contributions[f][k]))
        level = float(explanation["base_values"][k])
        bars, labels, colours = [], ["base value"], [PALETTE[7]]
        bars.append([0.0, level])
        for name in ranked:
            step = float(contributions[name][k])
            bars.append([level, level + step])
            labels.append(f"{name} ({step:+.3g})")
            colours.append("#B22222" if step > 0 else "#1F6FB2")
            level += step
        bars.append([0.0, level])
        labels.append(f"{output} = {level:.4g}")
        colours.append(PALETTE[7])
        out[f"explain:{output}"] = {
            "type": "bar",
            "data": {
                "labels": labels,
                "datasets": [{"label": f"contribution to {output}", "data": bars, "backgroundColor": colours}],
            },
            "options": {"indexAxis": "y", "plugins": {"legend": {"display": False}}},
        }
    return out
