"""File sources (CSV, Parquet, globs), combining frames, and the checks on training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from corral.errors import DataFileError
from corral.pipelines.sources import check_training_data, combine, read_file_source


def part(start: int, rows: int = 3) -> pd.DataFrame:
    values = np.arange(start, start + rows)
    return pd.DataFrame({"x": values.astype(float), "colour": ["red", "blue", "red"][:rows], "label": values % 2})


def test_reads_one_csv_and_one_parquet(tmp_path: Path) -> None:
    part(0).to_csv(tmp_path / "a.csv", index=False)
    part(10).to_parquet(tmp_path / "b.parquet", index=False)
    pd.testing.assert_frame_equal(read_file_source(tmp_path / "a.csv"), part(0))
    pd.testing.assert_frame_equal(read_file_source(str(tmp_path / "b.parquet")), part(10))


def test_a_glob_concatenates_matching_files_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "2024").mkdir()
    part(20).to_csv(tmp_path / "2024" / "03.csv", index=False)
    part(0).to_csv(tmp_path / "2024" / "01.csv", index=False)
    part(10).to_parquet(tmp_path / "2024" / "02.parquet", index=False)
    (tmp_path / "2024" / "notes.txt").write_text("not data", encoding="utf-8")
    frame = read_file_source(str(tmp_path / "2024" / "*.csv"))
    assert frame["x"].tolist() == [0.0, 1.0, 2.0, 20.0, 21.0, 22.0]
    assert list(frame.index) == list(range(6))
    mixed = read_file_source(str(tmp_path / "*" / "0[1-3].*"))
    assert mixed["x"].tolist() == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0, 20.0, 21.0, 22.0]


def test_a_glob_that_matches_nothing_names_the_pattern(tmp_path: Path) -> None:
    pattern = str(tmp_path / "missing-*.csv")
    with pytest.raises(DataFileError, match="no file matches") as caught:
        read_file_source(pattern)
    assert pattern in str(caught.value)


def test_missing_unknown_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such file"):
        read_file_source(tmp_path / "absent.csv")
    (tmp_path / "data.json").write_text("{}", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"unknown file type '\.json'"):
        read_file_source(tmp_path / "data.json")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataFileError, match=r"broken\.parquet: cannot read it as parquet"):
        read_file_source(tmp_path / "broken.parquet")


def test_files_with_different_columns_are_refused_by_name(tmp_path: Path) -> None:
    part(0).to_csv(tmp_path / "a.csv", index=False)
    part(10).rename(columns={"colour": "color"}).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DataFileError, match="columns differ") as caught:
        read_file_source(str(tmp_path / "*.csv"))
    message = str(caught.value)
    assert "b.csv" in message and "'color'" in message and "lacks 'colour'" in message


def test_combine_aligns_column_order_and_refuses_differences() -> None:
    reordered = part(10)[["label", "x", "colour"]]
    combined = combine([part(0), reordered])
    assert list(combined.columns) == ["x", "colour", "label"]
    assert combined["x"].tolist() == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]
    with pytest.raises(DataFileError, match="frame 2 has 'extra' that frame 1 lacks"):
        combine([part(0), part(10).assign(extra=1)])
    with pytest.raises(DataFileError, match="the sql source lacks 'label'"):
        combine([part(0), part(10).drop(columns="label")], names=["the file source", "the sql source"])
    with pytest.raises(DataFileError, match="no frames"):
        combine([])


def test_good_training_data_has_no_problems() -> None:
    frame = pd.DataFrame({"x": [0.1, 0.5, 0.9, 0.3], "label": [0, 1, 1, 0]})
    assert check_training_data(frame, "label") == []
    assert check_training_data(frame, "label", expected_columns=["label", "x"]) == []


def test_empty_data() -> None:
    problems = check_training_data(pd.DataFrame({"x": [], "label": []}), "label")
    assert problems == ["the training data has no rows"]


def test_missing_target() -> None:
    (problem,) = check_training_data(pd.DataFrame({"x": [1, 2], "y": [0, 1]}), "label")
    assert "target column 'label' is missing" in problem and "'x', 'y'" in problem


def test_a_target_with_one_value() -> None:
    (problem,) = check_training_data(pd.DataFrame({"x": [1, 2, 3], "label": [1, 1, None]}), "label")
    assert "one value" in problem and "'label'" in problem
    (problem,) = check_training_data(pd.DataFrame({"x": [1, 2], "label": [None, None]}), "label")
    assert "no values" in problem


def test_a_feature_identical_to_the_target_is_label_leakage() -> None:
    frame = pd.DataFrame(
        {
            "x": [0.1, 0.5, 0.9, 0.3],
            "label_copy": [0.0, 1.0, 1.0, np.nan],  # float copy of the integer label, missing where it is
            "outcome_text": ["no", "yes", "yes", None],
            "label": pd.array([0, 1, 1, None], dtype="Int64"),
        }
    )
    (problem,) = check_training_data(frame, "label")
    assert "'label_copy'" in problem and "label leakage" in problem
    text_target = pd.DataFrame({"f": ["no", "yes", "no"], "g": ["no", "yes", "yes"], "label": ["no", "yes", "no"]})
    assert check_training_data(text_target, "label") == [
        "the feature 'f' is identical to the target 'label' (label leakage)"
    ]


def test_schema_changes_name_added_and_removed_columns() -> None:
    frame = pd.DataFrame({"x": [1, 2], "z": [3, 4], "label": [0, 1]})
    (problem,) = check_training_data(frame, "label", expected_columns=["x", "y", "label"])
    assert "schema changed" in problem and "added 'z'" in problem and "removed 'y'" in problem
    assert "label" not in problem.split(":", 1)[1]
    # the model's signature lists features only: the target is not "added"
    assert check_training_data(frame, "label", expected_columns=["x", "z"]) == []


def test_several_problems_are_all_reported() -> None:
    frame = pd.DataFrame({"x": [1, 1], "label": [1, 1]})
    problems = check_training_data(frame, "label", expected_columns=["x", "w", "label"])
    assert len(problems) == 3
