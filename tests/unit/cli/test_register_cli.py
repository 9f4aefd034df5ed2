"""`corral models register`, `corral models requirements` and `corral deployments limits` from the command line."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.app import build_services
from corral.cli.main import main
from corral.settings import Settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CORRAL_USER", "cli-tester")
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path: Path, cancer: pd.DataFrame) -> tuple[Path, Path, LogisticRegression]:
    data = cancer[["mean radius", "mean texture", "target"]]
    model = LogisticRegression(max_iter=1000).fit(data.drop(columns="target"), data["target"])
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    data.to_csv(tmp_path / "train.csv", index=False)
    return tmp_path / "model.pkl", tmp_path / "train.csv", model


def test_register_a_trusted_pickle_file_with_training_data(
    home: Path, files: tuple[Path, Path, LogisticRegression], capsys: pytest.CaptureFixture[str]
) -> None:
    model_file, data_file, _ = files

    code, out, err = run(
        capsys, "models", "register", str(model_file), "--name", "cli-model", "--data", str(data_file),
        "--target", "target", "--trusted", "-r", "extra-lib==1.0", "--description", "from a file", "--json",
    )  # fmt: skip

    assert code == 0, err
    version = json.loads(out)
    assert (version["name"], version["version"], version["flavor"]) == ("cli-model", 1, "sklearn")
    assert version["runtime"]["options"]["format"] == "skops"  # the pickle was read once, stored with skops
    assert version["lineage"]["requirements"]["extra-lib"] == "1.0"
    assert version["lineage"]["data"]["source"] == str(data_file)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ((), "refusing to load model.pkl: it is a pickle"),  # no --trusted
        (("--trusted", "--isolated"), "--isolated needs the releases the model needs"),
        (("--trusted", "-r", "scikit-learn"), "requirement 'scikit-learn' is not NAME==VERSION"),
        (("--trusted", "-o", "serialization"), "option 'serialization' is not KEY=VALUE"),
        (("--trusted", "--target", "nope"), "nope"),
    ],
)
def test_register_refusals_name_the_problem_and_register_nothing(
    home: Path,
    files: tuple[Path, Path, LogisticRegression],
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    fragment: str,
) -> None:
    model_file, data_file, _ = files

    code, _, err = run(capsys, "models", "register", str(model_file), "--name", "m", "--data", str(data_file), *extra)

    assert code == 1 and fragment in err
    assert build_services(Settings()).registry.list_models() == []


def test_requirements_are_shown_and_edited(
    home: Path, files: tuple[Path, Path, LogisticRegression], capsys: pytest.CaptureFixture[str]
) -> None:
    model_file, data_file, _ = files
    run(capsys, "models", "register", str(model_file), "--name", "m", "--data", str(data_file), "--target", "target",
        "--trusted")  # fmt: skip

    code, out, err = run(capsys, "models", "requirements", "m", "1", "-r", "scikit-learn==1.2.2", "--drop", "skops",
                         "--json")  # fmt: skip

    assert code == 0, err
    needs = json.loads(out)["requirements"]
    assert needs["scikit-learn"] == "1.2.2" and "skops" not in needs
    code, out, _ = run(capsys, "models", "requirements", "m", "1")
    assert code == 0 and "1.2.2" in out
    code, _, err = run(capsys, "models", "requirements", "m", "1", "--drop", "torch")
    assert code == 1 and "records no requirement 'torch'" in err


def test_deployment_limits_are_shown_changed_and_checked(
    home: Path, files: tuple[Path, Path, LogisticRegression], capsys: pytest.CaptureFixture[str]
) -> None:
    model_file, data_file, _ = files
    run(capsys, "models", "register", str(model_file), "--name", "m", "--data", str(data_file), "--target", "target",
        "--trusted")  # fmt: skip
    code, _, err = run(
        capsys, "deployments", "create", "m", "--model", "m", "--isolation", "isolated", "--timeout", "2"
    )
    assert code == 0, err

    code, out, _ = run(capsys, "deployments", "limits", "m", "--max-concurrency", "4", "--max-queue", "8", "--json")
    assert code == 0
    limits = json.loads(out)
    assert (limits["isolation"], limits["timeout_seconds"], limits["max_concurrency"], limits["max_queue"]) == (
        "isolated",
        2.0,
        4,
        8,
    )
    code, out, _ = run(capsys, "deployments", "limits", "m", "--no-timeout", "--no-caps", "--json")
    assert json.loads(out)["timeout_seconds"] is None and json.loads(out)["max_concurrency"] is None
    code, _, err = run(capsys, "deployments", "limits", "m", "--isolation", "docker")
    assert code == 1 and "isolation 'docker' is not one of auto, in_process, isolated" in err
    code, _, err = run(capsys, "deployments", "limits", "m", "--device", "tpu")
    assert code == 1 and "device 'tpu'" in err
