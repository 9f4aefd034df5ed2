from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from corral.cli.main import main
from corral.errors import DriftInputError

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


def _awkward(seed: int, n: int = 400, shift: float = 0.0) -> pd.DataFrame:
    """Columns whose reading differs between engines: missing numbers and labels, booleans, dates, blanks."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(shift, size=n),
            "count": rng.integers(0, 50, size=n),
            "holes": np.where(rng.random(n) < 0.2, np.nan, rng.exponential(size=n)),
            "int_holes": pd.array(rng.integers(0, 9, n), dtype="Int64"),
            "flag": rng.random(n) < 0.3 + shift / 10,
            "flag_holes": pd.array(rng.random(n) < 0.5, dtype="boolean"),
            "label": rng.choice(
                np.array(["a", "b", "NA", "", None], dtype=object), size=n, p=[0.4, 0.3, 0.1, 0.1, 0.1]
            ),
            "day": rng.choice(["2024-01-01", "2024-02-01", "2024-03-01"], size=n),
            "constant": np.ones(n),
        }
    )
    frame.loc[frame.index[::50], "x"] = np.inf
    frame.loc[rng.random(n) < 0.1, "int_holes"] = pd.NA
    frame.loc[rng.random(n) < 0.1, "flag_holes"] = pd.NA
    return frame


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("detectors", [None, ["psi", "wasserstein", "jensenshannon"]])
def test_column_wise_path_equals_compare_frames(tmp_path: Path, suffix: str, detectors: list[str] | None) -> None:
    from corral.cli.drift import compare_files, read_frame
    from corral.core.schema import Signature
    from corral.monitoring.detectors import compare_frames

    ref_path = _frame_file(tmp_path / f"ref{suffix}", _awkward(1))
    cur_path = _frame_file(tmp_path / f"cur{suffix}", _awkward(2, shift=0.5))
    results, signature = compare_files(ref_path, cur_path, detectors)
    # the same as reading both files whole (the frames pandas gives) and comparing them in memory
    ref, cur = read_frame(ref_path), read_frame(cur_path)
    assert signature == Signature.infer(ref)
    assert results == compare_frames(ref, cur, signature, detectors)
    assert len(results) >= len(signature.inputs) - 1  # every feature compared (all but "day" for numbers-only)
    if suffix == ".parquet":  # Parquet round-trips the in-memory frames themselves
        memory_ref, memory_cur = _awkward(1), _awkward(2, shift=0.5)
        assert results == compare_frames(memory_ref, memory_cur, Signature.infer(memory_ref), detectors)
    with_target, target_signature = compare_files(ref_path, cur_path, detectors, target="x")
    ref, cur = ref.drop(columns="x"), cur.drop(columns="x")
    assert target_signature == Signature.infer(ref)
    assert with_target == compare_frames(ref, cur, target_signature, detectors)


def test_column_wise_csv_reads_headers_like_pandas(tmp_path: Path) -> None:
    from corral.cli.drift import ColumnSource, compare_files, read_frame
    from corral.core.schema import Signature
    from corral.monitoring.detectors import compare_frames

    text = ",a,a,a.1,empty,when\n" + "".join(f"{i},{i % 3},{i % 5},{i % 7},,2024-01-0{1 + i % 9}\n" for i in range(60))
    ref_path, cur_path = _write(tmp_path / "ref.csv", text), _write(tmp_path / "cur.csv", text)
    ref = read_frame(ref_path)
    assert ColumnSource(ref_path).columns == list(ref.columns) == ["Unnamed: 0", "a", "a.2", "a.1", "empty", "when"]
    with pytest.raises(DriftInputError, match="has no values"):  # "empty" is all missing, as with pandas
        compare_files(ref_path, cur_path)
    results, signature = compare_files(ref_path, cur_path, target="empty")
    frame = ref.drop(columns="empty")
    assert signature == Signature.infer(frame) and results == compare_frames(frame, read_frame(cur_path), signature)
    assert signature.feature("when").kind == "categorical"
