"""Model reports: everything a reviewer needs to know about one registered version, in one offline file.

:func:`build_report` gathers the facts from the services (registry, deployments, monitoring, audit and
alerts) into one JSON-ready mapping; :func:`render_html` and :func:`render_markdown` turn that mapping into
a page. The sections:

- identity: model, version, flavor, artifact SHA-256 and size, status, who registered it and when,
  description, tags, the aliases that point at it now;
- lineage: the training data's fingerprint, the code commit, parameters, metrics at registration,
  library versions and Python;
- signature: the inputs (dtype, kind, training range or categories) and the outputs (task, classes);
- training data profile: per feature (and per model output) count, missing rate, min/max/mean/std and
  the distribution, drawn from the reference profile's bins;
- alias history: every move of an alias to or from this version, with who, when and why;
- serving history: the deployments that follow the model, the rows the monitoring store kept for this
  version per day, and the predictions the audit log holds;
- live metrics and drift: for each deployment serving the version now, the monitoring snapshot of the
  largest kept window (drifted features, data-quality issues, performance) and its firing alerts.

The HTML is self-contained like :mod:`corral.monitoring.report`'s: inline CSS and inline SVG, no scripts
and no external references, so the file opens offline and can be archived or mailed. Every value that
reaches the page goes through :func:`html.escape` (Markdown too, so raw HTML in a description stays text).

Histograms: a profile's numerical bins are quantile bins (about as many rows in each), so drawing their
counts side by side would show a flat bar. The report spreads each bin's count evenly over its width and
re-bins onto :data:`CELLS` equal-width cells between the training min and max, which is the shape of the
data as far as the profile knows it.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from corral.app import Services
from corral.core.profile import FeatureProfile
from corral.core.schema import FeatureKind
from corral.errors import CorralError, NotFoundError
from corral.registry.entities import ModelVersion
from corral.serving.entities import Deployment

REPORT_FORMAT = 1
CELLS = 20  # equal-width cells of a numerical histogram
TOP_CATEGORIES = 10  # categories drawn by name; the rest are pooled as "(other)"

_BAR_COLOUR = "#1f77b4"
_SPARK = "▁▂▃▄▅▆▇█"


# --- the facts ------------------------------------------------------------------------------------------------------


def resolve_version(services: Services, name: str, version_or_alias: str | int) -> ModelVersion:
    """The version ``version_or_alias`` names: a number (``3``, ``v3``) or an alias (``champion``, ``@latest``).

    Raises:
        ModelNotFoundError, VersionNotFoundError, AliasNotFoundError, InvalidReferenceError: naming what is missing.
    """
    text = str(version_or_alias).strip()
    number = text[1:] if text[:1] in ("v", "V") and text[1:].isdigit() else text
    if number.isdigit():
        return services.registry.get_version(name, int(number))
    return services.registry.resolve(f"{name}@{text.removeprefix('@')}")


def build_report(
    services: Services, name: str, version_or_alias: str | int, *, now: datetime | None = None
) -> dict[str, Any]:
    """Every fact of the report on ``name`` at ``version_or_alias``, as a JSON-ready mapping.

    Raises:
        ModelNotFoundError, VersionNotFoundError, AliasNotFoundError, InvalidReferenceError: no such version.
    """
    from corral import __version__

    record = resolve_version(services, name, version_or_alias)
    model = services.registry.get_model(record.name)
    followers = [d for d in services.deployments.list() if d.model == record.name]
    serving_now = [d for d in followers if _points_at(services, d, record)]
    return {
        "format": REPORT_FORMAT,
        "generated_at": (now or datetime.now(UTC)).isoformat(),
        "corral_version": __version__,
        "requested": str(version_or_alias),
        "identity": _identity(record, model.aliases),
        "lineage": record.lineage.to_dict(),
        "signature": {
            "inputs": [spec.to_dict() for spec in record.signature.inputs],
            "outputs": _plain(record.signature.outputs.to_dict()),
        },
        "profile": _profile(services, record),
        "alias_history": [
            event.to_dict()
            for event in services.registry.alias_history(record.name)
            if record.version in (event.from_version, event.to_version)
        ],
        "serving": _serving(services, record, followers, serving_now),
        "live": [_live(services, d, record) for d in serving_now],
    }


def _identity(record: ModelVersion, aliases: Mapping[str, int]) -> dict[str, Any]:
    return {
        "model": record.name,
        "version": record.version,
        "flavor": record.flavor,
        "artifact": {"sha256": record.artifact_sha256, "size": record.artifact_size},
        "status": str(record.status),
        "status_reason": record.status_reason,
        "created_by": record.created_by,
        "created_at": record.created_at.isoformat(),
        "description": record.description,
        "tags": dict(record.tags),
        "aliases": sorted(alias for alias, version in aliases.items() if version == record.version),
    }


def _profile(services: Services, record: ModelVersion) -> dict[str, Any] | None:
    profile = services.registry.get_profile(record.name, record.version)
    if profile is None:
        return None

    def column(feature: FeatureProfile) -> dict[str, Any]:
        out: dict[str, Any] = _plain(feature.to_dict())
        out["missing_rate"] = feature.missing_rate
        return out

    return {
        "rows": profile.rows,
        "features": [column(f) for f in profile.features.values()],
        "outputs": [column(f) for f in profile.outputs.values()],
    }


def _points_at(services: Services, deployment: Deployment, record: ModelVersion) -> bool:
    try:
        return services.registry.resolve(deployment.target).version == record.version
    except NotFoundError:  # the alias it follows was removed: it serves nothing
        return False


def _window_length(services: Services) -> int:
    return max(services.settings.monitoring.windows)


def _serving(
    services: Services, record: ModelVersion, followers: Sequence[Deployment], serving_now: Sequence[Deployment]
) -> dict[str, Any]:
    length = _window_length(services)
    now = {d.name for d in serving_now}
    deployments = []
    for deployment in followers:
        windows = services.database.monitoring.get_windows(
            deployment.name, length=length, model=record.name, version=record.version
        )
        days: dict[str, int] = {}
        for window in windows:
            day = window.key.start_time.date().isoformat()
            days[day] = days.get(day, 0) + int(window.rows)
        deployments.append(
            {
                "name": deployment.name,
                "alias": deployment.alias,
                "enabled": deployment.enabled,
                "serves_this_version": deployment.name in now,
                "rows": sum(days.values()),
                "days": [{"date": day, "rows": rows} for day, rows in sorted(days.items())],
            }
        )
    audit = services.database.audit
    return {
        "window_seconds": length,
        "deployments": deployments,
        "predictions": {
            "version": audit.count(model=record.name, version=record.version),
            "model": audit.count(model=record.name),
        },
    }


def _live(services: Services, deployment: Deployment, record: ModelVersion) -> dict[str, Any]:
    length = _window_length(services)
    head: dict[str, Any] = {"deployment": deployment.name, "enabled": deployment.enabled, "window_seconds": length}
    alerts = [a.to_dict() for a in services.alerts.list_alerts(deployment=deployment.name, state="firing")]
    try:
        snapshot = services.monitor.snapshot(deployment.name, record.name, record.version, window=length)
    except CorralError as exc:  # e.g. a stored configuration this corral cannot read: say so, report the rest
        return {**head, "window": None, "reason": str(exc), "alerts": alerts}
    if snapshot.get("window") is None:
        return {**head, "window": None, "reason": snapshot.get("reason"), "alerts": alerts}

    def column(f: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": f["name"],
            "kind": f["kind"],
            "detector": f["drift"]["detector"] if f.get("drift") else None,
            "statistic": f["drift"]["statistic"] if f.get("drift") else None,
            "drifted": bool(f["drift"]["drifted"]) if f.get("drift") else None,
            "missing_rate": f["quality"]["missing_rate"],
            "reason": f.get("reason"),
        }

    return {
        **head,
        "window": snapshot["window"],
        "reason": None,
        "features": [column(f) for f in snapshot["features"]],
        "outputs": [column(f) for f in snapshot["outputs"]],
        "drifted_features": list(snapshot["drifted_features"]),
        "prediction_drift": bool(snapshot["prediction_drift"]),
        "quality_issues": list(snapshot["quality_issues"]),
        "performance": snapshot.get("performance"),
        "alerts": alerts,
    }


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars turned into Python ones, so ``json.dumps`` takes it."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- histograms -----------------------------------------------------------------------------------------------------


def equal_width(edges: Sequence[float], counts: Sequence[int], cells: int = CELLS) -> tuple[float, float, np.ndarray]:
    """Re-bin counts over (quantile) ``edges`` onto ``cells`` equal-width cells, each bin spread evenly over its
    width; returns ``(low, high, counts per cell)``. A bin of zero width goes whole into the cell holding it."""
    lo, hi = float(edges[0]), float(edges[-1])
    values = np.asarray(counts, dtype="float64")
    if not hi > lo:
        return lo, hi, np.asarray([values.sum()])
    grid = np.linspace(lo, hi, cells + 1)
    out = np.zeros(cells)
    for a, b, count in zip(edges[:-1], edges[1:], values, strict=True):
        if b > a:
            overlap = np.clip(np.minimum(b, grid[1:]) - np.maximum(a, grid[:-1]), 0.0, None)
            out += count * overlap / (b - a)
        else:
            out[min(int(np.searchsorted(grid, a, side="right")) - 1, cells - 1)] += count
    return lo, hi, out


def bars(feature: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """Labels and counts to draw for one profiled column: equal-width cells for numbers, top categories otherwise."""
    if feature["kind"] == str(FeatureKind.NUMERICAL):
        edges, counts = feature.get("bin_edges") or [], feature.get("bin_counts") or []
        if not counts:
            return [], np.zeros(0)
        lo, hi, cells = equal_width(edges, counts)
        grid = np.linspace(lo, hi, len(cells) + 1)
        labels = [f"{a:.4g} – {b:.4g}" for a, b in itertools.pairwise(grid)]
        return labels, cells
    categories: dict[str, int] = dict(feature.get("categories") or {})
    ranked = sorted(categories, key=lambda k: (-categories[k], k))
    labels = ranked[:TOP_CATEGORIES]
    values = [float(categories[k]) for k in labels]
    rest = sum(categories[k] for k in ranked[TOP_CATEGORIES:]) + int(feature.get("other") or 0)
    if rest:
        labels.append("(other)")
        values.append(float(rest))
    return labels, np.asarray(values, dtype="float64")


def histogram_svg(labels: Sequence[str], counts: np.ndarray, *, title: str = "") -> str:
    """A small inline SVG bar chart, each bar with a tooltip (its label and share)."""
    width, height, pad = 180, 44, 1
    if not labels or not counts.sum() > 0:
        return f'<svg width="{width}" height="16" role="img"><text x="2" y="12" font-size="10">no values</text></svg>'
    total, top = float(counts.sum()), float(counts.max())
    step = (width - 2 * pad) / len(labels)
    bar = max(step * 0.9, 1.0)
    parts = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{html.escape(title)}">',
        f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="#999"></line>',
    ]
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        h = (height - pad) * float(count) / top
        tip = html.escape(f"{label}: {float(count) / total:.1%}")
        parts.append(
            f'<rect x="{pad + i * step + (step - bar) / 2:.2f}" y="{height - h:.2f}" width="{bar:.2f}" '
            f'height="{h:.2f}" fill="{_BAR_COLOUR}" fill-opacity="0.7"><title>{tip}</title></rect>'
        )
    parts.append("</svg>")
    return "".join(parts)


def sparkline(counts: np.ndarray) -> str:
    """The counts as a line of block characters (for Markdown)."""
    if not len(counts) or not counts.max() > 0:
        return ""
    top = float(counts.max())
    return "".join(_SPARK[min(round(float(c) / top * (len(_SPARK) - 1)), len(_SPARK) - 1)] for c in counts)


# --- shared formatting ----------------------------------------------------------------------------------------------


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "–"
    return str(value)


def _rate(value: Any) -> str:
    return f"{float(value):.1%}" if isinstance(value, int | float) and math.isfinite(value) else "–"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit} ({size} B)"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _range(spec: Mapping[str, Any]) -> str:
    if spec.get("min") is not None:
        return f"{_num(spec['min'])} … {_num(spec.get('max'))}"
    categories = spec.get("categories")
    if categories is not None:
        shown = ", ".join(str(c) for c in categories[:TOP_CATEGORIES])
        return shown + (f", … ({len(categories)} in all)" if len(categories) > TOP_CATEGORIES else "")
    return "–"


def _ref(report: Mapping[str, Any]) -> str:
    identity = report["identity"]
    return f"{identity['model']}/{identity['version']}"


def _metric_rows(performance: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    realized, estimated = performance.get("realized") or {}, performance.get("estimated") or {}
    registered, compared = performance.get("registered") or {}, performance.get("compared_to_registered") or {}
    rows = []
    for metric in dict.fromkeys([*realized, *estimated, *registered]):
        value = realized.get(metric)
        text = "–"
        if value is not None and value.get("value") is not None:
            text = _num(value["value"])
            if value.get("lower") is not None and value.get("upper") is not None:
                text += f" [{_num(value['lower'])}, {_num(value['upper'])}]"
        elif value is not None and value.get("reason"):
            text = f"– ({value['reason']})"
        change = (compared.get(metric) or {}).get("change")
        rows.append(
            (
                str(metric),
                text,
                _num((estimated.get(metric) or {}).get("value")),
                _num(registered.get(metric)),
                f"{change:+.4g}" if isinstance(change, int | float) else "–",
            )
        )
    return rows


# --- HTML -----------------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;color:#222;max-width:76rem}
h1{font-size:1.5rem;margin-bottom:.25rem}h2{font-size:1.2rem;margin:2rem 0 .5rem;border-bottom:1px solid #ccc}
h3{font-size:1rem;margin:1rem 0 .3rem}.meta{color:#555;margin:0 0 1rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border-bottom:1px solid #ddd;padding:.2rem .6rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{background:none;width:12rem}code{font-size:.8rem;word-break:break-all}
.description{white-space:pre-wrap;background:#fafafa;border-left:3px solid #ccc;padding:.5rem 1rem}
.badge{display:inline-block;border-radius:4px;padding:0 .4rem;font-size:.8rem;color:#fff;background:#2ca02c}
.badge.bad{background:#d62728}.badge.warn{background:#ff7f0e}.none{color:#777;font-style:italic}
"""


