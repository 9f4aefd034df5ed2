from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import confusion_matrix, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from corral.errors import MonitoringError
from corral.monitoring.comparison import BETTER, FORMER_CHAMPION, NO_DIFFERENCE, WORSE, compare
from corral.monitoring.comparison_report import render_comparison_html
from corral.monitoring.feedback import Outcome

START = datetime(2024, 5, 1, tzinfo=UTC)
HAS_LATENCY = "latency_ms" in {f.name for f in dataclasses.fields(Outcome)}


def _outcomes(
    model: str,
    role: str,
    predictions: np.ndarray,
    probabilities: np.ndarray | None,
    labels: np.ndarray,
    *,
    ids: list[str],
    version: int = 1,
    latency: float = 10.0,
) -> list[Outcome]:
    rows = []
    for i, pid in enumerate(ids):
        fields: dict[str, Any] = {
            "prediction_id": pid,
            "timestamp": START + timedelta(seconds=i),
            "deployment": "cancer",
            "model": model,
            "version": version,
            "role": role,
            "output": predictions[i].item(),
            "probabilities": None if probabilities is None else tuple(float(p) for p in probabilities[i]),
            "label": labels[i].item(),
            "labelled": True,
        }
        if HAS_LATENCY:
            fields["latency_ms"] = latency + i % 7
        rows.append(Outcome(**fields))
    return rows


@pytest.fixture(scope="module")
def cancer_models(cancer: pd.DataFrame) -> dict[str, Any]:
    x, y = cancer.drop(columns="target").to_numpy(), cancer["target"].to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.45, random_state=3, stratify=y)
    champion = make_pipeline(StandardScaler(), LogisticRegression(C=1.0)).fit(x_train, y_train)
    challenger = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(x_train, y_train)
    fitted = {"champion": champion, "challenger": challenger}
    data: dict[str, Any] = {"y": y_test, "ids": [f"p{i:04d}" for i in range(y_test.size)]}
    for name, model in fitted.items():
        data[name] = (model.predict(x_test), model.predict_proba(x_test))
    return data


def _classification(data: dict[str, Any], challenger: tuple[np.ndarray, np.ndarray], role: str = "shadow") -> Any:
    y, ids = data["y"], data["ids"]
    rows = _outcomes("lr", "primary", data["champion"][0], data["champion"][1], y, ids=ids)
    rows += _outcomes(
        "<script>alert(1)</script>", role, challenger[0], challenger[1], y, ids=ids, version=2, latency=30.0
    )
    return compare(rows, task="classification", classes=[0, 1], bootstrap=500, seed=4)


def _challenger(result: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = result["versions"][1]
    return entry


def test_agreement_and_confusion_match_a_direct_computation(cancer_models: dict[str, Any]) -> None:
    result = _classification(cancer_models, cancer_models["challenger"])
    champion_pred, challenger_pred = cancer_models["champion"][0], cancer_models["challenger"][0]
    assert result["champion"] == {"model": "lr", "version": 1}
    assert [v["role"] for v in result["versions"]] == ["primary", "shadow"]
    agreement = _challenger(result)["agreement"]
    assert agreement["paired_rows"] == champion_pred.size
    assert agreement["agreement"] == pytest.approx(np.mean(champion_pred == challenger_pred))
    assert agreement["lower"] <= agreement["agreement"] <= agreement["upper"]
    assert agreement["confusion"] == confusion_matrix(champion_pred, challenger_pred, labels=[0, 1]).tolist()
    shares = _challenger(result)["output"]["shares"]
    assert shares == pytest.approx([np.mean(challenger_pred == 0), np.mean(challenger_pred == 1)])
    table = np.array([np.bincount(champion_pred, minlength=2), np.bincount(challenger_pred, minlength=2)])
    drift = _challenger(result)["drift"]
    assert drift["detector"] == "chi2"
    assert drift["p_value"] == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)
    json.dumps(result, allow_nan=False)


