from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from corral.cli.main import main

SHIFTED = ["mean radius", "worst area", "mean texture", "tissue"]


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture(scope="module")
def files(cancer: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rng = np.random.default_rng(7)
    frame = cancer.copy()
    frame["tissue"] = rng.choice(["a", "b", "c"], size=len(frame), p=[0.6, 0.3, 0.1])
    order = rng.permutation(len(frame))
    half = len(frame) // 2
    reference, current = frame.iloc[order[:half]], frame.iloc[order[half:]].copy()
    shifted = current.copy()
    shifted["mean radius"] *= 1.3
    shifted["worst area"] += 250.0
    shifted["mean texture"] += 4.0
    shifted["tissue"] = np.random.default_rng(1).choice(["a", "b", "c"], size=len(shifted), p=[0.2, 0.3, 0.5])
    root = tmp_path_factory.mktemp("drift")
    paths = {
        "ref_csv": root / "reference.csv",
        "cur_csv": root / "current.csv",
        "ref_pq": root / "reference.parquet",
        "shifted_pq": root / "shifted.pq",
    }
    reference.to_csv(paths["ref_csv"], index=False)
    current.to_csv(paths["cur_csv"], index=False)
    reference.to_parquet(paths["ref_pq"], index=False)
    shifted.to_parquet(paths["shifted_pq"], index=False)
    return paths


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_no_drift_between_random_halves(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "drift", files["ref_csv"], files["cur_csv"], "--target", "target")
    assert code == 0
    assert "feature" in out and "p-value" in out and "missing ref" in out and "mean radius" in out
    line = out.strip().splitlines()[-1]
    drifted, total = int(line.split()[0]), int(line.split()[2])
    assert line.endswith("of 31 features drifted") and total == 31 and drifted <= 2


def test_shifted_parquet_json_and_html(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_out, html_out = tmp_path / "drift.json", tmp_path / "drift.html"
    code, out, _ = run(
        capsys, "drift", files["ref_pq"], files["shifted_pq"], "--target", "target",
        "--json", json_out, "--html", html_out,
    )  # fmt: skip
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert {row.split("│")[1].strip() for row in rows[:4]} == set(SHIFTED)
    assert all("yes" in row for row in rows[:4])
    assert f"wrote {json_out}" in out and f"wrote {html_out}" in out

    data = json.loads(json_out.read_text())
    assert data["summary"]["features"] == 31 and data["summary"]["drifted"] >= 4
    assert set(data["summary"]["drifted_features"]) >= set(SHIFTED)
    assert f"{data['summary']['drifted']} of 31 features drifted" in out
    results = data["results"]
    assert len(results) == 31 and {r["feature"] for r in results[:4]} == set(SHIFTED)
    radius = next(r for r in results if r["feature"] == "mean radius")
    assert radius["detector"] == "ks" and radius["kind"] == "numerical" and radius["drifted"] is True
    assert radius["p_value"] < 1e-6 and radius["reference_missing_rate"] == 0.0
    tissue = next(r for r in results if r["feature"] == "tissue")
    assert tissue["detector"] == "chi2" and tissue["kind"] == "categorical" and tissue["drifted"] is True
    assert "target" not in {r["feature"] for r in results}

    page = html_out.read_text()
    assert "<svg" in page and "http://" not in page and "https://" not in page and "<script src" not in page
    for name in [r["feature"] for r in results]:
        assert name in page


def test_named_detectors_on_csv_vs_parquet(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "drift", files["ref_csv"], files["shifted_pq"], "--detectors", "psi, wasserstein")
    assert code == 0
    rows = [line.split("│") for line in out.splitlines() if line.startswith("│")]
    assert {row[3].strip() for row in rows} == {"psi", "wasserstein"}
    assert rows[0][1].strip() in SHIFTED and "of 32 features drifted" in out


def _frame_file(path: Path, frame: pd.DataFrame) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "data.txt", "unknown file type '.txt'"),
        (lambda d: d / "missing.csv", "missing.csv: no such file"),
        (lambda d: _write(d / "empty.csv", ""), "empty.csv: cannot read it as csv"),
        (lambda d: _write(d / "bad.parquet", "not parquet at all"), "bad.parquet: cannot read it as parquet"),
        (lambda d: _frame_file(d / "other.csv", pd.DataFrame({"x": [1.0, 2.0], "y": [1, 2]})), "only in current"),
    ],
)
def test_bad_current_file(
    make: object, message: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert callable(make)
    code, out, err = run(capsys, "drift", files["ref_csv"], make(tmp_path))
    assert code == 1 and out == ""
    assert message in err and err.startswith("error:") and len(err.strip().splitlines()) == 1


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_columns_that_differ_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = _frame_file(tmp_path / "ref.csv", pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0]}))
    cur = _frame_file(tmp_path / "cur.parquet", pd.DataFrame({"a": [1.0, 2.0], "c": [1.0, 2.0]}))
    code, _, err = run(capsys, "drift", ref, cur)
    assert code == 1
    assert "different columns; only in reference: ['b']; only in current: ['c']" in err


def test_bad_options(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "drift", files["ref_csv"], files["cur_csv"], "--detectors", "nope")
    assert code == 1 and "no drift detector named 'nope'" in err
    code, _, err = run(capsys, "drift", files["ref_csv"], files["cur_csv"], "--target", "label")
    assert code == 1 and "--target 'label' is not a column" in err
    code, _, err = run(capsys, "drift", files["ref_csv"], files["cur_csv"], "--detectors", ",")
    assert code == 1 and "--detectors needs at least one" in err


def test_html_feature_names_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    ref = _frame_file(tmp_path / "ref.csv", pd.DataFrame({"<b>x</b>": rng.normal(size=100)}))
    cur = _frame_file(tmp_path / "cur.csv", pd.DataFrame({"<b>x</b>": rng.normal(3.0, size=100)}))
    html_out = tmp_path / "report.html"
    code, out, _ = run(capsys, "drift", ref, cur, "--html", html_out)
    assert code == 0 and "<b>x</b>" in out and "1 of 1 features drifted" in out
    page = html_out.read_text()
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