def _e(value: Any) -> str:
    return html.escape(_num(value) if not isinstance(value, str) else value, quote=True)


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[int] = ()) -> str:
    """A table of already escaped cells (``numeric``: the columns aligned right)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>" for i, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return '<p class="none">none</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv(items: Iterable[tuple[str, str]]) -> str:
    """A two-column table; values already escaped."""
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _mapping(values: Mapping[str, Any], key: str = "name", value: str = "value") -> str:
    return _table([key, value], [(_e(k), _e(v)) for k, v in values.items()])


def _badge(text: str, level: str = "") -> str:
    return (
        f'<span class="badge {level}">{html.escape(text)}</span>'
        if level
        else f'<span class="badge">{html.escape(text)}</span>'
    )


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page: inline CSS and SVG, no scripts, no external references."""
    ref = _ref(report)
    identity = report["identity"]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Model report: {_e(ref)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Model report: {_e(ref)}</h1>",
        f'<p class="meta">generated {_e(report["generated_at"])} by corral {_e(report["corral_version"])} · '
        f"requested as {_e(report['requested'])}</p>",
    ]
    out += _html_identity(identity)
    out += _html_lineage(report["lineage"])
    out += _html_signature(report["signature"])
    out += _html_profile(report["profile"])
    out += _html_aliases(report["alias_history"])
    out += _html_serving(report["serving"])
    out += _html_live(report["live"])
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html_identity(identity: Mapping[str, Any]) -> list[str]:
    status = identity["status"] + (f" ({identity['status_reason']})" if identity.get("status_reason") else "")
    tags = ", ".join(f"{k}={v}" for k, v in identity["tags"].items())
    out = [
        '<section id="identity"><h2>Identity</h2>',
        _kv(
            [
                ("model", _e(identity["model"])),
                ("version", _e(identity["version"])),
                ("flavor", _e(identity["flavor"])),
                ("artifact SHA-256", f"<code>{_e(identity['artifact']['sha256'])}</code>"),
                ("artifact size", _e(_size(identity["artifact"]["size"]))),
                ("status", _e(status)),
                ("created", f"{_e(identity['created_at'])} by {_e(identity['created_by'])}"),
                ("aliases now", _e(", ".join(identity["aliases"]) or "–")),
                ("tags", _e(tags or "–")),
            ]
        ),
    ]
    if identity["description"]:
        out.append(f'<h3>Description</h3><div class="description">{_e(identity["description"])}</div>')
    out.append("</section>")
    return out


