"""Real, time-ordered demo data whose distribution shifts: NannyML's synthetic car-loan dataset.

Source: the ``synthetic_car_loan_*.csv`` files that NannyML ships inside its wheel
(``nannyml==0.13.1``, ``nannyml/datasets/data/``), Copyright NannyML, Apache License 2.0
(https://github.com/NannyML/nannyml). Each row is a car-loan application; the target
``repaid`` says whether the loan was repaid (a balanced binary classification).

- ``reference``: 50,000 rows, 2018-01-01 to 2018-10-30, targets included. Train on it.
- ``analysis``: 50,000 later rows, 2018-10-30 to 2019-08-29, targets joined from the separate
  ``..._analysis_target.csv``. Its first half looks like the reference period; from
  :data:`DRIFT_STARTS` (2019-03-31 03:00, analysis row 25,000) on, ``car_value`` jumps
  (mean 30k -> 49k), ``loan_length`` grows, almost nobody earns ``60K+ €``, and
  ``repaid_loan_on_prev_car`` goes from 55 % to 80 % true; a model trained on the reference
  period loses about three points of accuracy there.

Why from the wheel: the data is real and versioned by a pinned, hash-checked PyPI file, so it
needs no network at run time and nothing vendored in this repository. NannyML itself is never
installed (its pins conflict with ours): the CSVs are read straight from the ``.whl`` (a zip)
with :mod:`zipfile`. ``make`` downloads the wheel with::

    pip download --no-deps --only-binary=:all: --ignore-requires-python --dest .corral/wheels nannyml==0.13.1

NannyML's own model outputs in the files (``y_pred_proba``, ``y_pred``) are dropped.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from corral.errors import DataFileError

__all__ = [
    "CATEGORICAL",
    "DOWNLOAD_COMMAND",
    "DRIFT_STARTS",
    "FEATURES",
    "NANNYML_SHA256",
    "NANNYML_VERSION",
    "NANNYML_WHEEL",
    "TARGET",
    "TIMESTAMP",
    "WHEELS_ENV",
    "CarLoan",
    "find_wheel",
    "load_car_loan",
]

NANNYML_VERSION = "0.13.1"
NANNYML_WHEEL = f"nannyml-{NANNYML_VERSION}-py3-none-any.whl"
NANNYML_SHA256 = "cf5f4a33489834ae6773cb1baa33a0f98c0a3ee6ed9b43049478b25ce22fe869"
WHEELS_ENV = "CORRAL_DEMO_WHEELS"
DEFAULT_WHEEL_DIRS = (Path(".corral/wheels"), Path("build/wheels"))
DOWNLOAD_COMMAND = (
    "make demo-data  (or: pip download --no-deps --only-binary=:all: --ignore-requires-python "
    f"--dest .corral/wheels nannyml=={NANNYML_VERSION})"
)

TARGET = "repaid"
TIMESTAMP = "timestamp"
FEATURES = [
    "car_value",
    "salary_range",
    "debt_to_income_ratio",
    "loan_length",
    "repaid_loan_on_prev_car",
    "size_of_downpayment",
    "driver_tenure",
]
CATEGORICAL = ["salary_range", "size_of_downpayment"]
DRIFT_STARTS = pd.Timestamp("2019-03-31 03:00:00")

_MEMBER = "nannyml/datasets/data/synthetic_car_loan_{}.csv"
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_DTYPES = {
    "id": "int64",
    "car_value": "float64",
    "salary_range": "str",
    "debt_to_income_ratio": "float64",
    "loan_length": "float64",  # whole months, written as 21.0; made int64 after reading
    "repaid_loan_on_prev_car": "bool",
    "size_of_downpayment": "str",
    "driver_tenure": "float64",
    TARGET: "float64",  # 1.0/0.0 in the reference file; made int64 after reading
}


@dataclass
class CarLoan:
    """The car-loan data: a reference period to train on and a later, drifting analysis period.

    Both frames have ``id``, :data:`TIMESTAMP` (datetime64), the :data:`FEATURES` and
    :data:`TARGET` (int64, 1 = repaid), sorted by time with a fresh index. Categorical features
    are strings, ``repaid_loan_on_prev_car`` is bool, ``loan_length`` int64 (months).
    """

    reference: pd.DataFrame
    analysis: pd.DataFrame
    target: str = TARGET
    timestamp: str = TIMESTAMP
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    categorical: list[str] = field(default_factory=lambda: list(CATEGORICAL))
    drift_starts: pd.Timestamp = DRIFT_STARTS
    wheel: Path | None = None

    @property
    def before_drift(self) -> pd.DataFrame:
        """Analysis rows before :attr:`drift_starts`: production traffic like the reference period."""
        return self.analysis[self.analysis[self.timestamp] < self.drift_starts]

    @property
    def after_drift(self) -> pd.DataFrame:
        """Analysis rows from :attr:`drift_starts` on: shifted inputs, lower accuracy."""
        return self.analysis[self.analysis[self.timestamp] >= self.drift_starts]


def find_wheel(wheels: str | Path | None = None) -> Path:
    """The pinned NannyML wheel: ``wheels`` (the file or its folder), else ``$CORRAL_DEMO_WHEELS``,
    else ``./.corral/wheels``, else ``./build/wheels``.

    Raises:
        DataFileError: when no candidate holds the wheel; the message names where it looked and
            the command that downloads it.
    """
    if wheels is not None:
        candidates = [Path(wheels)]
    elif os.environ.get(WHEELS_ENV):
        candidates = [Path(os.environ[WHEELS_ENV])]
    else:
        candidates = list(DEFAULT_WHEEL_DIRS)
    for candidate in candidates:
        path = candidate / NANNYML_WHEEL if candidate.is_dir() or candidate.suffix != ".whl" else candidate
        if path.is_file():
            return path
    looked = ", ".join(str(c) for c in candidates)
    raise DataFileError(
        f"the demo data wheel {NANNYML_WHEEL} is missing (looked in {looked}); download it with: {DOWNLOAD_COMMAND}"
    )


def load_car_loan(wheels: str | Path | None = None, *, verify: bool = True) -> CarLoan:
    """Read NannyML's car-loan reference and analysis data from the wheel, without network or NannyML.

    Args:
        wheels: the wheel file or a folder holding it; see :func:`find_wheel` for the fallbacks.
        verify: check the wheel's SHA-256 against :data:`NANNYML_SHA256` first (about 30 ms).

    Raises:
        DataFileError: the wheel is missing, has another hash, or does not hold the expected CSVs.
    """
    path = find_wheel(wheels)
    if verify:
        digest = _sha256(path)
        if digest != NANNYML_SHA256:
            raise DataFileError(
                f"{path} has SHA-256 {digest}, expected {NANNYML_SHA256} (nannyml {NANNYML_VERSION}); "
                f"delete it and download it again with: {DOWNLOAD_COMMAND}"
            )
    try:
        with zipfile.ZipFile(path) as wheel:
            reference = _read(wheel, "reference")
            analysis = _read(wheel, "analysis")
            targets = _read(wheel, "analysis_target")
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DataFileError(f"cannot read the car-loan data from {path}: {exc}") from exc

    analysis = analysis.merge(targets[["id", TARGET]], on="id", how="left", validate="one_to_one")
    if analysis[TARGET].isna().any():
        raise DataFileError(f"{path}: {int(analysis[TARGET].isna().sum())} analysis rows have no target")
    return CarLoan(reference=_tidy(reference), analysis=_tidy(analysis), wheel=path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(wheel: zipfile.ZipFile, part: str) -> pd.DataFrame:
    with wheel.open(_MEMBER.format(part)) as handle:
        frame = pd.read_csv(handle, encoding="utf-8")
    dtypes = {column: dtype for column, dtype in _DTYPES.items() if column in frame.columns}
    return frame.astype(dtypes)


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.assign(
        **{
            TIMESTAMP: pd.to_datetime(frame[TIMESTAMP], format=_TIME_FORMAT),
            "loan_length": frame["loan_length"].round().astype("int64"),
            TARGET: frame[TARGET].round().astype("int64"),
        }
    )
    frame = frame[["id", TIMESTAMP, *FEATURES, TARGET]]
    return frame.sort_values([TIMESTAMP, "id"], kind="stable").reset_index(drop=True)
