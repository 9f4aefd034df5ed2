"""The demo's car-loan data, read from NannyML's wheel with the network blocked.

``make test`` downloads the pinned wheel into ``./.corral/wheels`` first (``make demo-data``);
``$CORRAL_DEMO_WHEELS`` points elsewhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from corral import datasets
from corral.datasets import CarLoan, find_wheel, load_car_loan
from corral.errors import DataFileError

REPO = Path(__file__).resolve().parents[2]


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("corral.datasets must not touch the network")


def _wheels() -> Path:
    return Path(os.environ.get(datasets.WHEELS_ENV) or REPO / ".corral" / "wheels")


@pytest.fixture(scope="module")
def car_loan() -> Iterator[CarLoan]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _no_network)
        patch.setattr(socket.socket, "connect_ex", _no_network)
        patch.setattr(socket, "getaddrinfo", _no_network)
        yield load_car_loan(_wheels())


def test_shapes_columns_and_dtypes(car_loan: CarLoan) -> None:
    columns = ["id", "timestamp", *datasets.FEATURES, "repaid"]
    assert car_loan.reference.shape == (50_000, len(columns))
    assert car_loan.analysis.shape == (50_000, len(columns))
    assert list(car_loan.reference.columns) == list(car_loan.analysis.columns) == columns
    assert car_loan.target == "repaid"
    assert car_loan.timestamp == "timestamp"
    assert car_loan.features == datasets.FEATURES
    assert car_loan.wheel is not None and car_loan.wheel.name == datasets.NANNYML_WHEEL
    for frame in (car_loan.reference, car_loan.analysis):
        assert not frame.isna().any().any()
        assert pd.api.types.is_datetime64_any_dtype(frame["timestamp"])
        assert frame["repaid"].dtype == "int64" and set(frame["repaid"].unique()) == {0, 1}
        assert frame["loan_length"].dtype == "int64"
        assert frame["repaid_loan_on_prev_car"].dtype == bool
        for column in ("car_value", "debt_to_income_ratio", "driver_tenure"):
            assert frame[column].dtype == "float64"
        for column in car_loan.categorical:
            assert pd.api.types.is_string_dtype(frame[column])
            assert all(isinstance(value, str) for value in frame[column].unique())
        assert list(frame.index) == list(range(len(frame)))
    assert set(car_loan.reference["salary_range"]) == {"0 - 20K €", "20K - 40K €", "40K - 60K €", "60K+ €"}
    assert set(car_loan.reference["size_of_downpayment"]) == {"0%", "10%", "20%", "30%", "40%"}


def test_time_ordered_reference_before_analysis(car_loan: CarLoan) -> None:
    reference, analysis = car_loan.reference, car_loan.analysis
    assert reference["timestamp"].is_monotonic_increasing
    assert analysis["timestamp"].is_monotonic_increasing
    assert reference["timestamp"].iloc[-1] < analysis["timestamp"].iloc[0]
    assert reference["timestamp"].iloc[0] == pd.Timestamp("2018-01-01")
    assert analysis["timestamp"].iloc[-1].date().isoformat() == "2019-08-29"
    assert not set(reference["id"]) & set(analysis["id"])
    assert len(car_loan.before_drift) == len(car_loan.after_drift) == 25_000
    assert car_loan.after_drift["timestamp"].iloc[0] == car_loan.drift_starts


def test_analysis_targets_are_joined_by_id(car_loan: CarLoan) -> None:
    assert car_loan.wheel is not None
    with zipfile.ZipFile(car_loan.wheel) as wheel:
        raw = pd.read_csv(wheel.open("nannyml/datasets/data/synthetic_car_loan_analysis_target.csv"))
    joined = car_loan.analysis.set_index("id")["repaid"]
    assert joined.sort_index().tolist() == raw.set_index("id")["repaid"].sort_index().tolist()
    assert 0.45 < car_loan.analysis["repaid"].mean() < 0.55


def test_inputs_drift_after_drift_starts(car_loan: CarLoan) -> None:
    from scipy.stats import ks_2samp

    reference, before, after = car_loan.reference, car_loan.before_drift, car_loan.after_drift
    for column in ("car_value", "loan_length"):
        assert ks_2samp(reference[column], before[column]).statistic < 0.03, column
        assert ks_2samp(reference[column], after[column]).statistic > 0.15, column
    assert after["car_value"].mean() > 1.4 * reference["car_value"].mean()

    def share(frame: pd.DataFrame, column: str, value: object) -> float:
        return float((frame[column] == value).mean())

    assert (
        abs(share(before, "repaid_loan_on_prev_car", True) - share(reference, "repaid_loan_on_prev_car", True)) < 0.03
    )
    assert share(reference, "repaid_loan_on_prev_car", True) < 0.6
    assert share(after, "repaid_loan_on_prev_car", True) > 0.75
    assert share(reference, "salary_range", "60K+ €") > 0.08
    assert share(after, "salary_range", "60K+ €") < 0.02
    # and features the drift leaves alone
    for column in ("debt_to_income_ratio", "driver_tenure"):
        assert ks_2samp(reference[column], after[column]).statistic < 0.03, column


def test_a_model_trained_on_reference_decays_after_drift_starts(car_loan: CarLoan) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), car_loan.categorical), remainder="passthrough"),
        HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=7),
    )
    model.fit(car_loan.reference[car_loan.features], car_loan.reference[car_loan.target])

    def accuracy(frame: pd.DataFrame) -> float:
        return float(accuracy_score(frame[car_loan.target], model.predict(frame[car_loan.features])))

    before, after = accuracy(car_loan.before_drift), accuracy(car_loan.after_drift)
    assert before > 0.93
    assert before - after > 0.02, (before, after)


def test_missing_wheel_names_the_download_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataFileError, match="make demo-data") as caught:
        load_car_loan(tmp_path)
    assert "pip download --no-deps --only-binary=:all: --ignore-requires-python" in str(caught.value)
    assert f"nannyml=={datasets.NANNYML_VERSION}" in str(caught.value)
    assert str(tmp_path) in str(caught.value)

    monkeypatch.delenv(datasets.WHEELS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataFileError, match=r"\.corral/wheels, build/wheels"):
        find_wheel()


def test_wheel_is_found_by_argument_then_env_then_default_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(datasets.WHEELS_ENV, raising=False)
    build = tmp_path / "build" / "wheels"
    build.mkdir(parents=True)
    (build / datasets.NANNYML_WHEEL).write_bytes(b"build")
    assert find_wheel().resolve() == (build / datasets.NANNYML_WHEEL).resolve()

    local = tmp_path / ".corral" / "wheels"
    local.mkdir(parents=True)
    (local / datasets.NANNYML_WHEEL).write_bytes(b"local")
    assert find_wheel().resolve() == (local / datasets.NANNYML_WHEEL).resolve()

    env = tmp_path / "env"
    env.mkdir()
    (env / datasets.NANNYML_WHEEL).write_bytes(b"env")
    monkeypatch.setenv(datasets.WHEELS_ENV, str(env))
    assert find_wheel() == env / datasets.NANNYML_WHEEL

    explicit = tmp_path / "elsewhere.whl"
    explicit.write_bytes(b"explicit")
    assert find_wheel(explicit) == explicit
    assert find_wheel(str(build)) == build / datasets.NANNYML_WHEEL


def test_a_wheel_with_another_hash_is_refused(tmp_path: Path) -> None:
    (tmp_path / datasets.NANNYML_WHEEL).write_bytes(b"not the wheel")
    with pytest.raises(DataFileError, match="SHA-256") as caught:
        load_car_loan(tmp_path)
    assert datasets.NANNYML_SHA256 in str(caught.value)
    assert "make demo-data" in str(caught.value)


def test_a_broken_wheel_is_a_data_file_error(tmp_path: Path) -> None:
    path = tmp_path / datasets.NANNYML_WHEEL
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("nannyml/__init__.py", "")
    with pytest.raises(DataFileError, match="cannot read the car-loan data"):
        load_car_loan(path, verify=False)
    path.write_bytes(b"not a zip")
    with pytest.raises(DataFileError, match="cannot read the car-loan data"):
        load_car_loan(path, verify=False)


def test_importing_the_module_stays_light() -> None:
    code = "import sys, corral.datasets; print(sorted(m for m in ('sklearn', 'scipy', 'nannyml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