def test_mcnemar_p_value_is_the_exact_binomial_test_of_the_discordant_pairs(cancer_models: dict[str, Any]) -> None:
    result = _classification(cancer_models, cancer_models["challenger"])
    y = cancer_models["y"]
    right_a, right_b = cancer_models["champion"][0] == y, cancer_models["challenger"][0] == y
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
    comparison = _challenger(result)["comparison"]
    assert comparison["paired"] is True
    assert comparison["rows"] == y.size
    mcnemar = comparison["tests"][0]
    assert (mcnemar["metric"], mcnemar["test"]) == ("accuracy", "McNemar exact")
    assert (mcnemar["champion_only"], mcnemar["challenger_only"]) == (only_a, only_b)
    assert mcnemar["p_value"] == pytest.approx(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue)
    assert mcnemar["difference"] == pytest.approx(np.mean(right_b) - np.mean(right_a))
    assert mcnemar["lower"] <= mcnemar["difference"] <= mcnemar["upper"]
    assert comparison["verdict"] == mcnemar["verdict"]
    assert comparison["champion"]["accuracy"]["value"] == pytest.approx(np.mean(right_a))


def test_paired_bootstrap_of_the_auc_difference_is_seeded_and_covers_the_difference(
    cancer_models: dict[str, Any],
) -> None:
    y = cancer_models["y"]
    true_difference = roc_auc_score(y, cancer_models["challenger"][1][:, 1]) - roc_auc_score(
        y, cancer_models["champion"][1][:, 1]
    )
    first = _classification(cancer_models, cancer_models["challenger"])
    auc = next(t for t in _challenger(first)["comparison"]["tests"] if t["metric"] == "roc_auc")
    assert auc["test"] == "paired bootstrap"
    assert auc["difference"] == pytest.approx(true_difference)
    assert auc["lower"] < true_difference < auc["upper"]
    assert 0.0 < auc["p_value"] <= 1.0
    assert auc["resamples"] == 500
    again = _classification(cancer_models, cancer_models["challenger"])
    assert _challenger(again)["comparison"]["tests"] == _challenger(first)["comparison"]["tests"]


def test_an_identical_challenger_agrees_fully_and_is_no_different(cancer_models: dict[str, Any]) -> None:
    result = _classification(cancer_models, cancer_models["champion"])
    challenger = _challenger(result)
    assert challenger["agreement"]["agreement"] == 1.0
    assert challenger["agreement"]["disagreements"] == 0
    assert challenger["comparison"]["verdict"] == NO_DIFFERENCE
    for test in challenger["comparison"]["tests"]:
        assert test["p_value"] == 1.0
        assert test["difference"] == 0.0
        assert test["verdict"] == NO_DIFFERENCE
    assert challenger["drift"]["drifted"] is False


def test_a_constant_predictor_is_worse(cancer_models: dict[str, Any]) -> None:
    y = cancer_models["y"]
    majority = int(np.bincount(y).argmax())
    share = float(np.mean(y == majority))
    constant = (np.full(y.size, majority), np.tile([1.0 - share, share], (y.size, 1)))
    challenger = _challenger(_classification(cancer_models, constant))
    assert challenger["comparison"]["verdict"] == WORSE
    assert {t["metric"]: t["verdict"] for t in challenger["comparison"]["tests"]} == {
        "accuracy": WORSE,
        "roc_auc": WORSE,
    }
    assert challenger["drift"]["drifted"] is True
    assert [row[1 - majority] for row in challenger["agreement"]["confusion"]] == [0, 0]  # never predicted


def test_the_champion_measured_as_challenger_is_better(cancer_models: dict[str, Any]) -> None:
    y, ids = cancer_models["y"], cancer_models["ids"]
    majority = int(np.bincount(y).argmax())
    rows = _outcomes("const", "primary", np.full(y.size, majority), None, y, ids=ids)
    rows += _outcomes("lr", "shadow", cancer_models["champion"][0], cancer_models["champion"][1], y, ids=ids, version=3)
    result = compare(rows, task="classification", classes=[0, 1], bootstrap=200)
    comparison = _challenger(result)["comparison"]
    assert comparison["verdict"] == BETTER
    assert [t["metric"] for t in comparison["tests"]] == ["accuracy"]  # no AUC without the champion's probabilities