def _html_lineage(lineage: Mapping[str, Any]) -> list[str]:
    data = lineage.get("data")
    dirty = lineage.get("code_dirty")
    code = _e(lineage.get("code_commit") or "unknown")
    if dirty is not None:
        code += " " + (_badge("uncommitted changes", "warn") if dirty else _badge("clean"))
    out = ['<section id="lineage"><h2>Lineage</h2>']
    if data:
        out.append(
            _kv(
                [
                    ("training data SHA-256", f"<code>{_e(data['sha256'])}</code>"),
                    ("rows × columns", f"{_e(data['rows'])} × {_e(data['columns'])}"),
                    ("source", _e(data.get("source") or "–")),
                    ("code commit", code),
                    ("Python", _e(lineage.get("python") or "–")),
                ]
            )
        )
    else:
        out.append('<p class="none">registered without training data: no fingerprint</p>')
        out.append(_kv([("code commit", code), ("Python", _e(lineage.get("python") or "–"))]))
    out.append("<h3>Metrics at registration</h3>" + _mapping(lineage.get("metrics") or {}, "metric"))
    out.append("<h3>Parameters</h3>" + _mapping(lineage.get("params") or {}, "parameter"))
    out.append("<h3>Libraries</h3>" + _mapping(lineage.get("requirements") or {}, "library", "version"))
    out.append("</section>")
    return out


