"""``corral demo``: the main job end to end on the embedded default store.

Trains two real classifiers on scikit-learn's bundled breast-cancer data,
registers both with lineage and a reference profile, makes the better one
``champion`` and the other ``challenger``, loads the champion back (hash
verified) and scores held-out rows. Then the monitoring part (:mod:`corral.cli.demo_monitoring`)
deploys a credit model and shows drift found, accuracy estimated and realized, and an alert delivered.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from corral.cli.context import services
from corral.cli.output import console, table

MODEL = "breast-cancer"


def demo(
    name: Annotated[str, typer.Option(help="Model name to register under.")] = MODEL,
    monitoring: Annotated[
        bool, typer.Option(help="Also run the monitoring part: drifting car-loan traffic, feedback, an alert.")
    ] = True,
) -> None:
    """Train two models, register them with lineage, promote the better one, load it back; then watch a
    deployed credit model drift and raise an alert."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    svc = services()
    registry = svc.registry
    frame = load_breast_cancer(as_frame=True).frame
    train, test = train_test_split(frame, test_size=0.25, random_state=7, stratify=frame["target"])
    x_train, y_train = train.drop(columns="target"), train["target"]
    x_test, y_test = test.drop(columns="target"), test["target"]

    candidates = {
        "logistic": (make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000)), {"C": 0.5}),
        "gbm": (
            HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, random_state=7),
            {"max_iter": 150, "learning_rate": 0.1},
        ),
    }
    console.print(f"[bold]corral demo[/] · store {svc.settings.resolved_database_url()}")
    registered = []
    for label, (model, params) in candidates.items():
        model.fit(x_train, y_train)
        proba = model.predict_proba(x_test)[:, 1]
        metrics = {
            "roc_auc": float(roc_auc_score(y_test, proba)),
            "accuracy": float(accuracy_score(y_test, model.predict(x_test))),
        }
        version = registry.log_model(
            model,
            name=name,
            training_data=train,
            target="target",
            params={"algorithm": label, **params},
            metrics=metrics,
            source="sklearn.datasets.load_breast_cancer (75% stratified split, seed 7)",
            description=f"{label} on the Wisconsin breast-cancer data",
            tags={"demo": "true", "algorithm": label},
        )
        registered.append((version, metrics))
        data = version.lineage.data.sha256[:12] if version.lineage.data else "-"
        console.print(
            f"  registered {version.ref} ({label}): roc_auc={metrics['roc_auc']:.4f} "
            f"artifact {version.artifact_sha256[:12]} data {data}"
        )

    registered.sort(key=lambda item: item[1]["roc_auc"], reverse=True)
    best, runner_up = registered[0][0], registered[1][0]
    registry.promote(name, best.version, reason="demo: best held-out ROC AUC")
    registry.promote(name, runner_up.version, alias="challenger", reason="demo: runner-up")

    champion = registry.load(f"{name}@champion")
    scored = champion.predict_frame(x_test.head(5))
    table(
        f"{name}@champion = version {best.version}: 5 held-out rows",
        ["row", "prediction", "P(benign)", "truth"],
        [
            (i, p, f"{q:.3f}", t)
            for i, p, q, t in zip(scored.index, scored["prediction"], scored["proba_1"], y_test.head(5), strict=True)
        ],
    )
    if name not in {d.name for d in svc.deployments.list()}:
        svc.deployments.create(name, model=name, description="demo: follows the champion")
        console.print(f"  deployment {name} → {name}@champion (served by `corral serve`)")
    if monitoring:
        from corral.cli.demo_monitoring import monitoring_demo

        monitoring_demo(svc)
    corral, python = _commands()
    token = _shown(svc.settings.resolved_token_file())  # written by the first `corral serve` (mode 0600)
    row = json.dumps({"instances": [x_test.iloc[0].round(4).to_dict()]})
    console.print(
        "\n[bold]Next, look at:[/]\n"
        f"  {corral} models show {name}          versions, aliases, metrics\n"
        f"  {corral} lineage {name} champion     data fingerprint, code, params, libraries, signature\n"
        f"  {corral} models history {name}       who moved which alias, when and why\n"
        f"  {corral} models rollback {name}      champion back to its previous version\n"
        f"  {python} -c \"import corral; print(corral.load_model('{name}@champion'))\"\n"
        "\n[bold]Serve it[/] (Open Inference Protocol V2, JSON, metrics on one port):\n"
        f"  {corral} serve --port 8000       then sign in at http://127.0.0.1:8000/ui with the token in {token}\n"
        f'  curl -s localhost:8000/v1/deployments/{name}/predict -H "Authorization: Bearer $(cat {token})" '
        f"-d '{row}'\n"
        f"  {corral} models promote {name} {runner_up.version}   swaps the served version, no request lost\n"
        "\n[bold]Monitoring[/] (what the car-loan traffic above left behind):\n"
        f"  {corral} monitor car-loan           features sorted by drift, data quality, accuracy\n"
        f"  {corral} alerts list                alerts, with `alerts show ID` for their notifications\n"
        f"  {corral} drift REFERENCE CURRENT    two data files compared offline, with an HTML report\n"
        f"  {corral} compare car-loan           champion and shadow on the same requests\n"
        f"  {corral} runs list                  the retraining runs; `runs logs ID` for one\n"
        f"  {corral} models history car-loan    every rollout stage, with the pipeline run as who\n"
        f"  {corral} audit verify               the prediction log's hash chain and signed checkpoints",
        soft_wrap=True,
    )


def _commands() -> tuple[str, str]:
    """How to call corral and this Python from here: bare names when on PATH, else the venv's paths."""
    here = Path(sys.executable).parent
    if shutil.which("corral") == str(here / "corral"):
        return "corral", "python"
    try:
        return str((here / "corral").relative_to(Path.cwd())), str(Path(sys.executable).relative_to(Path.cwd()))
    except ValueError:
        return str(here / "corral"), sys.executable


def _shown(path: Path) -> str:
    """``path`` as the reader would type it: relative to here when it is below here."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
