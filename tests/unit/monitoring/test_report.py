from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from corral.core.schema import Signature
from corral.monitoring.detectors import DriftResult, compare_frames
from corral.monitoring.report import (
    feature_order,
    histogram_bars,
    render_html,
    report_data,
    severity,
    sort_results,
    summary_line,
)

SHIFTED = ["mean radius", "worst area", "mean texture"]


def _halves(cancer: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = cancer.drop(columns="target").copy()
    rng = np.random.default_rng(7)
    frame["tissue"] = rng.choice(["a", "b", "c"], size=len(frame), p=[0.6, 0.3, 0.1])
    order = rng.permutation(len(frame))
    half = len(frame) // 2
    return frame.iloc[order[:half]].reset_index(drop=True), frame.iloc[order[half:]].reset_index(drop=True)


def _shift(current: pd.DataFrame) -> pd.DataFrame:
    shifted = current.copy()
    shifted["mean radius"] *= 1.3
    shifted["worst area"] += 250.0
    shifted["mean texture"] += 4.0
    rng = np.random.default_rng(1)
    shifted["tissue"] = rng.choice(["a", "b", "c"], size=len(shifted), p=[0.2, 0.3, 0.5])
    return shifted


@pytest.fixture(scope="module")
def frames(cancer: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, Signature]:
    reference, current = _halves(cancer)
    return reference, current, Signature.infer(reference)


def test_random_halves_mostly_do_not_drift(frames: tuple[pd.DataFrame, pd.DataFrame, Signature]) -> None:
    reference, current, signature = frames
    results = compare_frames(reference, current, signature)
    data = report_data(results, signature)
    assert data["summary"]["features"] == 31
    assert data["summary"]["drifted"] <= 2
    assert summary_line(results) == f"{data['summary']['drifted']} of 31 features drifted"


def test_shifted_features_drift_and_sort_first(frames: tuple[pd.DataFrame, pd.DataFrame, Signature]) -> None:
    reference, current, signature = frames
    results = compare_frames(reference, _shift(current), signature, ["ks", "chi2", "psi"])
    order = feature_order(results)
    assert set(order[:4]) == {*SHIFTED, "tissue"}
    ranked = sort_results(results)
    assert [r.drifted for r in ranked[:8]] == [True] * 8
    data = report_data(results, signature)
    assert set(data["summary"]["drifted_features"]) >= {*SHIFTED, "tissue"}
    tissue = [r for r in data["results"] if r["feature"] == "tissue"]
    assert {r["detector"] for r in tissue} == {"chi2", "psi"} and all(r["kind"] == "categorical" for r in tissue)


def test_severity_is_one_at_the_threshold() -> None:
    test = DriftResult("ks", 0.3, 0.05, 0.05, False, "x")
    distance = DriftResult("psi", 0.4, None, 0.2, True, "x")
    assert severity(test) == pytest.approx(1.0) and severity(distance) == pytest.approx(2.0)
    assert severity(DriftResult("ks", 0.0, 1.0, 0.05, False, "x")) == 0.0
    assert severity(DriftResult("ks", 1.0, 0.0, 0.05, True, "x")) > 100


def test_histogram_bars(frames: tuple[pd.DataFrame, pd.DataFrame, Signature]) -> None:
    reference, current, signature = frames
    kinds = {s.name: s.kind for s in signature.inputs}
    labels, ref, cur = histogram_bars(reference["mean radius"], current["mean radius"], kinds["mean radius"])
    assert len(labels) == 10 and ref.sum() == pytest.approx(1.0) and cur.sum() == pytest.approx(1.0)
    assert np.allclose(ref, 0.1, atol=0.02)  # reference quantile bins
    many = pd.Series([f"c{i % 15}" for i in range(300)])
    labels, ref, cur = histogram_bars(many, many, kinds["tissue"])
    assert len(labels) == 11 and labels[-1] == "(other)" and ref.sum() == pytest.approx(1.0)


def test_html_is_self_contained(frames: tuple[pd.DataFrame, pd.DataFrame, Signature]) -> None:
    reference, current, signature = frames
    shifted = _shift(current)
    results = compare_frames(reference, shifted, signature)
    page = render_html(results, reference, shifted, signature)
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<style>" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "<link" not in page and "@import" not in page and "url(" not in page
    for name in signature.columns:
        assert name in page
    assert page.count("<svg") == len(signature.columns)
    sections = re.findall(r'<section class="feature[^"]*"><div><h2>(.*?) <span', page)
    assert set(sections[:4]) == {*SHIFTED, "tissue"}
    assert "features drifted" in page


def test_html_escapes_user_strings() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"<b>x</b>": rng.normal(size=200), "kind": rng.choice(["<i>", "a&b"], size=200)})
    current = pd.DataFrame({"<b>x</b>": rng.normal(2.0, size=200), "kind": rng.choice(["<i>", "a&b"], size=200)})
    signature = Signature.infer(reference)
    results = compare_frames(reference, current, signature, ["ks", "chi2", "domain_classifier"])
    page = render_html(results, reference, current, signature, title="<script>alert(1)</script>")
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "<i>" not in page and "a&amp;b" in page
    assert "(all features)" in page  # the multivariate result
