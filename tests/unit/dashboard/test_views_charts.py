"""The dashboard's pure parts: the health colour rule, the view cache, and the Chart.js configurations (every chart
has data or is left out; a waterfall ends where the model's output is)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from corral.dashboard import charts, views
from corral.dashboard.render import templates

CLEAN = {"window": {"rows": 500}, "drifted_features": [], "quality_issues": [], "prediction_drift": False}
WARNING = {"feature": "age", "severity": "warning", "message": "5% missing"}
CRITICAL = {"feature": "age", "severity": "critical", "message": "80% missing"}
FIRING = {"rule": "latency", "severity": "warning"}
PAGING = {"rule": "errors", "severity": "critical"}


# -- health --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snapshot", "alerts", "colour", "why"),
    [
        (CLEAN, [], "green", "no drift, no quality issue, no alert"),
        (None, [], "grey", "no monitoring data"),
        ({"window": None, "reason": "no traffic recorded yet"}, [], "grey", "no traffic recorded yet"),
        ({"window": None, "reason": "no traffic recorded yet"}, [FIRING], "amber", "1 alert(s) firing"),
        (None, [FIRING, PAGING], "red", "2 alert(s) firing"),  # a critical alert is red even without data
        (CLEAN, [PAGING], "red", "1 alert(s) firing"),
        ({**CLEAN, "prediction_drift": True}, [], "red", "outputs drifted"),
        ({**CLEAN, "prediction_drift": True, "quality_issues": [CRITICAL]}, [], "red", "outputs drifted"),
        ({**CLEAN, "quality_issues": [WARNING, CRITICAL]}, [], "red", "critical data-quality issue"),
        ({**CLEAN, "drifted_features": ["age", "income"]}, [], "amber", "2 feature(s) drifted"),
        ({**CLEAN, "quality_issues": [WARNING]}, [], "amber", "1 quality issue(s)"),
        (CLEAN, [FIRING], "amber", "1 alert(s) firing"),
        (
            {**CLEAN, "drifted_features": ["age"], "quality_issues": [WARNING]},
            [FIRING],
            "amber",
            "1 feature(s) drifted, 1 quality issue(s), 1 alert(s) firing",
        ),
    ],
)
def test_health_colours(snapshot: dict[str, Any] | None, alerts: list[dict[str, Any]], colour: str, why: str) -> None:
    assert views.health(snapshot, alerts) == (colour, why)


def test_every_health_colour_has_a_badge() -> None:
    macro = templates().env.get_template("macros.html").module.health
    for colour, label in (("green", "OK"), ("amber", "Watch"), ("red", "Act"), ("grey", "No data")):
        rendered = str(macro(colour, "because"))
        assert f'class="badge {colour}"' in rendered and f">{label}</span>" in rendered


# -- cache ---------------------------------------------------------------------------------------------------------


def test_the_cache_keeps_a_result_for_its_seconds_then_computes_it_again() -> None:
    now = [100.0]
    cache = views.Cache(seconds=30, clock=lambda: now[0])
    calls: list[str] = []

    def compute(key: str) -> Any:
        return lambda: calls.append(key) or f"{key}@{now[0]:g}"

    assert cache.get("a", compute("a")) == "a@100"
    now[0] = 129.9
    assert cache.get("a", compute("a")) == "a@100"  # still fresh: not computed again
    assert cache.get("b", compute("b")) == "b@129.9"  # another key has its own entry
    now[0] = 130.0
    assert cache.get("a", compute("a")) == "a@130"  # 30 s old: expired
    now[0] = 159.8
    assert cache.get("a", compute("a")) == "a@130" and cache.get("b", compute("b")) == "b@129.9"
    now[0] = 160.0
    assert cache.get("b", compute("b")) == "b@160"
    assert calls == ["a", "b", "a", "b"]


def test_a_cached_none_is_kept_too() -> None:
    cache = views.Cache(seconds=5, clock=lambda: 0.0)
    calls: list[int] = []
    assert cache.get("k", lambda: calls.append(1)) is None
    assert cache.get("k", lambda: calls.append(2)) is None and calls == [1]


# -- explanation waterfall -----------------------------------------------------------------------------------------


EXPLANATION = {
    "method": "linear:log-odds",
    "outputs": ["logit_0", "logit_1"],
    "base_values": [-0.25, 0.25],
    "contributions": {"radius": [-0.5, 0.5], "texture": [0.125, -0.125], "smoothness": [2.0, -2.0]},
}


def test_a_waterfall_per_output_ends_at_the_base_value_plus_every_contribution() -> None:
    found = charts.explanation_charts(EXPLANATION)
    assert set(found) == {"explain:logit_0", "explain:logit_1"}
    for k, output in enumerate(EXPLANATION["outputs"]):
        chart = found[f"explain:{output}"]
        [dataset] = chart["data"]["datasets"]
        bars, labels = dataset["data"], chart["data"]["labels"]
        base = EXPLANATION["base_values"][k]
        total = base + sum(c[k] for c in EXPLANATION["contributions"].values())
        assert bars[0] == [0.0, base] and bars[-1] == [0.0, pytest.approx(total)]
        assert labels[0] == "base value" and labels[-1] == f"{output} = {total:.4g}"
        steps = bars[1:-1]
        assert [b[0] for b in steps] == [base] + [b[1] for b in steps[:-1]]  # each step starts where one ended
        assert labels[1:-1] == (
            ["smoothness (+2)", "radius (-0.5)", "texture (+0.125)"]
            if k == 0
            else ["smoothness (-2)", "radius (+0.5)", "texture (-0.125)"]
        )  # largest first
        raising = [b[1] > b[0] for b in steps]
        assert dataset["backgroundColor"][1:-1] == ["#B22222" if up else "#1F6FB2" for up in raising]
        assert chart["options"]["indexAxis"] == "y"
        json.dumps(chart, allow_nan=False)  # what the template's filter needs


@pytest.mark.parametrize("explanation", [None, {}, {**EXPLANATION, "contributions": {}}])
def test_no_explanation_draws_no_waterfall(explanation: dict[str, Any] | None) -> None:
    assert charts.explanation_charts(explanation) == {}


# -- deployment and drift charts -----------------------------------------------------------------------------------


def version(number: int, role: str, **fields: Any) -> dict[str, Any]:
    return {"model": "m", "version": number, "role": role, "champion": role == "primary", **fields}


COMPARED = [
    version(1, "primary", output={"shares": [0.7, 0.3]}, latency_ms={"p50": 2.0, "p99": 9.0}, agreement=None),
    version(
        2, "shadow", output={"shares": [0.6, 0.4]}, latency_ms={"p50": 3.0, "p99": 12.0}, agreement={"agreement": 0.9}
    ),
    version(3, "canary", output={"shares": [0.5, 0.5]}, latency_ms=None, agreement={"agreement": None}),
]


def timeline(points: list[Any]) -> dict[str, Any]:
    buckets = [{"start": f"2024-05-01T00:0{i}:00+00:00", "end": f"2024-05-01T00:0{i + 1}:00+00:00"} for i in range(3)]
    return {
        "metric": "accuracy",
        "buckets": buckets,
        "versions": [{"model": "m", "version": 1, "roles": ["primary"], "points": points}],
    }


def test_deployment_charts_draw_what_the_comparison_holds() -> None:
    point = {"value": 0.8, "lower": 0.7, "upper": 0.9, "rows": 40}
    page = {
        "comparison": {"task": "classification", "classes": [0, 1], "versions": COMPARED},
        "timeline": timeline([None, point, {**point, "lower": None, "upper": None}]),
    }
    found = charts.deployment_charts(page)
    assert set(found) == {"outputs", "latency", "agreement", "quality"}
    outputs = found["outputs"]["data"]
    assert outputs["labels"] == ["0", "1"]
    assert [d["label"] for d in outputs["datasets"]] == ["m:1 (champion)", "m:2 (shadow)", "m:3 (canary)"]
    assert [d["data"] for d in outputs["datasets"]] == [[0.7, 0.3], [0.6, 0.4], [0.5, 0.5]]
    p50, p99 = found["latency"]["data"]["datasets"]
    assert p50["data"] == [2.0, 3.0, None] and p99["data"] == [9.0, 12.0, None]
    agreement = found["agreement"]["data"]
    assert agreement["labels"] == ["m:2 (shadow)"] and agreement["datasets"][0]["data"] == [0.9]
    line, interval = found["quality"]["data"]["datasets"]
    assert found["quality"]["data"]["labels"] == ["05-01 00:00", "05-01 00:01", "05-01 00:02"]
    assert line["label"] == "m:1 (primary)" and line["data"] == [None, 0.8, 0.8]
    assert interval["type"] == "bar" and interval["data"] == [None, [0.7, 0.9], None]


def test_regression_outputs_are_shares_of_a_shared_histogram() -> None:
    comparison = {
        "task": "regression",
        "histogram_edges": [0.0, 1.0, 2.5, 4.0],
        "versions": [
            version(1, "primary", output={"histogram": [1, 2, 1]}, latency_ms={"p50": 1.0, "p99": 2.0}),
            version(2, "shadow", output={"histogram": [0, 0, 0]}, latency_ms={"p50": 1.5, "p99": 3.0}),
        ],
    }
    found = charts.deployment_charts({"comparison": comparison, "timeline": None})
    assert set(found) == {"outputs", "latency"}  # no agreement, no labels: left out
    data = found["outputs"]["data"]
    assert data["labels"] == ["0–1", "1–2.5", "2.5–4"]
    assert [d["data"] for d in data["datasets"]] == [[0.25, 0.5, 0.25], [0.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    "page",
    [
        {},
        {"comparison": {"versions": [], "reason": "no recorded predictions in this window"}, "timeline": None},
        {"comparison": {"versions": []}, "timeline": timeline([None, None, None])},  # no bucket with labels
    ],
)
def test_deployment_charts_leave_out_what_has_no_data(page: dict[str, Any]) -> None:
    assert charts.deployment_charts(page) == {}


def history(features: dict[str, list[float | None]], windows: int) -> dict[str, Any]:
    starts = [{"start_time": f"2024-05-01T0{i}:00:00+00:00", "rows": 100} for i in range(windows)]
    return {"windows": starts, "features": features, "threshold_score": 1.0}


def test_drift_charts_show_the_most_drifted_features_and_each_histogram() -> None:
    features: dict[str, list[float | None]] = {f"f{i}": [0.1 * i, None] for i in range(10)}  # latest known: 0.1 i
    features["late"] = [None, 3.0]
    histograms = {
        "histograms": [
            {"name": "f1", "labels": ["a", "b"], "reference": [0.5, 0.5], "current": [0.9, 0.1]},
            {"name": "empty", "labels": [], "reference": [], "current": []},
        ]
    }
    found = charts.drift_charts({"history": history(features, 2), "histograms": histograms})
    assert set(found) == {"history", "hist:f1"}  # the column without bins is left out
    data = found["history"]["data"]
    assert data["labels"] == ["05-01 00:00", "05-01 01:00"]
    *lines, threshold = data["datasets"]
    assert len(lines) == charts.MOST_FEATURES
    assert [d["label"] for d in lines] == ["late", "f9", "f8", "f7", "f6", "f5", "f4", "f3"]
    assert lines[0]["data"] == [None, 3.0] and threshold["label"] == "drift threshold"
    assert threshold["data"] == [1.0, 1.0]
    reference, current = found["hist:f1"]["data"]["datasets"]
    assert found["hist:f1"]["data"]["labels"] == ["a", "b"]
    assert reference["data"] == [0.5, 0.5] and current["data"] == [0.9, 0.1]


@pytest.mark.parametrize(
    "page",
    [
        {},
        {"history": history({}, 2), "histograms": {"histograms": []}},  # windows but no feature
        {"history": history({"f": []}, 0), "histograms": {"reason": "no window stored yet"}},  # no window
    ],
)
def test_drift_charts_leave_out_what_has_no_data(page: dict[str, Any]) -> None:
    assert charts.drift_charts(page) == {}


def test_every_chart_renders_as_strict_json() -> None:
    chart = templates().env.filters["chart"]
    assert json.loads(chart(charts.explanation_charts(EXPLANATION))) == charts.explanation_charts(EXPLANATION)
    with pytest.raises(ValueError, match="JSON"):
        chart({"data": [float("nan")]})  # never NaN in an attribute the browser must parse
