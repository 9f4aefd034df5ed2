"""Explanations: the explainer each kind of model gets, and attributions that add up to its output."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from corral.audit.explain import (
    EXACT_TOLERANCE,
    SAMPLED_TOLERANCE,
    Explainer,
    ExplainPolicy,
    check_sums,
    explain_recorded,
    native_model,
    profile_sample,
    top_contributions,
)
from corral.audit.records import PredictionRecord
from corral.errors import PredictionNotFoundError, SchemaError
from corral.registry.loaded import LoadedModel
from corral.registry.service import Registry
from corral.storage import open_database

FEATURES = ["mean radius", "mean texture", "mean smoothness", "mean concavity", "worst area", "worst symmetry"]
T = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)


def register(registry: Registry, model: Any, data: pd.DataFrame, name: str = "m") -> LoadedModel:
    version = registry.log_model(
        model.fit(data.drop(columns="target"), data["target"]), name=name, training_data=data, target="target"
    )
    return registry.load(version.ref)


def assert_adds_up(loaded: LoadedModel, explainer: Explainer, rows: pd.DataFrame) -> None:
    """Base value plus attributions give the version's own answer, for every row and output."""
    prediction = loaded.runtime.predict(rows)
    for i, attribution in enumerate(explainer.explain(rows)):
        assert set(attribution.contributions) == set(rows.columns)
        probabilities = None if prediction.probabilities is None else prediction.probabilities[i]
        checks = check_sums(
            attribution, probabilities=probabilities, output=prediction.values[i], tolerance=explainer.tolerance
        )
        assert checks and all(c.ok for c in checks), checks


@pytest.fixture
def cancer6(cancer: pd.DataFrame) -> pd.DataFrame:
    return cancer[[*FEATURES, "target"]]


def standardized(data: pd.DataFrame) -> pd.DataFrame:
    """Features as z-scores, so logistic regression converges in a few iterations."""
    features = data.drop(columns="target")
    return ((features - features.mean()) / features.std()).assign(target=data["target"])


def test_random_forest_probabilities_are_explained_exactly(registry: Registry, cancer6: pd.DataFrame) -> None:
    loaded = register(registry, RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0), cancer6)
    sample = cancer6[FEATURES]
    explainer = Explainer.for_loaded(loaded, sample)
    assert explainer.method.startswith("tree-") and explainer.method.endswith(":probability")
    assert explainer.outputs == ("proba_0", "proba_1") and explainer.tolerance == EXACT_TOLERANCE
    assert_adds_up(loaded, explainer, sample.iloc[100:110])
    [one] = explainer.explain(sample.iloc[[3]])
    assert np.allclose(np.add(one.contributions["mean radius"][0], one.contributions["mean radius"][1]), 0.0)


def test_hist_gradient_boosting_is_explained_in_log_odds(registry: Registry, cancer6: pd.DataFrame) -> None:
    loaded = register(registry, HistGradientBoostingClassifier(max_iter=30, random_state=0), cancer6)
    explainer = Explainer.for_loaded(loaded, cancer6[FEATURES])
    assert explainer.method == "tree-path-dependent:log-odds" and explainer.outputs == ("logit_0", "logit_1")
    rows = cancer6[FEATURES].iloc[:20]
    margins = native_model(loaded.runtime).decision_function(rows)
    for attribution, margin in zip(explainer.explain(rows), margins, strict=True):
        assert abs(attribution.totals()[1] - margin) <= 1e-6 and abs(attribution.totals()[0] + margin) <= 1e-6
    assert_adds_up(loaded, explainer, rows)


