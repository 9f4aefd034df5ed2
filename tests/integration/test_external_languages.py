"""Models in R and Node.js, registered like any model and served by a real ``corral serve``.

The two examples under ``examples/external`` are trained afresh in a temporary copy (``Rscript train.R``:
a logistic regression on R's bundled ``infert`` data; ``node train.js``: a softmax regression on
scikit-learn's wine data), registered through the registry with their training data, promoted and
deployed, then served by one ``corral serve``: the R model through the Open Inference Protocol
(``/v2/models/{name}/infer``), the Node.js model through the JSON API (``/v1/deployments/{name}/predict``).
Every answer must be exactly what R or Node.js computes on its own for the same rows, each answered row
must be in the audit log with the model, version and output, the monitoring snapshot must count the rows,
a value the R model refuses must come back as a 400 naming it, and stopping the server must stop both
model processes and remove their folders.

R is installed by ``make`` (Debian's ``r-base-core`` and ``r-cran-jsonlite``). Without ``Rscript`` or
``node`` the test for that language is skipped, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from server_process import ServerProcess, corral_env, open_services, server_process

from corral.storage import open_database

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "external"
R_DEPLOYMENT, NODE_DEPLOYMENT = "infert", "wine"
MONITORING_WAIT = 15.0  # seconds for served rows to reach the stored window (flushed every 0.5 s here)


def program(name: str, language: str, how: str) -> str:
    """The path of ``name``; skip without it, except under CI, where a missing language is a failure."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not on PATH ({how}), so the {language} example model cannot run"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def run(command: list[str], folder: Path, *, stdin: str | None = None) -> str:
    done = subprocess.run(command, cwd=folder, input=stdin, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def rscript() -> str:
    return program("Rscript", "R", "make installs Debian's r-base-core and r-cran-jsonlite")


@pytest.fixture(scope="module")
def node() -> str:
    return program("node", "Node.js", "Node.js 20, from Debian or NodeSource")


@dataclass
class Example:
    name: str
    folder: Path
    training: pd.DataFrame
    target: str


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Example]:
    """Both examples trained in a temporary copy (the repository's files stay as they are)."""
    root = tmp_path_factory.mktemp("examples")
    out: dict[str, Example] = {}
    if shutil.which("Rscript") is not None:
        r = shutil.copytree(EXAMPLES / "r", root / "r")
        (r / "model.rds").unlink()
        run(["Rscript", "train.R"], r)
        out["r"] = Example("infert-r", r, pd.read_csv(r / "infert.csv"), "case")
    if shutil.which("node") is not None:
        node = shutil.copytree(EXAMPLES / "node", root / "node")
        (node / "model.json").unlink()
        run(["node", "train.js"], node)
        # training is deterministic: the committed model.json is what train.js makes
        assert (node / "model.json").read_text() == (EXAMPLES / "node" / "model.json").read_text()
        out["node"] = Example("wine-node", node, pd.read_csv(node / "wine.csv"), "target")
    return out


def r_directly(folder: Path, rows: pd.DataFrame) -> np.ndarray:
    """P(case = 1) for ``rows`` from R itself: readRDS and predict, no corral and no protocol."""
    script = (
        'model <- readRDS("model.rds"); rows <- read.csv(file("stdin"), stringsAsFactors = FALSE); '
        'cat(sprintf("%.17g", predict(model, newdata = rows, type = "response")), sep = "\\n")'
    )
    return np.array(run(["Rscript", "-e", script], folder, stdin=rows.to_csv(index=False)).split(), dtype="float64")


def node_directly(folder: Path, rows: pd.DataFrame) -> dict[str, Any]:
    """Labels and probabilities for ``rows`` from Node.js itself: model.js's predict, no corral."""
    script = (
        "const fs = require('fs'); const { predict } = require('./model.js');"
        "const model = JSON.parse(fs.readFileSync('model.json', 'utf8'));"
        "const request = JSON.parse(fs.readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(predict(model, request.columns, request.data)));"
    )
    request = {"columns": list(rows.columns), "data": {c: rows[c].tolist() for c in rows.columns}}
    answer: dict[str, Any] = json.loads(run(["node", "-e", script], folder, stdin=json.dumps(request)))
    return answer