def test_a_split_version_is_unpaired_and_gets_a_two_proportion_test(cancer_models: dict[str, Any]) -> None:
    y, ids = cancer_models["y"], cancer_models["ids"]
    half = y.size // 2
    pred_a, proba_a = cancer_models["champion"]
    pred_b, proba_b = cancer_models["challenger"]
    rows = _outcomes("lr", "primary", pred_a[:half], proba_a[:half], y[:half], ids=ids[:half])
    rows += _outcomes("hgb", "split", pred_b[half:], proba_b[half:], y[half:], ids=ids[half:], version=2)
    result = compare(rows, task="classification", classes=[0, 1], bootstrap=200)
    challenger = _challenger(result)
    assert challenger["agreement"]["paired_rows"] == 0
    assert "agreement" not in challenger["agreement"]
    comparison = challenger["comparison"]
    assert comparison["paired"] is False
    assert (comparison["champion_rows"], comparison["rows"]) == (half, y.size - half)
    test = comparison["tests"][0]
    assert test["test"] == "two-proportion z-test"
    hits = np.array([np.sum(pred_a[:half] == y[:half]), np.sum(pred_b[half:] == y[half:])])
    sizes = np.array([half, y.size - half])
    pooled = hits.sum() / sizes.sum()
    z = (hits[1] / sizes[1] - hits[0] / sizes[0]) / math.sqrt(pooled * (1 - pooled) * (1 / sizes[0] + 1 / sizes[1]))
    assert test["p_value"] == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert [t["test"] for t in comparison["tests"]] == ["two-proportion z-test", "unpaired bootstrap"]


def test_latency_errors_and_former_champions(cancer_models: dict[str, Any]) -> None:
    y, ids = cancer_models["y"], cancer_models["ids"]
    pred, proba = cancer_models["champion"]
    rows = _outcomes("lr", "primary", pred[:50], proba[:50], y[:50], ids=ids[:50], version=1)
    rows += _outcomes("lr", "primary", pred[50:], proba[50:], y[50:], ids=ids[50:], version=2)
    result = compare(
        rows, task="classification", classes=[0, 1], errors={("lr", 2): (400, 4), ("lr", 1): (0, 0)}, bootstrap=0
    )
    assert result["champion"] == {"model": "lr", "version": 2}
    former = _challenger(result)
    assert former["role"] == FORMER_CHAMPION
    # the deployment's champion now is the one compared with, even when a former one answered more of the window
    now = compare(rows, task="classification", classes=[0, 1], bootstrap=0, current_champion=("lr", 1))
    assert now["champion"] == {"model": "lr", "version": 1}
    assert [(v["version"], v["role"]) for v in now["versions"]] == [(1, "primary"), (2, FORMER_CHAMPION)]
    absent = compare(rows, task="classification", classes=[0, 1], bootstrap=0, current_champion=("lr", 9))
    assert absent["champion"] == {"model": "lr", "version": 2}  # no rows of its own yet: the most primary rows
    assert former["errors"]["rate"] is None
    errors = result["versions"][0]["errors"]
    assert errors["rate"] == 0.01
    assert errors["lower"] < 0.01 < errors["upper"]
    latency = result["versions"][0]["latency_ms"]
    if HAS_LATENCY:
        values = [10.0 + i % 7 for i in range(y.size - 50)]
        assert latency == {
            "p50": pytest.approx(np.percentile(values, 50)),
            "p99": pytest.approx(np.percentile(values, 99)),
        }
    else:
        assert latency == {"p50": None, "p99": None}
    assert former["comparison"]["tests"][1]["p_value"] is None  # bootstrap=0: no bootstrap test


@pytest.fixture(scope="module")
def diabetes_models(diabetes: pd.DataFrame) -> dict[str, Any]:
    x, y = diabetes.drop(columns="target").to_numpy(), diabetes["target"].to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.4, random_state=1)
    return {
        "y": y_test,
        "ids": [f"r{i:04d}" for i in range(y_test.size)],
        "champion": LinearRegression().fit(x_train, y_train).predict(x_test),
        "challenger": Ridge(alpha=1.0).fit(x_train, y_train).predict(x_test),
    }