def test_logistic_regression_is_explained_in_log_odds_by_the_linear_explainer(
    registry: Registry, cancer6: pd.DataFrame, wine: pd.DataFrame
) -> None:
    cancer6, wine = standardized(cancer6), standardized(wine)
    loaded = register(registry, make_lr(), cancer6)
    explainer = Explainer.for_loaded(loaded, cancer6[FEATURES])
    assert explainer.method == "linear:log-odds"
    rows = cancer6[FEATURES].iloc[:15]
    margins = native_model(loaded.runtime).decision_function(rows)
    assert np.allclose([a.totals()[1] for a in explainer.explain(rows)], margins, rtol=0, atol=1e-9)
    assert_adds_up(loaded, explainer, rows)
    three = register(registry, make_lr(), wine, name="wine")
    explainer = Explainer.for_loaded(three, wine.drop(columns="target"))
    assert explainer.method == "linear:margin" and explainer.outputs == ("margin_0", "margin_1", "margin_2")
    assert_adds_up(three, explainer, wine.drop(columns="target").iloc[::20])


def make_lr() -> Any:
    return LogisticRegression(max_iter=1000)


def test_xgboost_and_lightgbm_classifiers_explain_probabilities(registry: Registry, cancer6: pd.DataFrame) -> None:
    rows = cancer6[FEATURES].iloc[200:220]
    for name, model in (
        ("xgb", xgboost.XGBClassifier(n_estimators=20, max_depth=3)),
        ("lgbm", lightgbm.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1)),
    ):
        loaded = register(registry, model, cancer6, name=name)
        explainer = Explainer.for_loaded(loaded, cancer6[FEATURES])
        assert explainer.method == "tree-interventional:probability", name
        assert explainer.outputs == ("proba_0", "proba_1")
        assert_adds_up(loaded, explainer, rows)
        totals = np.array([a.totals() for a in explainer.explain(rows)])
        assert np.abs(totals - loaded.runtime.predict(rows).probabilities).max() <= 1e-6


def test_multiclass_boosting_is_explained_in_softmax_margins(registry: Registry, wine: pd.DataFrame) -> None:
    loaded = register(registry, xgboost.XGBClassifier(n_estimators=10, max_depth=2, n_jobs=1), wine)
    explainer = Explainer.for_loaded(loaded, wine.drop(columns="target"))
    assert explainer.method == "tree-path-dependent:margin"
    rows = wine.drop(columns="target").iloc[::25]
    margins = native_model(loaded.runtime).predict(rows, output_margin=True)
    totals = np.array([a.totals() for a in explainer.explain(rows)])
    assert np.abs(totals - margins).max() <= 1e-5  # XGBoost adds its margins up in float32
    assert_adds_up(loaded, explainer, rows)


def test_a_regressor_explains_its_prediction(registry: Registry, diabetes: pd.DataFrame) -> None:
    loaded = register(registry, RandomForestRegressor(n_estimators=10, max_depth=4, random_state=0), diabetes)
    explainer = Explainer.for_loaded(loaded, diabetes.drop(columns="target"))
    assert explainer.method.endswith(":raw") and explainer.outputs == ("prediction",)
    assert_adds_up(loaded, explainer, diabetes.drop(columns="target").iloc[:10])


def test_a_pipeline_gets_the_model_agnostic_explainer_per_input_column(
    registry: Registry, cancer6: pd.DataFrame
) -> None:
    data = cancer6.assign(size=np.where(cancer6["mean radius"] > 14, "large", "small"))
    columns = [*FEATURES, "size"]
    prep = ColumnTransformer([("num", StandardScaler(), FEATURES), ("cat", OneHotEncoder(), ["size"])])
    loaded = register(registry, make_pipeline(prep, KNeighborsClassifier(n_neighbors=15)), data[[*columns, "target"]])
    explainer = Explainer.for_loaded(loaded, data[columns], evaluations=300)
    assert explainer.method == "kernel:probability" and explainer.tolerance == SAMPLED_TOLERANCE
    assert explainer.columns == columns
    rows = data[columns].iloc[[0, 50, 300]]
    assert_adds_up(loaded, explainer, rows)
    again = explainer.explain(rows)  # seeded: the same attributions every time
    assert [a.contributions for a in again] == [a.contributions for a in explainer.explain(rows)]
    [top] = [top_contributions(explainer.explain(rows.iloc[[0]])[0], top=3)]
    assert len(top) == 3 and abs(top[0][1]) >= abs(top[1][1]) >= abs(top[2][1])