def v2_request(rows: pd.DataFrame) -> dict[str, Any]:
    inputs = []
    for column in rows.columns:
        values = rows[column]
        if pd.api.types.is_integer_dtype(values):
            kind = "INT64"
        elif pd.api.types.is_float_dtype(values):
            kind = "FP64"
        else:
            kind = "BYTES"
        inputs.append({"name": column, "shape": [len(rows)], "datatype": kind, "data": values.tolist()})
    return {"id": "external-r", "inputs": inputs}


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def register(env: dict[str, str], examples: dict[str, Example]) -> None:
    services = open_services(env)
    try:
        registry = services.registry
        if "r" in examples:
            r = examples["r"]
            version = registry.log_model(
                r.folder,
                name=r.name,
                flavor="external",
                options={"command": ["Rscript", "serve.R"], "timeout_seconds": 30},
                training_data=r.training,
                target=r.target,
                source="R datasets::infert",
                code_commit="0" * 40,
            )
            assert version.runtime.classes == (0, 1)
            assert version.signature.columns == ["education", "age", "parity", "induced", "spontaneous"]
            registry.promote(r.name, version.version)
            services.deployments.create(R_DEPLOYMENT, model=r.name)
        if "node" in examples:
            node = examples["node"]
            version = registry.log_model(
                node.folder,
                name=node.name,
                flavor="external",
                options={"command": ["node", "model.js"], "classes": [0, 1, 2], "timeout_seconds": 30},
                training_data=node.training,
                target=node.target,
                source="sklearn.datasets.load_wine",
                code_commit="0" * 40,
            )
            assert version.signature.outputs.classes == (0, 1, 2)
            registry.promote(node.name, version.version)
            services.deployments.create(NODE_DEPLOYMENT, model=node.name)
    finally:
        services.close()


def audit_records(home: Path, prediction_ids: list[str]) -> dict[str, list[Any]]:
    database = open_database(f"sqlite:///{(home / 'corral.db').resolve()}", migrate=False)
    try:
        return {pid: database.audit.records_for(pid) for pid in prediction_ids}
    finally:
        database.close()


@dataclass
class Served:
    server: ServerProcess
    home: Path
    http: httpx.Client  # carries the admin token when the server requires one


