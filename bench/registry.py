"""Registry benchmark: corral's registry against MLflow's, side by side in one process.

For the same fitted models it times, in a fresh temporary directory each time:

* opening an empty store (corral: ``build_services``, which migrates its SQLite
  schema; MLflow: the first call on a new ``sqlite:///`` URI, which creates its tables);
* registration (corral ``Registry.log_model``; MLflow ``start_run`` + ``log_params`` +
  ``log_metrics`` + ``mlflow.sklearn.log_model(registered_model_name=...)``, and for the
  HistGradientBoosting model once more with ``mlflow.data`` + ``log_input`` + an input example, and
  each model once more with ``pip_requirements=`` given, which skips MLflow's requirement inference);
* loading version 1 (corral ``Registry.load("name/1")``, hash-verified; MLflow
  ``mlflow.sklearn.load_model("models:/name/1")``) and the first prediction on 100 rows;
* bytes on disk: the artifacts and the database.

Medians over ``--repeats`` (7; ``--quick``: 3) and the corral/MLflow ratio of each are printed as a
markdown table on stdout and written, with every sample, to ``bench/results/registry.json``.
Progress goes to stderr. Run from the repository root::

    .venv/bin/python bench/registry.py [--repeats N] [--quick] [--profile] [--threads N] [--corral-only]

``--profile`` adds a cProfile of one warm registration on each side; ``--threads`` caps OpenMP/BLAS
threads in this process (HistGradientBoosting predicts with OpenMP, which suffers on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import logging
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # before anything imports mlflow

import numpy as np
import pandas as pd
from benchkit import corral_commit, log, machine
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from corral.app import build_services
from corral.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "registry.json"
PREDICT_ROWS = 100
# MLflow 3 saves scikit-learn models with skops and refuses types skops does not trust by default;
# HistGradientBoosting's tree predictor is one. corral records the types of the object it was handed.
HGB_SKOPS_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
# what corral records for a scikit-learn model, handed to MLflow for the run without requirement inference
PINNED_REQUIREMENTS = [
    f"{dist}=={metadata.version(dist)}" for dist in ("scikit-learn", "skops", "numpy", "scipy", "pandas")
]


# -- the models -----------------------------------------------------------------


@dataclass
class Case:
    """One fitted model and the training frame (target column ``y`` included) it was fitted on."""

    key: str
    label: str
    model: Any
    train: pd.DataFrame
    params: dict[str, Any]
    metrics: dict[str, float]
    skops_trusted_types: list[str] = field(default_factory=list)
    with_dataset_variant: bool = False

    @property
    def features(self) -> pd.DataFrame:
        return self.train.drop(columns=["y"])


def _scalar_params(model: Any) -> dict[str, Any]:
    params = model.get_params(deep=True).items()
    return {k: v for k, v in params if v is None or isinstance(v, str | int | float | bool)}


def _case(key: str, label: str, model: Any, x: pd.DataFrame, y: pd.Series, **extra: Any) -> Case:
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    model.fit(x_train, y_train)
    metrics = {
        "accuracy": float(accuracy_score(y_test, model.predict(x_test))),
        "roc_auc": float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])),
    }
    train = x_train.assign(y=y_train.to_numpy()).reset_index(drop=True)
    return Case(key, label, model, train, _scalar_params(model), metrics, **extra)


def build_cases(rows: int) -> list[Case]:
    x, y = make_classification(n_samples=rows, n_features=20, n_informative=10, random_state=0)
    synthetic = pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(20)])
    cancer = load_breast_cancer(as_frame=True)
    return [
        _case(
            "hgb",
            f"HistGradientBoostingClassifier, {rows:,} rows x 20 features",
            HistGradientBoostingClassifier(random_state=0),
            synthetic,
            pd.Series(y, name="y"),
            skops_trusted_types=HGB_SKOPS_TRUSTED,
            with_dataset_variant=True,
        ),
        _case(
            "logreg",
            "StandardScaler + LogisticRegression pipeline, breast cancer (569 rows x 30)",
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
            cancer.data,
            cancer.target,
        ),
    ]


# -- measuring -------------------------------------------------------------------


@contextlib.contextmanager
def fresh_dir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as tmp:
        yield Path(tmp)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def files_bytes(folder: Path, prefix: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(f"{prefix}*") if p.is_file())


def _dispose(services: Any) -> None:
    engine = getattr(services.registry.store, "engine", None)
    if engine is not None:
        engine.dispose()


def corral_settings(home: Path) -> Settings:
    # every location spelled out, so CORRAL_* variables in the caller's environment cannot redirect the run
    return Settings(
        home=home, database_url=f"sqlite:///{home / 'corral.db'}", artifacts_url=str(home / "artifacts"), user="bench"
    )


def corral_open() -> float:
    with fresh_dir("corral-open") as home:
        services, seconds = timed(lambda: build_services(corral_settings(home)))
        _dispose(services)
    return seconds


def corral_once(case: Case) -> dict[str, float]:
    with fresh_dir("corral") as home:
        services = build_services(corral_settings(home))
        registry = services.registry
        sample = case.features.iloc[:PREDICT_ROWS]
        gc.collect()
        version, register = timed(
            lambda: registry.log_model(
                case.model,
                name=case.key,
                training_data=case.train,
                target="y",
                params=case.params,
                metrics=case.metrics,
            )
        )
        loaded, load = timed(lambda: registry.load(f"{case.key}/{version.version}"))
        predicted, predict = timed(lambda: loaded.predict(sample))
        if not np.array_equal(np.asarray(predicted), case.model.predict(sample)):
            raise AssertionError(f"corral's loaded {case.key} predicts differently from the original")
        out = {
            "register_s": register,
            "load_s": load,
            "first_predict_s": predict,
            "load_and_predict_s": load + predict,
            "artifact_bytes": float(tree_bytes(home / "artifacts")),
            "database_bytes": float(files_bytes(home, "corral.db")),
        }
        close = getattr(loaded, "close", None)  # older LoadedModel kept its unpacked folder until closed
        if close is not None:
            close()
        _dispose(services)
    return out


class MlflowSide:
    """MLflow's tracking + model registry on SQLite with a local artifact root."""

    def __init__(self) -> None:
        import mlflow
        import mlflow.data
        import mlflow.sklearn

        for name in ("mlflow", "alembic", "mlflow.store.db.utils"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.mlflow = mlflow
        self.version = mlflow.__version__
        self._template: Path | None = None
        self._template_dir = tempfile.TemporaryDirectory(prefix="bench-mlflow-template-")

    def _use(self, folder: Path) -> str:
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        self.mlflow.set_tracking_uri(uri)
        self.mlflow.set_registry_uri(uri)
        experiment = self.mlflow.create_experiment("bench", artifact_location=(folder / "artifacts").as_uri())
        return str(experiment)

    def open(self) -> float:
        """An empty store: MLflow creates and migrates its tables on the first call to a new URI."""
        with fresh_dir("mlflow-open") as folder, quiet():
            _, seconds = timed(lambda: self._use(folder))
        return seconds

    def _fresh_database(self, folder: Path) -> None:
        """Copy an empty, already migrated database into ``folder``, so each run skips the table creation."""
        if self._template is None:
            template = Path(self._template_dir.name) / "mlflow.db"
            uri = f"sqlite:///{template}"
            with quiet():
                self.mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()
            self._template = template
        shutil.copyfile(self._template, folder / "mlflow.db")

    def once(self, case: Case, *, with_dataset: bool = False, pinned: bool = False) -> dict[str, float]:
        """One registration, load and predict. ``with_dataset``: also log the training data as an
        ``mlflow.data`` dataset and an input example. ``pinned``: pass ``pip_requirements`` (the versions
        corral records), which skips MLflow's requirement inference."""
        mlflow = self.mlflow
        with fresh_dir("mlflow") as folder, quiet():
            self._fresh_database(folder)
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            experiment_id = mlflow.create_experiment("bench", artifact_location=(folder / "artifacts").as_uri())
            sample = case.features.iloc[:PREDICT_ROWS]

            def register() -> Any:
                with mlflow.start_run(experiment_id=experiment_id):
                    mlflow.log_params(case.params)
                    mlflow.log_metrics(case.metrics)
                    extra: dict[str, Any] = {}
                    if with_dataset:
                        dataset = mlflow.data.from_pandas(case.train, targets="y", name=f"{case.key}-train")
                        mlflow.log_input(dataset, context="training")
                        extra["input_example"] = case.features.head(5)
                    if pinned:
                        extra["pip_requirements"] = PINNED_REQUIREMENTS
                    return mlflow.sklearn.log_model(
                        case.model,
                        name="model",
                        registered_model_name=case.key,
                        skops_trusted_types=case.skops_trusted_types or None,
                        **extra,
                    )

            gc.collect()
            info, register_s = timed(register)
            version = info.registered_model_version
            model, load = timed(lambda: mlflow.sklearn.load_model(f"models:/{case.key}/{version}"))
            predicted, predict = timed(lambda: model.predict(sample))
            if not np.array_equal(np.asarray(predicted), case.model.predict(sample)):
                raise AssertionError(f"MLflow's loaded {case.key} predicts differently from the original")
            return {
                "register_s": register_s,
                "load_s": load,
                "first_predict_s": predict,
                "load_and_predict_s": load + predict,
                "artifact_bytes": float(tree_bytes(folder / "artifacts")),
                "database_bytes": float(files_bytes(folder, "mlflow.db")),
            }


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow MLflow's registration notices and warnings: stdout is for the table, stderr for progress."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield


def load_mlflow() -> MlflowSide:
    try:
        side = MlflowSide()
    except ImportError as exc:
        sys.exit(
            f"MLflow is not importable from {sys.executable} ({exc}).\n"
            "Install it into this environment (it is in corral's dev extra): "
            ".venv/bin/pip install 'mlflow-skinny>=3' — or run with --corral-only."
        )
    try:
        side.open()
    except Exception as exc:
        sys.exit(
            f"MLflow {side.version} could not open a SQLite tracking store ({type(exc).__name__}: {exc}).\n"
            "Its SQL stores need sqlalchemy and alembic in the same environment."
        )
    return side


# -- reporting -------------------------------------------------------------------

ROWS = [
    ("open_store_s", "open an empty store", "s"),
    ("register_s", "register", "s"),
    ("register_dataset_s", "register, MLflow + dataset + input example", "s"),
    ("register_pinned_s", "register, MLflow with pip_requirements= (no inference subprocess)", "s"),
    ("load_s", "load version 1", "s"),
    ("first_predict_s", f"first predict, {PREDICT_ROWS} rows", "s"),
    ("load_and_predict_s", "load + first predict", "s"),
    ("artifact_bytes", "artifacts on disk", "B"),
    ("database_bytes", "database on disk", "B"),
]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "B":
        return f"{value / 1024:,.0f} KiB"
    return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"


def summarize(samples: dict[str, dict[str, dict[str, list[float]]]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for subject, per_system in samples.items():
        for metric, label, unit in ROWS:
            variant = metric in ("register_dataset_s", "register_pinned_s")
            corral_key = "register_s" if variant else metric
            corral_values = per_system.get("corral", {}).get(corral_key)
            mlflow_values = per_system.get("mlflow", {}).get(metric)
            if (not corral_values and not mlflow_values) or (variant and not mlflow_values):
                continue
            c = statistics.median(corral_values) if corral_values else None
            m = statistics.median(mlflow_values) if mlflow_values else None
            rows.append(
                {
                    "subject": subject,
                    "metric": metric,
                    "label": label,
                    "unit": unit,
                    "corral_median": c,
                    "mlflow_median": m,
                    "ratio": c / m if c is not None and m else None,
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | metric | corral | MLflow | corral/MLflow |", "|---|---|---:|---:|---:|"]
    for row in rows:
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "–"
        lines.append(
            f"| {row['subject']} | {row['label']} | {fmt(row['corral_median'], row['unit'])} "
            f"| {fmt(row['mlflow_median'], row['unit'])} | {ratio} |"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    commit = corral_commit()
    if commit is not None:
        found["corral_commit"] = commit
    for dist in ("corral", "mlflow-skinny", "mlflow", "scikit-learn", "skops", "numpy", "pandas", "sqlalchemy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def top_functions(profiler: cProfile.Profile, package: str, top: int) -> list[dict[str, Any]]:
    """The ``top`` functions of ``package`` (a path segment such as ``/corral/``) by cumulative time."""
    entries = []
    for (filename, line, function), (_, calls, _tt, cumulative, _) in pstats.Stats(profiler).stats.items():
        if package in filename and "/bench/" not in filename and not filename.endswith("telemetry/track.py"):
            short = package.strip("/") + "/" + filename.split(package, 1)[1]
            entries.append({"function": f"{short}:{line}({function})", "calls": calls, "cumulative_s": cumulative})
    entries.sort(key=lambda e: e["cumulative_s"], reverse=True)
    return entries[:top]


def profile_registrations(case: Case, mlflow_side: MlflowSide | None, top: int) -> dict[str, Any]:
    """cProfile one warm registration of ``case`` on each side (wall times under cProfile are inflated)."""
    found: dict[str, Any] = {}
    with fresh_dir("corral-profile") as home:
        services = build_services(corral_settings(home))
        profiler = cProfile.Profile()
        profiler.enable()
        services.registry.log_model(
            case.model, name=case.key, training_data=case.train, target="y", params=case.params, metrics=case.metrics
        )
        profiler.disable()
        _dispose(services)
    found["corral"] = top_functions(profiler, "/corral/", top)
    if mlflow_side is not None:
        profiler = cProfile.Profile()
        profiler.enable()
        mlflow_side.once(case)
        profiler.disable()
        found["mlflow"] = top_functions(profiler, "/mlflow/", top + 3)
    return found


# -- main -----------------------------------------------------------------------

Samples = dict[str, dict[str, dict[str, list[float]]]]


def measure(
    cases: list[Case], mlflow_side: MlflowSide | None, repeats: int, started: float
) -> tuple[Samples, dict[str, dict[str, float]]]:
    """Warm up each side once, then ``repeats`` rounds; every run in a fresh temporary directory."""
    samples: Samples = {"(store)": {"corral": {}, "mlflow": {}}}
    for case in cases:
        samples[case.key] = {"corral": {}, "mlflow": {}}

    def add(subject: str, system: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            samples[subject][system].setdefault(metric, []).append(value)

    def run_mlflow(case: Case) -> None:
        assert mlflow_side is not None
        add(case.key, "mlflow", mlflow_side.once(case))
        if case.with_dataset_variant:
            with_data = mlflow_side.once(case, with_dataset=True)
            add(case.key, "mlflow", {"register_dataset_s": with_data["register_s"]})
        pinned = mlflow_side.once(case, pinned=True)
        add(case.key, "mlflow", {"register_pinned_s": pinned["register_s"]})

    # the first call of each side pays lazy imports (skops, MLflow's flavours): kept apart, not in the medians
    cold: dict[str, dict[str, float]] = {}
    for case in cases:
        log(f"warm-up: {case.key}")
        cold[f"corral/{case.key}"] = corral_once(case)
        if mlflow_side is not None:
            cold[f"mlflow/{case.key}"] = mlflow_side.once(case)

    for repeat in range(repeats):
        log(f"repeat {repeat + 1}/{repeats} ({time.perf_counter() - started:.0f} s so far)")
        corral_first = repeat % 2 == 0  # alternate who goes first, so drift on a shared machine hits both
        add("(store)", "corral", {"open_store_s": corral_open()})
        if mlflow_side is not None:
            add("(store)", "mlflow", {"open_store_s": mlflow_side.open()})
        for case in cases:
            if corral_first or mlflow_side is None:
                add(case.key, "corral", corral_once(case))
            if mlflow_side is not None:
                run_mlflow(case)
                if not corral_first:
                    add(case.key, "corral", corral_once(case))
    return samples, cold


def report(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"Registry: corral vs MLflow — medians of {result['repeats']} repeats, {result['elapsed_s']:.0f} s in all")
    before, after = result["load_average_before_after"]
    print(
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM; "
        f"1-min load average {before[0]:.1f} before, {after[0]:.1f} after; "
        f"threads: {result['threads'] or 'library default'}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    print()
    print(markdown(result["medians"]))
    print()
    for key, label in result["cases"].items():
        print(f"- {key}: {label}")
    for system, entries in (result["profile"] or {}).items():
        print()
        print(f"{system}: top cumulative time inside {system} during one warm hgb registration (cProfile):")
        for entry in entries:
            print(f"  {entry['cumulative_s']:7.3f} s  {entry['calls']:>5}x  {entry['function']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 7)")
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the synthetic dataset (default 10,000)")
    parser.add_argument("--profile", action="store_true", help="also cProfile one registration on each side")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="cap OpenMP/BLAS threads in this process with threadpoolctl (default: the libraries' own choice)",
    )
    parser.add_argument("--corral-only", action="store_true", help="skip MLflow (ratios are left out)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()

    log(f"fitting models ({args.rows:,} synthetic rows)...")
    cases = build_cases(args.rows)
    mlflow_side = None if args.corral_only else load_mlflow()
    samples, cold = measure(cases, mlflow_side, repeats, started)
    profile = profile_registrations(cases[0], mlflow_side, top=5) if args.profile else None
    result = {
        "benchmark": "registry",
        "command": " ".join([sys.executable, *sys.argv]),
        "repeats": repeats,
        "threads": args.threads,
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "elapsed_s": time.perf_counter() - started,
        "machine": machine(),
        "versions": versions(),
        "cases": {c.key: c.label for c in cases},
        "notes": {
            "mlflow_skops_trusted_types": {c.key: c.skops_trusted_types for c in cases},
            "mlflow_pinned_pip_requirements": PINNED_REQUIREMENTS,
            "mlflow_store": "sqlite:///<tmp>/mlflow.db, artifact root file://<tmp>/artifacts; "
            "each run starts from a copy of an empty migrated database",
            "corral_store": "sqlite:///<tmp>/corral.db, artifacts <tmp>/artifacts",
        },
        "medians": summarize(samples),
        "samples": samples,
        "cold_first_call": cold,
        "profile": profile,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    log(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