def test_regression_agreement_and_paired_rmse_bootstrap(diabetes_models: dict[str, Any]) -> None:
    y, ids = diabetes_models["y"], diabetes_models["ids"]
    a, b = diabetes_models["champion"], diabetes_models["challenger"]
    rows = _outcomes("ols", "primary", a, None, y, ids=ids) + _outcomes("ridge", "shadow", b, None, y, ids=ids)
    result = compare(rows, task="regression", classes=None, bootstrap=500, seed=1)
    challenger = _challenger(result)
    agreement = challenger["agreement"]
    assert agreement["mean_absolute_difference"] == pytest.approx(np.mean(np.abs(b - a)))
    assert agreement["correlation"] == pytest.approx(np.corrcoef(a, b)[0, 1])
    tests = {t["metric"]: t for t in challenger["comparison"]["tests"]}
    rmse_a, rmse_b = math.sqrt(np.mean((y - a) ** 2)), math.sqrt(np.mean((y - b) ** 2))
    assert tests["rmse"]["difference"] == pytest.approx(rmse_b - rmse_a)
    assert tests["rmse"]["lower"] < tests["rmse"]["difference"] < tests["rmse"]["upper"]
    assert tests["mae"]["difference"] == pytest.approx(np.mean(np.abs(y - b)) - np.mean(np.abs(y - a)))
    assert challenger["comparison"]["verdict"] == tests["rmse"]["verdict"]
    assert challenger["drift"]["detector"] == "ks"
    assert challenger["drift"]["p_value"] == pytest.approx(stats.ks_2samp(a, b).pvalue)
    edges = np.asarray(result["histogram_edges"])
    assert edges.size == 21
    assert sum(challenger["output"]["histogram"]) == y.size
    assert challenger["output"]["quantiles"]["0.5"] == pytest.approx(np.median(b))
    mean_only = _outcomes("mean", "shadow", np.full(y.size, y.mean()), None, y, ids=ids, version=9)
    worse = compare(rows[: y.size] + mean_only, task="regression", bootstrap=300)
    assert _challenger(worse)["comparison"]["verdict"] == WORSE
    assert _challenger(worse)["agreement"]["correlation"] is None
    json.dumps(worse, allow_nan=False)


def test_bad_input_is_refused_by_name(cancer_models: dict[str, Any]) -> None:
    y, ids = cancer_models["y"], cancer_models["ids"]
    rows = _outcomes("lr", "primary", cancer_models["champion"][0], cancer_models["champion"][1], y, ids=ids)
    with pytest.raises(MonitoringError, match="task must be one of"):
        compare(rows, task="ranking", classes=[0, 1])
    with pytest.raises(MonitoringError, match="needs classes"):
        compare(rows, task="classification", classes=None)
    with pytest.raises(MonitoringError, match="no row has the role 'primary'"):
        compare([dataclasses.replace(o, role="shadow") for o in rows], task="classification", classes=[0, 1])
    with pytest.raises(MonitoringError, match="not among the classes"):
        compare(rows, task="classification", classes=["a", "b"])
    with pytest.raises(MonitoringError, match="no outcomes"):
        compare([], task="regression")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs


def test_html_report_is_self_contained_and_escaped(
    cancer_models: dict[str, Any], diabetes_models: dict[str, Any]
) -> None:
    classification = _classification(cancer_models, cancer_models["challenger"])
    y, ids = diabetes_models["y"], diabetes_models["ids"]
    rows = _outcomes("ols", "primary", diabetes_models["champion"], None, y, ids=ids)
    rows += _outcomes("ridge", "shadow", diabetes_models["challenger"], None, y, ids=ids)
    regression = compare(rows, task="regression", bootstrap=100)
    for result, shape in ((classification, "rect"), (regression, "polyline")):
        page = render_comparison_html(result, title="A <b>comparison</b>")
        parser = _Tags()
        parser.feed(page)
        parser.close()
        assert "script" not in parser.tags
        assert shape in parser.tags and "svg" in parser.tags
        assert not [v for k, v in parser.attributes if k in {"src", "href"}]
        assert "http://" not in page and "https://" not in page and "url(" not in page
        assert "<b>comparison</b>" not in page and "A &lt;b&gt;comparison&lt;/b&gt;" in page
    page = render_comparison_html(classification, "x")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;/2" in page
    assert "McNemar exact" in page and "paired bootstrap" in page