@pytest.fixture(scope="module")
def served(trained: dict[str, Example], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Both examples registered, deployed and served by one ``corral serve``; checked to clean up at its end."""
    root = tmp_path_factory.mktemp("serve")
    home = root / "home"
    scratch = root / "tmp"  # the server's temporary folders, where each model's private copy lives
    scratch.mkdir()
    env = corral_env(
        home, TMPDIR=str(scratch), CORRAL_MONITORING__FLUSH_SECONDS="0.5", CORRAL_SERVING__REFRESH_SECONDS="0.5"
    )
    register(env, trained)
    with server_process(env) as server:
        token_file = home / "admin-token"  # written on first start when the API requires tokens
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"} if token_file.exists() else {}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
            yield Served(server, home, http)
        children = {pid: command_line(pid) for pid in descendants(server.process.pid)}
        assert any("serve.R" in c or "model.js" in c for c in children.values()), children
    leftover = {pid: line for pid, line in children.items() if command_line(pid)}
    assert not leftover, f"model processes outlived the server: {leftover}"
    assert not any(scratch.glob("corral-external-*")), list(scratch.iterdir())


# -- R --------------------------------------------------------------------------------------------------


def test_r_model_answers_the_open_inference_protocol_as_r_does(
    rscript: str, trained: dict[str, Example], served: Served
) -> None:
    r = trained["r"]
    rows = r.training.drop(columns=r.target).iloc[::4].reset_index(drop=True)  # 62 rows, every education level
    assert set(rows["education"]) == {"0-5yrs", "6-11yrs", "12+ yrs"}

    response = served.http.post(f"/v2/models/{R_DEPLOYMENT}/infer", json=v2_request(rows))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "1"
    outputs = {o["name"]: o for o in body["outputs"]}
    probabilities = np.array(outputs["predict_proba"]["data"], dtype="float64").reshape(len(rows), 2)
    expected = r_directly(r.folder, rows)
    np.testing.assert_array_equal(probabilities[:, 1], expected)  # exactly R's numbers, through two encodings
    np.testing.assert_array_equal(probabilities[:, 0], 1 - expected)
    assert outputs["predict"]["data"] == (expected >= 0.5).astype(int).tolist()

    ids = outputs["prediction_id"]["data"]
    records = audit_records(served.home, ids)
    for i, pid in enumerate(ids):
        (record,) = records[pid]
        assert (record.deployment, record.model, record.version) == (R_DEPLOYMENT, r.name, 1)
        assert record.output == int(expected[i] >= 0.5)
        assert record.probabilities is not None
        np.testing.assert_allclose(record.probabilities, [1 - expected[i], expected[i]], rtol=1e-12)
        assert record.inputs["education"] == rows["education"][i]


def test_r_model_refusing_a_value_is_a_400_naming_it(rscript: str, trained: dict[str, Example], served: Served) -> None:
    row = {"education": "postgraduate", "age": 30, "parity": 1, "induced": 0, "spontaneous": 0}

    response = served.http.post(f"/v1/deployments/{R_DEPLOYMENT}/predict", json={"instances": [row]})

    assert response.status_code == 400, response.text
    assert "unknown education level(s): postgraduate" in response.json()["error"]
    assert "Rscript serve.R" in response.json()["error"]
    ok = served.http.post(
        f"/v1/deployments/{R_DEPLOYMENT}/predict", json={"instances": [row | {"education": "6-11yrs"}]}
    )
    assert ok.status_code == 200, ok.text  # the model keeps serving


# -- Node.js ------------------------------------------------------------------------------------------------


def test_node_model_answers_the_json_api_as_node_does(node: str, trained: dict[str, Example], served: Served) -> None:
    wine = trained["node"]
    rows = wine.training.drop(columns=wine.target)
    expected = node_directly(wine.folder, rows)

    answered: list[dict[str, Any]] = []
    for start in range(0, len(rows), 50):
        chunk = rows.iloc[start : start + 50]
        response = served.http.post(
            f"/v1/deployments/{NODE_DEPLOYMENT}/predict", json={"instances": chunk.to_dict(orient="records")}
        )
        assert response.status_code == 200, response.text
        answered.append(response.json())

    predictions = [p for body in answered for p in body["predictions"]]
    probabilities = [p for body in answered for p in body["probabilities"]]
    assert predictions == expected["predictions"]
    assert probabilities == expected["probabilities"]  # bit for bit
    assert all(body["classes"] == [0, 1, 2] and body["model"] == {"name": wine.name, "version": 1} for body in answered)
    assert np.mean(np.array(predictions) == wine.training[wine.target].to_numpy()) > 0.95

    ids = [pid for body in answered for pid in body["prediction_ids"]]
    records = audit_records(served.home, ids)
    assert [r.output for pid in ids for r in records[pid]] == predictions
    assert {(r.model, r.version, r.role) for pid in ids for r in records[pid]} == {(wine.name, 1, "primary")}

    # monitoring saw every row: the production window of the version, with its features' quality
    deadline = time.monotonic() + MONITORING_WAIT
    while True:
        response = served.http.get(f"/v1/deployments/{NODE_DEPLOYMENT}/monitoring")
        assert response.status_code == 200, response.text
        snapshot = response.json()
        window = snapshot.get("window") or {}  # none until the first flush
        if window.get("rows", 0) >= len(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (snapshot["model"], snapshot["version"], window.get("rows")) == (wine.name, 1, len(rows)), snapshot
    assert {f["name"] for f in snapshot["features"]} == set(rows.columns)
    assert all(f["quality"]["count"] == len(rows) for f in snapshot["features"])
