"""Two scikit-learn releases that cannot load each other's models, served side by side by one `corral serve`.

A random forest is trained and pickled by scikit-learn 1.2.2 in its own environment (built with uv from
PyPI the first time, then cached); another by this process's scikit-learn. Neither release can unpickle
the other's trees (the node layout changed in 1.3). The old model is registered with
`corral models register --isolated` (saved and checked inside its environment), the new one in process;
a real `corral serve` then answers both over the Open Inference Protocol (tritonclient), each with the
predictions its own release gives.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import subprocess
import textwrap
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import sklearn
import tritonclient.http as triton
from server_process import corral_env, open_services, run_cli, running_server
from sklearn.ensemble import RandomForestClassifier

from corral import auth_headers
from corral.isolation.environments import Environments
from corral.settings import Settings

OLD = {"scikit-learn": "1.2.2", "numpy": "1.26.4", "pandas": "2.1.4", "scipy": "1.11.4", "skops": "0.9.0"}
ROWS = 40

TRAIN_OLD = textwrap.dedent(
    """
    import json, pickle, sys
    import sklearn
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    frame = load_breast_cancer(as_frame=True).frame
    x, y = frame.drop(columns="target"), frame["target"]
    model = RandomForestClassifier(n_estimators=25, max_depth=4, random_state=3).fit(x, y)
    with open(sys.argv[1], "wb") as f:
        pickle.dump(model, f)
    rows = x.iloc[: int(sys.argv[3])]
    out = {"version": sklearn.__version__, "labels": model.predict(rows).tolist(),
           "proba": model.predict_proba(rows).tolist()}
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)
    """
)

Served = tuple[str, dict[str, str]]  # the base URL and the Authorization header
LOAD = "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))"


@dataclass
class Side:
    tmp: Path
    old_python: Path
    old: dict[str, Any]  # what the old release itself predicts on the first ROWS rows
    new_model: RandomForestClassifier
    frame: pd.DataFrame


@pytest.fixture(scope="module")
def side(tmp_path_factory: pytest.TempPathFactory, environments: Environments, cancer: pd.DataFrame) -> Side:
    tmp = tmp_path_factory.mktemp("releases")
    python = environments.ensure(OLD, what="the old release").python
    (tmp / "train_old.py").write_text(TRAIN_OLD)
    subprocess.run(
        [str(python), str(tmp / "train_old.py"), str(tmp / "old.pkl"), str(tmp / "old.json"), str(ROWS)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    new_model = RandomForestClassifier(n_estimators=25, max_depth=4, random_state=3)
    new_model.fit(cancer.drop(columns="target"), cancer["target"])
    with (tmp / "new.pkl").open("wb") as f:
        pickle.dump(new_model, f)
    old = json.loads((tmp / "old.json").read_text())
    return Side(tmp, python, old, new_model, cancer)


def test_the_two_releases_cannot_load_each_others_models(side: Side) -> None:
    assert side.old["version"] == "1.2.2" and sklearn.__version__ != "1.2.2"
    with warnings.catch_warnings(), (side.tmp / "old.pkl").open("rb") as f:
        warnings.simplefilter("ignore")  # the version warning; the error is what counts
        with pytest.raises(ValueError, match="incompatible dtype"):
            pickle.load(f)
    new = str(side.tmp / "new.pkl")
    done = subprocess.run([str(side.old_python), "-c", LOAD, new], capture_output=True, text=True, check=False)
    assert done.returncode != 0, "scikit-learn 1.2.2 loaded a newer release's forest"


@pytest.fixture(scope="module")
def served(side: Side, environments: Environments) -> Iterator[Served]:
    home = side.tmp / "home"
    env = corral_env(home, CORRAL_ISOLATION__ROOT=str(environments.root))
    with contextlib.closing(open_services(env)) as services:
        services.registry.log_model(side.new_model, name="forest-new", training_data=side.frame, target="target")
        services.registry.promote("forest-new", 1)
    side.frame.to_csv(side.tmp / "train.csv", index=False)
    requirements = [arg for name, version in OLD.items() for arg in ("--requirement", f"{name}=={version}")]
    run_cli(
        env,
        "models", "register", str(side.tmp / "old.pkl"), "--name", "forest-old", "--flavor", "sklearn",
        "--data", str(side.tmp / "train.csv"), "--target", "target", "--trusted", "--isolated", *requirements,
        timeout=300,
    )  # fmt: skip
    run_cli(env, "models", "promote", "forest-old", "1")
    run_cli(env, "deployments", "create", "old", "--model", "forest-old")
    run_cli(env, "deployments", "create", "new", "--model", "forest-new")
    with running_server(env) as base_url:
        yield base_url, auth_headers(Settings(home=home))


def infer(base_url: str, headers: dict[str, str], name: str, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    client = triton.InferenceServerClient(base_url.removeprefix("http://"))
    try:
        inputs = []
        for column in rows.columns:
            tensor = triton.InferInput(str(column), [len(rows)], "FP64")
            tensor.set_data_from_numpy(rows[column].to_numpy(dtype="float64"), binary_data=True)
            inputs.append(tensor)
        result = client.infer(name, inputs, headers=dict(headers))  # tritonclient adds to the dict it is given
        response = result.get_response()
        return {output["name"]: result.as_numpy(output["name"]) for output in response["outputs"]}
    finally:
        client.close()


def test_one_server_serves_both_each_as_its_own_release_predicts(
    side: Side, served: tuple[str, dict[str, str]]
) -> None:
    base_url, headers = served
    rows = side.frame.drop(columns="target").iloc[:ROWS]

    old = infer(base_url, headers, "old", rows)
    new = infer(base_url, headers, "new", rows)

    assert old["predict"].tolist() == side.old["labels"]
    np.testing.assert_allclose(old["predict_proba"], np.array(side.old["proba"]), rtol=1e-12)
    assert new["predict"].tolist() == side.new_model.predict(rows).tolist()
    np.testing.assert_allclose(new["predict_proba"], side.new_model.predict_proba(rows), rtol=1e-12)


def test_the_old_version_records_its_own_releases(side: Side, served: Served) -> None:
    base_url, headers = served

    model = httpx.get(f"{base_url}/v1/models/forest-old", headers=headers, timeout=10).raise_for_status().json()
    version = model["versions"][0]

    assert version["runtime"]["options"]["format"] == "skops"  # read from the pickle once, stored without it
    assert {k: version["lineage"]["requirements"][k] for k in OLD} == OLD