def test_the_profile_gives_a_background_when_no_rows_are_at_hand(registry: Registry, cancer6: pd.DataFrame) -> None:
    cancer6 = standardized(cancer6)
    loaded = register(registry, make_lr(), cancer6)
    profile = registry.get_profile("m", 1)
    assert profile is not None
    sample = profile_sample(profile, FEATURES, rows=40)
    assert list(sample.columns) == FEATURES and len(sample) == 40
    assert (sample["mean radius"] >= cancer6["mean radius"].min()).all()
    assert (sample["mean radius"] <= cancer6["mean radius"].max()).all()
    assert_adds_up(loaded, Explainer.for_loaded(loaded, sample), cancer6[FEATURES].iloc[:5])


def test_explaining_needs_background_rows(registry: Registry, cancer6: pd.DataFrame) -> None:
    cancer6 = standardized(cancer6)
    loaded = register(registry, make_lr(), cancer6)
    with pytest.raises(SchemaError, match="background rows"):
        Explainer.for_model(loaded.runtime, cancer6[FEATURES].iloc[:0], classes=(0, 1))


def test_a_recorded_prediction_is_explained_once_and_stored(
    registry: Registry, cancer6: pd.DataFrame, tmp_path: Path
) -> None:
    loaded = register(registry, HistGradientBoostingClassifier(max_iter=20, random_state=0), cancer6)
    store = open_database(f"sqlite:///{tmp_path}/c.db").audit
    rows = cancer6[FEATURES].iloc[:30]
    prediction = loaded.infer(rows)
    records = [
        PredictionRecord(
            f"p{i}", T, "d", "m", 1, dict(rows.iloc[i]), int(prediction.values[i]), tuple(prediction.probabilities[i])
        )
        for i in range(len(rows))
    ]
    store.append(records)
    loads: list[tuple[str, int]] = []

    def load(model: str, version: int) -> LoadedModel:
        loads.append((model, version))
        return registry.load(f"{model}/{version}")

    explanation, computed = explain_recorded(store, load, "p7")
    assert computed and loads == [("m", 1)] and explanation.prediction_id == "p7"
    record = store.get("p7")
    checks = check_sums(explanation, probabilities=record.probabilities, output=record.output)
    assert all(c.ok for c in checks) and {c.link for c in checks} == {"logistic"}
    again, computed = explain_recorded(store, load, "p7")
    assert not computed and loads == [("m", 1)] and again == explanation
    with pytest.raises(PredictionNotFoundError):
        explain_recorded(store, load, "nope")


def test_policy_parsing() -> None:
    assert ExplainPolicy.parse("always").should_explain("x")
    on_demand = ExplainPolicy.parse("on_demand")
    assert not on_demand.should_explain("x") and on_demand.should_explain("x", requested=True)
    assert ExplainPolicy.parse("sampled:10%").rate == pytest.approx(0.1)
    assert str(ExplainPolicy.parse(" Sampled:2.5% ")) == "sampled:2.5%"
    assert ExplainPolicy.parse("sampled:100%").should_explain("anything")
    for bad in ("sometimes", "sampled:0%", "sampled:150%", "sampled:10", "sampled:x%", "", "sampled:"):
        with pytest.raises(SchemaError, match="always, on_demand, sampled:N%"):
            ExplainPolicy.parse(bad)


def test_sampled_policy_explains_about_its_share_deterministically() -> None:
    policy = ExplainPolicy.parse("sampled:10%")
    ids = [f"0190{i:028x}" for i in range(10_000)]
    chosen = [i for i in ids if policy.should_explain(i)]
    assert 900 <= len(chosen) <= 1100
    assert chosen == [i for i in ids if ExplainPolicy.parse("sampled:10%").should_explain(i)]