def _html_signature(signature: Mapping[str, Any]) -> list[str]:
    outputs = signature["outputs"]
    classes = outputs.get("classes")
    rows = [
        (_e(s["name"]), _e(s["dtype"]), _e(s["kind"]), _e(bool(s.get("nullable"))), _e(_range(s)))
        for s in signature["inputs"]
    ]
    return [
        '<section id="signature"><h2>Signature</h2><h3>Inputs</h3>',
        _table(["name", "dtype", "kind", "nullable", "training range / categories"], rows),
        "<h3>Outputs</h3>",
        _kv(
            [
                ("task", _e(outputs.get("task"))),
                ("dtype", _e(outputs.get("dtype"))),
                ("classes", _e(", ".join(str(c) for c in classes) if classes is not None else "–")),
                ("probabilities", _e(bool(outputs.get("probabilities")))),
            ]
        ),
        "</section>",
    ]


def _profile_rows(columns: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for f in columns:
        labels, counts = bars(f)
        rows.append(
            (
                _e(f["name"]),
                _e(f["kind"]),
                _e(f["count"]),
                _e(_rate(f["missing_rate"])),
                _e(f.get("min")),
                _e(f.get("max")),
                _e(f.get("mean")),
                _e(f.get("std")),
                histogram_svg(labels, counts, title=f"{f['name']} distribution"),
            )
        )
    return rows


_PROFILE_COLUMNS = ["column", "kind", "count", "missing", "min", "max", "mean", "std", "distribution"]


def _html_profile(profile: Mapping[str, Any] | None) -> list[str]:
    out = ['<section id="profile"><h2>Training data profile</h2>']
    if profile is None:
        out.append('<p class="none">no reference profile (registered without training data)</p></section>')
        return out
    out.append(
        f'<p class="meta">{_e(profile["rows"])} rows; numerical distributions re-binned from the profile\'s quantile '
        "bins onto equal-width cells between the training min and max; hover a bar for its share</p>"
    )
    out.append(_table(_PROFILE_COLUMNS, _profile_rows(profile["features"]), numeric=(2, 3, 4, 5, 6, 7)))
    if profile["outputs"]:
        out.append("<h3>Model outputs on the training data</h3>")
        out.append(_table(_PROFILE_COLUMNS, _profile_rows(profile["outputs"]), numeric=(2, 3, 4, 5, 6, 7)))
    out.append("</section>")
    return out


def _move(event: Mapping[str, Any]) -> str:
    def side(version: int | None) -> str:
        return "–" if version is None else str(version)

    return f"{side(event['from_version'])} → {side(event['to_version'])}"


def _html_aliases(history: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [
        (_e(e["at"]), _e(e["alias"]), _e(e["action"]), _e(_move(e)), _e(e["actor"]), _e(e["reason"] or "–"))
        for e in history
    ]
    return [
        '<section id="aliases"><h2>Alias history</h2>',
        _table(["when", "alias", "action", "from → to", "who", "why"], rows),
        "</section>",
    ]


def _html_serving(serving: Mapping[str, Any]) -> list[str]:
    predictions = serving["predictions"]
    out = [
        '<section id="serving"><h2>Serving history</h2>',
        f"<p>Predictions in the audit log: <b>{_e(predictions['version'])}</b> by this version "
        f"({_e(predictions['model'])} by all versions of the model).</p>",
        "<h3>Deployments following the model</h3>",
        _table(
            ["deployment", "alias", "enabled", "serves this version now", "rows monitored"],
            [
                (
                    _e(d["name"]),
                    _e(d["alias"]),
                    _e(bool(d["enabled"])),
                    _e(bool(d["serves_this_version"])),
                    _e(d["rows"]),
                )
                for d in serving["deployments"]
            ],
            numeric=(4,),
        ),
        f"<h3>Rows per day (monitoring windows of {_e(serving['window_seconds'])} s)</h3>",
        _table(
            ["deployment", "day", "rows"],
            [(_e(d["name"]), _e(day["date"]), _e(day["rows"])) for d in serving["deployments"] for day in d["days"]],
            numeric=(2,),
        ),
        "</section>",
    ]
    return out


def _html_live(lives: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ['<section id="live"><h2>Live metrics and drift</h2>']
    if not lives:
        out.append('<p class="none">no deployment serves this version now</p>')
    for live in lives:
        out.append(f"<h3>Deployment {_e(live['deployment'])}</h3>")
        if live["window"] is None:
            out.append(f'<p class="none">{_e(live["reason"] or "no window")}</p>')
        else:
            out.append(f"<p>{_e(_summary(live))}</p>")
            out.append(
                _table(
                    ["column", "kind", "detector", "statistic", "drifted", "missing"],
                    [
                        (
                            _e(f["name"]),
                            _e(f["kind"]),
                            _e(f["detector"] or "–"),
                            _e(f["statistic"]),
                            _badge("drifted", "bad")
                            if f["drifted"]
                            else (_badge("no drift") if f["drifted"] is not None else _e(f["reason"] or "–")),
                            _e(_rate(f["missing_rate"])),
                        )
                        for f in [*live["features"], *live["outputs"]]
                    ],
                    numeric=(3, 5),
                )
            )
            issues = live["quality_issues"]
            out.append(f"<p><b>Data-quality issues ({len(issues)})</b></p>")
            out.append(
                _table(
                    ["severity", "column", "check", "message"],
                    [(_e(i["severity"]), _e(i["feature"]), _e(i["check"]), _e(i["message"])) for i in issues],
                )
            )
            performance = live.get("performance")
            if performance and performance.get("rows"):
                labelled, rows = _e(performance["labelled"]), _e(performance["rows"])
                out.append(f"<p><b>Performance: {labelled} labelled of {rows} rows</b></p>")
                out.append(
                    _table(
                        ["metric", "realized [95% interval]", "estimated (CBPE)", "at registration", "change"],
                        [tuple(_e(c) for c in row) for row in _metric_rows(performance)],
                        numeric=(2, 3, 4),
                    )
                )
        alerts = live["alerts"]
        out.append(f"<p><b>Firing alerts ({len(alerts)})</b></p>")
        out.append(
            _table(
                ["severity", "rule", "message", "since"],
                [(_e(a["severity"]), _e(a["rule"]), _e(a["message"]), _e(a["opened_at"])) for a in alerts],
            )
        )
    out.append("</section>")
    return out


def _summary(live: Mapping[str, Any]) -> str:
    window = live["window"]
    drifted = live["drifted_features"]
    features = live["features"]
    line = (
        f"{window['rows']} rows in the latest {live['window_seconds']} s window (since {window['start_time']}); "
        f"{len(drifted)} of {len(features)} features drifted"
    )
    if drifted:
        line += ": " + ", ".join(drifted)
    if live.get("prediction_drift"):
        line += "; the predictions drifted"
    return line


# --- Markdown -------------------------------------------------------------------------------------------------------


def _m(value: Any) -> str:
    """A value as Markdown text: HTML-escaped (raw HTML stays text), pipes escaped, on one line."""
    text = value if isinstance(value, str) else _num(value)
    return html.escape(text, quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _md_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table of already escaped cells; ``_none_`` when there are no rows."""
    body = ["| " + " | ".join(row) + " |" for row in rows]
    if not body:
        return ["_none_", ""]
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *body, ""]


def _md_mapping(values: Mapping[str, Any], key: str, value: str = "value") -> list[str]:
    return _md_table([key, value], [(_m(k), _m(v)) for k, v in values.items()])


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: the same sections as the HTML, distributions as block-character sparklines."""
    identity, lineage, signature = report["identity"], report["lineage"], report["signature"]
    ref = _ref(report)
    out = [
        f"# Model report: {_m(ref)}",
        "",
        f"_generated {_m(report['generated_at'])} by corral {_m(report['corral_version'])}; "
        f"requested as {_m(report['requested'])}_",
        "",
        "## Identity",
        "",
    ]
    status = identity["status"] + (f" ({identity['status_reason']})" if identity.get("status_reason") else "")
    out += _md_table(
        ["field", "value"],
        [
            ("model", _m(identity["model"])),
            ("version", _m(identity["version"])),
            ("flavor", _m(identity["flavor"])),
            ("artifact SHA-256", f"`{_m(identity['artifact']['sha256'])}`"),
            ("artifact size", _m(_size(identity["artifact"]["size"]))),
            ("status", _m(status)),
            ("created", f"{_m(identity['created_at'])} by {_m(identity['created_by'])}"),
            ("aliases now", _m(", ".join(identity["aliases"]) or "–")),
            ("tags", _m(", ".join(f"{k}={v}" for k, v in identity["tags"].items()) or "–")),
        ],
    )
    if identity["description"]:
        out += ["### Description", "", *(f"> {_m(line)}" for line in identity["description"].splitlines()), ""]

    out += ["## Lineage", ""]
    data = lineage.get("data")
    code = lineage.get("code_commit") or "unknown"
    if lineage.get("code_dirty") is not None:
        code += " (uncommitted changes)" if lineage["code_dirty"] else " (clean)"
    facts = [("code commit", _m(code)), ("Python", _m(lineage.get("python") or "–"))]
    if data:
        facts = [
            ("training data SHA-256", f"`{_m(data['sha256'])}`"),
            ("rows × columns", f"{_m(data['rows'])} × {_m(data['columns'])}"),
            ("source", _m(data.get("source") or "–")),
            *facts,
        ]
    out += _md_table(["field", "value"], facts)
    out += ["### Metrics at registration", "", *_md_mapping(lineage.get("metrics") or {}, "metric")]
    out += ["### Parameters", "", *_md_mapping(lineage.get("params") or {}, "parameter")]
    out += ["### Libraries", "", *_md_mapping(lineage.get("requirements") or {}, "library", "version")]

    outputs = signature["outputs"]
    classes = outputs.get("classes")
    out += ["## Signature", "", "### Inputs", ""]
    out += _md_table(
        ["name", "dtype", "kind", "nullable", "training range / categories"],
        [
            (_m(s["name"]), _m(s["dtype"]), _m(s["kind"]), _m(bool(s.get("nullable"))), _m(_range(s)))
            for s in signature["inputs"]
        ],
    )
    out += ["### Outputs", ""]
    out += _md_table(
        ["field", "value"],
        [
            ("task", _m(outputs.get("task"))),
            ("dtype", _m(outputs.get("dtype"))),
            ("classes", _m(", ".join(str(c) for c in classes) if classes is not None else "–")),
            ("probabilities", _m(bool(outputs.get("probabilities")))),
        ],
    )

    out += ["## Training data profile", ""]
    profile = report["profile"]
    if profile is None:
        out += ["_no reference profile (registered without training data)_", ""]
    else:
        out += [f"{_m(profile['rows'])} rows.", ""]
        out += _md_profile(profile["features"])
        if profile["outputs"]:
            out += ["### Model outputs on the training data", "", *_md_profile(profile["outputs"])]

    out += ["## Alias history", ""]
    out += _md_table(
        ["when", "alias", "action", "from → to", "who", "why"],
        [
            (_m(e["at"]), _m(e["alias"]), _m(e["action"]), _m(_move(e)), _m(e["actor"]), _m(e["reason"] or "–"))
            for e in report["alias_history"]
        ],
    )

    serving = report["serving"]
    out += [
        "## Serving history",
        "",
        f"Predictions in the audit log: **{_m(serving['predictions']['version'])}** by this version "
        f"({_m(serving['predictions']['model'])} by all versions of the model).",
        "",
        "### Deployments following the model",
        "",
    ]
    out += _md_table(
        ["deployment", "alias", "enabled", "serves this version now", "rows monitored"],
        [
            (_m(d["name"]), _m(d["alias"]), _m(bool(d["enabled"])), _m(bool(d["serves_this_version"])), _m(d["rows"]))
            for d in serving["deployments"]
        ],
    )
    out += [f"### Rows per day (monitoring windows of {_m(serving['window_seconds'])} s)", ""]
    out += _md_table(
        ["deployment", "day", "rows"],
        [(_m(d["name"]), _m(day["date"]), _m(day["rows"])) for d in serving["deployments"] for day in d["days"]],
    )

    out += ["## Live metrics and drift", ""]
    if not report["live"]:
        out += ["_no deployment serves this version now_", ""]
    for live in report["live"]:
        out += _md_live(live)
    return "\n".join(out).rstrip("\n") + "\n"


def _md_profile(columns: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = []
    for f in columns:
        labels, counts = bars(f)
        shape = sparkline(counts)
        if f["kind"] != str(FeatureKind.NUMERICAL) and labels:
            shape = ", ".join(f"{label}: {int(c)}" for label, c in zip(labels, counts, strict=True))
        rows.append(
            (
                _m(f["name"]),
                _m(f["kind"]),
                _m(f["count"]),
                _m(_rate(f["missing_rate"])),
                _m(f.get("min")),
                _m(f.get("max")),
                _m(f.get("mean")),
                _m(f.get("std")),
                _m(shape or "–"),
            )
        )
    return _md_table(_PROFILE_COLUMNS, rows)


def _md_live(live: Mapping[str, Any]) -> list[str]:
    out = [f"### Deployment {_m(live['deployment'])}", ""]
    if live["window"] is None:
        out += [f"_{_m(live['reason'] or 'no window')}_", ""]
    else:
        out += [_m(_summary(live)), ""]
        out += _md_table(
            ["column", "kind", "detector", "statistic", "drifted", "missing"],
            [
                (
                    _m(f["name"]),
                    _m(f["kind"]),
                    _m(f["detector"] or "–"),
                    _m(f["statistic"]),
                    _m(f["drifted"]) if f["drifted"] is not None else _m(f["reason"] or "–"),
                    _m(_rate(f["missing_rate"])),
                )
                for f in [*live["features"], *live["outputs"]]
            ],
        )
        issues = live["quality_issues"]
        out += [f"**Data-quality issues ({len(issues)})**", ""]
        out += _md_table(
            ["severity", "column", "check", "message"],
            [(_m(i["severity"]), _m(i["feature"]), _m(i["check"]), _m(i["message"])) for i in issues],
        )
        performance = live.get("performance")
        if performance and performance.get("rows"):
            out += [f"**Performance: {_m(performance['labelled'])} labelled of {_m(performance['rows'])} rows**", ""]
            out += _md_table(
                ["metric", "realized [95% interval]", "estimated (CBPE)", "at registration", "change"],
                [tuple(_m(c) for c in row) for row in _metric_rows(performance)],
            )
    alerts = live["alerts"]
    out += [f"**Firing alerts ({len(alerts)})**", ""]
    out += _md_table(
        ["severity", "rule", "message", "since"],
        [(_m(a["severity"]), _m(a["rule"]), _m(a["message"]), _m(a["opened_at"])) for a in alerts],
    )
    return out


__all__ = [
    "CELLS",
    "REPORT_FORMAT",
    "TOP_CATEGORIES",
    "bars",
    "build_report",
    "equal_width",
    "histogram_svg",
    "render_html",
    "render_markdown",
    "resolve_version",
    "sparkline",
]
