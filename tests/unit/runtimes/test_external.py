"""The external runtime: any executable speaking corral-external/1 over stdin/stdout.

The model here is a small Python script run by this interpreter (``FAKE``), so every edge of the protocol
can be provoked on purpose: a handshake that is missing or wrong, a crash on one input (``os._exit``), a
hang, an answer that is not JSON, the wrong number of rows, errors the model reports, missing values both
ways. The R and Node.js examples are exercised end to end in tests/integration/test_external_languages.py.
"""

from __future__ import annotations

import gc
import json
import os
import stat
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from corral.api.errors import status_for
from corral.core.schema import Task
from corral.errors import CorralError, FlavorError, ModelLoadError, ModelTimeoutError, SchemaError, WorkerCrashedError
from corral.registry.service import Registry
from corral.runtimes.base import RuntimeSpec
from corral.runtimes.external import PROTOCOL, ExternalModelError, ExternalRuntime, encode_request
from corral.runtimes.loader import detect_flavor, runtime_class

# A model in "another language": reads frames from stdin, answers on stdout, logs on stderr.
# argv[1] picks how it greets; the input column x picks how it answers.
FAKE = textwrap.dedent(
    """
    import json, os, struct, sys, time

    MODE = sys.argv[1] if len(sys.argv) > 1 else "ok"
    CLASSES = json.loads(os.environ.get("FAKE_CLASSES", '["no", "yes"]'))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def send(message):
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        stdout.write(struct.pack(">I", len(body)) + body)
        stdout.flush()

    def receive():
        header = stdin.read(4)
        if len(header) < 4:
            return None
        return stdin.read(struct.unpack(">I", header)[0])

    if os.environ.get("FAKE_PIDS"):
        with open(os.environ["FAKE_PIDS"], "a") as pids:
            pids.write(f"{os.getpid()}\\n")
    with open("env.json", "w") as out:
        json.dump(dict(os.environ), out)
    sys.stderr.write(f"fake model starting in {MODE} mode\\n")
    sys.stderr.flush()
    if MODE == "exits":
        sys.stderr.write("cannot find my weights\\n")
        sys.exit(3)
    if MODE == "prints":
        print("hello from the model", flush=True)
        time.sleep(30)
    greetings = {
        "wrong-protocol": {"protocol": "corral-external/2", "ready": True},
        "not-ready": {"protocol": "corral-external/1", "ready": False},
        "no-protocol": {"ready": True},
        "not-json": b"\\xff\\xfe hello",
        "array": [1, 2],
    }
    send(greetings.get(MODE, {"protocol": "corral-external/1", "ready": True, "name": "the fake"}))

    while True:
        payload = receive()
        if payload is None:
            break
        with open("last_request.json", "wb") as out:
            out.write(payload)
        request = json.loads(payload)
        x = request["data"]["x"]
        if 13 in x:
            os._exit(7)
        if -1 in x:
            time.sleep(30)
        if 99 in x:
            send(b"this is not {json")
        elif 98 in x:
            send({"predictions": x[:-1]})
        elif 97 in x:
            send({"error": "x=97 is cursed"})
        elif 96 in x:
            send({"error": "x must be below 96", "invalid_input": True})
        elif 95 in x:
            send([1, 2, 3])
        elif 94 in x:
            send({"predictions": ["maybe" for _ in x], "probabilities": [[0.5, 0.5] for _ in x]})
        elif 93 in x:
            send({"predictions": [CLASSES[0] for _ in x]})
        elif MODE == "classifier":
            p = [None if v is None else (0.9 if v > 0 else 0.2) for v in x]
            labels = [CLASSES[1] if q is not None and q > 0.5 else CLASSES[0] for q in p]
            send({"predictions": labels, "probabilities": [[None, None] if q is None else [1 - q, q] for q in p]})
        elif MODE == "probabilities-only":
            send({"probabilities": [[0.3, 0.7] if v > 0 else [0.8, 0.2] for v in x]})
        else:
            send({"predictions": [None if v is None else 2 * v for v in x]})
    sys.stderr.write("fake model: channel closed, bye\\n")
    """
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "fake-model"
    folder.mkdir()
    (folder / "fake_model.py").write_text(FAKE)
    (folder / "weights.txt").write_text("2.0\n")
    return folder


@pytest.fixture
def frame() -> pd.DataFrame:
    """Training data: a number with a missing value, a category, a flag, and a numeric target."""
    x = [0.5, 1.0, 2.5, np.nan, 4.0, 5.5, 6.0, 7.25]
    return pd.DataFrame(
        {
            "x": x,
            "color": ["red", "blue", "red", "green", None, "blue", "red", "green"],
            "flag": [True, False, True, True, False, False, True, False],
            "target": [2 * v for v in x],
        }
    )


def command(mode: str = "ok") -> list[str]:
    return [sys.executable, "fake_model.py", mode]


@pytest.fixture
def runtimes() -> Iterator[list[ExternalRuntime]]:
    """Runtimes a test made, closed at its end (a failing test must not leave children behind)."""
    made: list[ExternalRuntime] = []
    yield made
    for runtime in made:
        runtime.close()


@pytest.fixture
def load(tmp_path: Path, model_dir: Path, runtimes: list[ExternalRuntime]) -> Callable[..., ExternalRuntime]:
    """Save the fake model with ``options`` and load it, as the registry does (minus the archive)."""
    counter = iter(range(1000))

    def run(mode: str = "ok", *, folder: Path | None = None, **options: Any) -> ExternalRuntime:
        artifact = tmp_path / f"artifact-{next(counter)}"
        artifact.mkdir()
        spec = ExternalRuntime.save(
            folder or model_dir, artifact, options={"command": command(mode), "timeout_seconds": 10, **options}
        )
        runtime = ExternalRuntime.load(artifact, spec)
        runtimes.append(runtime)
        return runtime

    return run


def rows(*x: float | None) -> pd.DataFrame:
    return pd.DataFrame({"x": [np.nan if v is None else float(v) for v in x]})


def close(runtime: object) -> None:
    assert isinstance(runtime, ExternalRuntime)
    runtime.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- registration and serving through the registry --------------------------------------------


def test_regressor_round_trip_through_the_registry(registry: Registry, model_dir: Path, frame: pd.DataFrame) -> None:
    version = registry.log_model(
        model_dir,
        name="fake-regressor",
        flavor="external",
        options={"command": command(), "timeout_seconds": 10},
        training_data=frame,
        target="target",
    )

    assert version.flavor == "external"
    assert version.signature.columns == ["x", "color", "flag"]
    assert version.signature.outputs.task is Task.REGRESSION
    assert version.runtime.options["command"] == command()
    assert version.runtime.options["protocol"] == PROTOCOL
    assert version.runtime.options["timeout_seconds"] == 10.0
    assert "corral" in version.lineage.requirements
    profile = registry.get_profile("fake-regressor", 1)
    assert profile is not None and "prediction" in profile.outputs

    loaded = registry.load("fake-regressor/1")
    runtime = loaded.runtime
    assert isinstance(runtime, ExternalRuntime)
    try:
        values = loaded.predict(frame.drop(columns="target"))
        np.testing.assert_array_equal(values, frame["target"].to_numpy())  # NaN in, null both ways, NaN out
        assert np.isnan(values[3])
        # the folder the registry unpacked is gone; the runtime works from its own copy
        assert (runtime.folder / "weights.txt").read_text() == "2.0\n"
        sent = json.loads((runtime.folder / "last_request.json").read_bytes())
        assert sent["columns"] == ["x", "color", "flag"]
        assert sent["data"]["x"] == [0.5, 1.0, 2.5, None, 4.0, 5.5, 6.0, 7.25]
        assert sent["data"]["color"] == ["red", "blue", "red", "green", None, "blue", "red", "green"]
        assert sent["data"]["flag"] == [True, False, True, True, False, False, True, False]
    finally:
        runtime.close()


def test_registration_does_not_leave_the_model_running(
    registry: Registry, model_dir: Path, frame: pd.DataFrame, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    registry.log_model(
        model_dir,
        name="fake",
        flavor="external",
        options={"command": command(), "env": {"FAKE_PIDS": str(pids)}},
        training_data=frame,
        target="target",
    )
    gc.collect()

    started = [int(line) for line in pids.read_text().split()]
    assert len(started) == 1  # registration started the model once, to verify and profile it
    assert not alive(started[0])


def test_classifier_probabilities_follow_the_declared_class_order(
    registry: Registry, model_dir: Path, frame: pd.DataFrame
) -> None:
    labelled = frame.assign(target=np.where(frame["x"].fillna(0) > 3, "yes", "no"))
    version = registry.log_model(
        model_dir,
        name="fake-classifier",
        flavor="external",
        # the model answers probabilities in the order given here, not the sorted one
        options={"command": command("classifier"), "classes": ["yes", "no"], "env": {"FAKE_CLASSES": '["yes", "no"]'}},
        training_data=labelled,
        target="target",
    )

    assert version.runtime.task is Task.CLASSIFICATION
    assert version.runtime.classes == ("yes", "no")
    assert version.signature.outputs.classes == ("yes", "no")
    assert version.signature.outputs.probabilities is True
    loaded = registry.load("fake-classifier/1")
    try:
        features = pd.DataFrame({"x": [5.0, -2.0], "color": ["red", "blue"], "flag": [True, False]})
        prediction = loaded.infer(features)
        # the fake gives its second class ("no") 0.9 when x > 0, 0.2 otherwise
        np.testing.assert_array_equal(prediction.values, np.array(["no", "yes"], dtype=object))
        assert prediction.probabilities is not None
        np.testing.assert_allclose(prediction.probabilities, np.array([[0.1, 0.9], [0.8, 0.2]]))
        assert prediction.classes == ("yes", "no")
        assert list(loaded.predict_frame(features).columns) == ["prediction", "proba_yes", "proba_no"]
    finally:
        close(loaded.runtime)


def test_classes_default_to_the_training_targets(registry: Registry, model_dir: Path, frame: pd.DataFrame) -> None:
    labelled = frame.assign(target=(frame["x"].fillna(0) > 3).astype(int))
    version = registry.log_model(
        model_dir,
        name="fake-binary",
        flavor="external",
        options={"command": command("classifier"), "env": {"FAKE_CLASSES": "[0, 1]"}},
        training_data=labelled,
        target="target",
    )
    assert version.runtime.classes == (0, 1)
    loaded = registry.load("fake-binary/1")
    try:
        prediction = loaded.runtime.predict(pd.DataFrame({"x": [2.0, -1.5, np.nan], "color": "red", "flag": True}))
        assert prediction.values.tolist() == [1, 0, 0]
        assert prediction.values.dtype == np.int64
        assert prediction.probabilities is not None
        np.testing.assert_allclose(prediction.probabilities[:2], np.array([[0.1, 0.9], [0.8, 0.2]]))
        assert np.isnan(prediction.probabilities[2]).all()  # null probabilities arrive as NaN
    finally:
        close(loaded.runtime)


def test_labels_come_from_the_probabilities_when_the_model_sends_only_those(
    load: Callable[..., ExternalRuntime],
) -> None:
    runtime = load("probabilities-only", classes=["no", "yes"])

    prediction = runtime.predict(rows(1.0, -2.0, 3.0))

    assert prediction.values.tolist() == ["yes", "no", "yes"]
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities, np.array([[0.3, 0.7], [0.8, 0.2], [0.3, 0.7]]))


def test_a_classifier_without_probabilities_is_refused_unless_registered_so(
    load: Callable[..., ExternalRuntime],
) -> None:
    strict = load(classes=["no", "yes"])
    with pytest.raises(ExternalModelError, match=r'without "probabilities".*probabilities=false'):
        strict.predict(rows(93))

    relaxed = load(classes=["no", "yes"], probabilities=False)
    prediction = relaxed.predict(rows(93, 93))
    assert prediction.values.tolist() == ["no", "no"]
    assert prediction.probabilities is None


def test_a_label_outside_the_classes_is_refused(load: Callable[..., ExternalRuntime]) -> None:
    runtime = load(classes=["no", "yes"])
    with pytest.raises(ExternalModelError, match=r"predicted 'maybe' for row 0, which is not one of its classes"):
        runtime.predict(rows(94))


def test_an_explicit_classes_list_must_match_the_training_target(model_dir: Path, tmp_path: Path) -> None:
    from corral.core.schema import Signature

    signature = Signature.infer(pd.DataFrame({"x": [1.0, 2.0]}), pd.Series(["a", "b"]))
    with pytest.raises(FlavorError, match=r"classes \['a', 'c'\] differ from the training target's classes"):
        ExternalRuntime.save(
            model_dir, tmp_path, signature=signature, options={"command": command(), "classes": ["a", "c"]}
        )
    assert not (tmp_path / "model").exists()  # refused before anything was copied
    spec = ExternalRuntime.save(model_dir, tmp_path, signature=signature, options={"command": command()})
    assert spec.task is Task.CLASSIFICATION
    assert spec.classes == ("a", "b")  # sorted training classes: the order the model must answer in


# -- the handshake ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("exits", r"exited with code 3 before it was ready.*cannot find my weights"),
        ("prints", r"carries text.*printed on it"),
        ("wrong-protocol", r"speaks protocol 'corral-external/2'; this corral speaks 'corral-external/1'"),
        ("not-ready", r'did not say it is ready \("ready": true\)'),
        ("no-protocol", r'sent a handshake without "protocol"'),
        ("not-json", r"first frame that is not UTF-8 JSON"),
        ("array", r"first frame that is not a JSON object"),
    ],
)
def test_a_bad_handshake_fails_the_load_and_leaves_nothing_behind(
    load: Callable[..., ExternalRuntime], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str, message: str
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the runtime makes its private folder

    with pytest.raises(ModelLoadError, match=message) as caught:
        load(mode, start_timeout_seconds=10)

    assert "fake_model.py" in str(caught.value)  # the message names the command
    assert list(scratch.iterdir()) == []  # its copy of the folder is gone


def test_a_missing_program_is_a_load_error(load: Callable[..., ExternalRuntime], model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"cannot start 'no-such-interpreter-xyz'"):
        load(folder=model_dir, command=["no-such-interpreter-xyz", "model.xyz"])


def test_a_handshake_that_never_comes_times_out(load: Callable[..., ExternalRuntime]) -> None:
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match=r"did not get ready within 0.5 s"):
        load("prints-nothing", command=[sys.executable, "-c", "import time; time.sleep(30)"], start_timeout_seconds=0.5)
    assert time.monotonic() - started < 5


# -- what a running model can do wrong ------------------------------------------------------------


def test_a_crash_is_a_503_and_the_model_comes_back(load: Callable[..., ExternalRuntime]) -> None:
    runtime = load()
    first = runtime.process.pid
    assert runtime.predict(rows(1.0)).values.tolist() == [2.0]

    with pytest.raises(WorkerCrashedError, match="exited with code 7 while answering") as caught:
        runtime.predict(rows(1.0, 13.0))
    assert status_for(caught.value) == 503
    with pytest.raises(WorkerCrashedError, match="restarts in"):  # during the backoff: refused at once
        runtime.predict(rows(1.0))

    time.sleep(runtime.process.BACKOFF_FIRST + 0.1)
    assert runtime.predict(rows(3.0)).values.tolist() == [6.0]
    assert runtime.process.restarts == 1
    assert runtime.process.pid != first


def test_a_slow_answer_is_a_504_and_the_model_is_killed(load: Callable[..., ExternalRuntime]) -> None:
    runtime = load(timeout_seconds=0.5)
    hung = runtime.process.pid
    assert hung is not None

    started = time.monotonic()
    with pytest.raises(ModelTimeoutError, match=r"did not answer within 0.5 s") as caught:
        runtime.predict(rows(-1.0))
    assert time.monotonic() - started < 5
    assert status_for(caught.value) == 504
    assert not alive(hung)  # not left running the request

    time.sleep(runtime.process.BACKOFF_FIRST + 0.1)
    assert runtime.predict(rows(1.5)).values.tolist() == [3.0]


@pytest.mark.parametrize(
    ("x", "error", "message", "status"),
    [
        (99, ExternalModelError, r"frame that is not UTF-8 JSON.*this is not \{json", 500),
        (98, ExternalModelError, r"answered 1 predictions for 2 rows", 500),
        (97, ExternalModelError, r"reported an error: x=97 is cursed", 500),
        (96, SchemaError, r"refused the input: x must be below 96", 400),
        (95, ExternalModelError, r"answered with a JSON list, not an object", 500),
    ],
)
def test_a_bad_answer_fails_the_request_and_the_model_keeps_serving(
    load: Callable[..., ExternalRuntime], x: float, error: type[Exception], message: str, status: int
) -> None:
    runtime = load()
    pid = runtime.process.pid

    with pytest.raises(error, match=message) as caught:
        runtime.predict(rows(1.0, x))

    assert "fake_model.py" in str(caught.value)
    assert isinstance(caught.value, CorralError)
    assert status_for(caught.value) == status
    assert runtime.predict(rows(2.0)).values.tolist() == [4.0]  # the channel is still in step
    assert runtime.process.pid == pid


def test_missing_values_travel_as_null_both_ways(load: Callable[..., ExternalRuntime]) -> None:
    runtime = load()

    values = runtime.predict(rows(None, 1.0, None)).values

    assert values.dtype == np.float64
    assert np.isnan(values[0]) and values[1] == 2.0 and np.isnan(values[2])
    assert json.loads((runtime.folder / "last_request.json").read_bytes())["data"]["x"] == [None, 1.0, None]


def test_no_rows_are_answered_without_asking_the_model(load: Callable[..., ExternalRuntime]) -> None:
    runtime = load(classes=["no", "yes"])
    prediction = runtime.predict(rows())
    assert len(prediction) == 0
    assert prediction.probabilities is not None and prediction.probabilities.shape == (0, 2)
    assert not (runtime.folder / "last_request.json").exists()


def test_concurrent_calls_each_get_their_own_answer(load: Callable[..., ExternalRuntime]) -> None:
    runtime = load()
    results: dict[int, list[float]] = {}

    def ask(i: int) -> None:
        results[i] = runtime.predict(rows(i, i + 0.5)).values.tolist()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20, 36)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert results == {i: [2.0 * i, 2.0 * i + 1.0] for i in range(20, 36)}


def test_the_model_gets_its_env_and_not_the_servers_secrets(
    load: Callable[..., ExternalRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_DATABASE_URL", "postgresql://corral:secret@db/corral")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")

    runtime = load(env={"MODEL_MODE": "strict"})

    seen = json.loads((runtime.folder / "env.json").read_text())
    assert seen["MODEL_MODE"] == "strict"
    assert seen["PATH"] == os.environ["PATH"]
    assert "CORRAL_DATABASE_URL" not in seen
    assert "AWS_SECRET_ACCESS_KEY" not in seen


# -- lifecycle ----------------------------------------------------------------------------------------


def test_close_stops_the_model_and_removes_its_folder(load: Callable[..., ExternalRuntime]) -> None:
    runtime = load()
    pid = runtime.process.pid
    assert pid is not None and alive(pid)
    folder = runtime.folder

    runtime.close()

    assert runtime.closed
    assert not alive(pid)
    assert not folder.exists()
    runtime.close()  # twice is fine
    with pytest.raises(WorkerCrashedError, match="its worker was stopped"):
        runtime.predict(rows(1.0))


def test_a_forgotten_runtime_stops_its_model_when_collected(tmp_path: Path, model_dir: Path) -> None:
    spec = ExternalRuntime.save(model_dir, tmp_path, options={"command": command()})
    runtime = ExternalRuntime.load(tmp_path, spec)
    pid, folder = runtime.process.pid, runtime.folder
    assert pid is not None and alive(pid)

    del runtime
    gc.collect()

    assert not alive(pid)
    assert not folder.exists()


def test_executable_files_stay_executable_through_the_artifact(
    registry: Registry, model_dir: Path, frame: pd.DataFrame
) -> None:
    launcher = model_dir / "serve"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" fake_model.py "$@"\n')
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)

    version = registry.log_model(
        model_dir,
        name="launched",
        flavor="external",
        options={"command": ["./serve"]},
        training_data=frame,
        target="target",
    )

    assert version.runtime.options["executables"] == ["serve"]
    loaded = registry.load("launched/1")
    try:
        assert loaded.predict(pd.DataFrame({"x": [1.0], "color": ["red"], "flag": [True]})).tolist() == [2.0]
    finally:
        close(loaded.runtime)


def test_a_spec_for_another_protocol_version_is_refused(tmp_path: Path, model_dir: Path) -> None:
    spec = ExternalRuntime.save(model_dir, tmp_path, options={"command": command()})
    future = RuntimeSpec(spec.flavor, spec.task, spec.classes, {**spec.options, "protocol": "corral-external/9"})
    with pytest.raises(ModelLoadError, match="registered for corral-external/9; this corral speaks corral-external/1"):
        ExternalRuntime.load(tmp_path, future)


# -- what registration refuses ---------------------------------------------------------------------------


def test_a_link_out_of_the_folder_is_refused(model_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not ship me")
    (model_dir / "data").symlink_to(secret)
    artifact = tmp_path / "artifact"
    artifact.mkdir()

    with pytest.raises(FlavorError, match=r"data links outside the model folder .*secret.txt"):
        ExternalRuntime.save(model_dir, artifact, options={"command": command()})


def test_a_link_inside_the_folder_is_copied_as_its_file(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "sub").mkdir()
    (model_dir / "sub" / "alias.txt").symlink_to(model_dir / "weights.txt")

    ExternalRuntime.save(model_dir, tmp_path, options={"command": command()})

    copied = tmp_path / "model" / "sub" / "alias.txt"
    assert not copied.is_symlink()
    assert copied.read_text() == "2.0\n"


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("missing", {"command": ["node", "m.js"]}, r"external model folder '.*missing' does not exist"),
        ("file", {"command": ["node", "m.js"]}, r"an external model is a folder; '.*fake_model.py' is a file"),
        (42, {"command": ["node", "m.js"]}, r"an external model is a folder .* not a int"),
        ("folder", {}, r'needs options=\{"command": \[...\]\}'),
        ("folder", {"command": []}, r"the command is empty"),
        ("folder", {"command": ""}, r"the command is empty"),
        ("folder", {"command": [" "]}, r"the command is empty"),
        ("folder", {"command": ["node", 3]}, r"must be a list of strings"),
        ("folder", {"command": ["./serve.sh"]}, r"program './serve.sh' is not a file in the model folder"),
        ("folder", {"command": ["node"], "comand": 1}, r"does not take option\(s\) comand"),
        ("folder", {"command": ["node"], "timeout_seconds": 0}, r"timeout_seconds must be a positive number"),
        ("folder", {"command": ["node"], "classes": []}, r"classes must be a non-empty list"),
        ("folder", {"command": ["node"], "classes": ["a", "a"]}, r"classes must be distinct"),
        ("folder", {"command": ["node"], "classes": [1.5]}, r"class labels must be strings, integers or booleans"),
        ("folder", {"command": ["node"], "task": "ranking"}, r"task must be one of classification, regression"),
        ("folder", {"command": ["node"], "task": "classification"}, r"an external classifier needs its classes"),
        ("folder", {"command": ["node"], "env": {"A": 1}}, r"env must map variable names to strings"),
        ("folder", {"command": ["node"], "classes": ["a"], "probabilities": "yes"}, r"probabilities must be"),
    ],
)
def test_registration_refusals_name_what_is_wrong(
    model_dir: Path, tmp_path: Path, model: Any, options: dict[str, Any], message: str
) -> None:
    target = {"missing": tmp_path / "missing", "file": model_dir / "fake_model.py", "folder": model_dir}.get(
        model, model
    )
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    with pytest.raises(FlavorError, match=message):
        ExternalRuntime.save(target, artifact, options=options)


def test_a_command_string_is_split_like_a_shell(model_dir: Path, tmp_path: Path) -> None:
    spec = ExternalRuntime.save(model_dir, tmp_path, options={"command": "Rscript 'serve it.R' --fast"})
    assert spec.options["command"] == ["Rscript", "serve it.R", "--fast"]


def test_never_detected_only_chosen(model_dir: Path) -> None:
    assert not ExternalRuntime.accepts(model_dir)
    assert not ExternalRuntime.accepts(str(model_dir))
    assert runtime_class("external") is ExternalRuntime
    with pytest.raises(Exception, match="MLflow model directory"):
        detect_flavor(model_dir)


# -- the request encoding ------------------------------------------------------------------------------------


def test_requests_are_column_oriented_json_with_null_for_missing() -> None:
    frame = pd.DataFrame(
        {
            "b": [1.5, np.nan],
            "a": pd.array([3, 4], dtype="int64"),
            "c": pd.Series(["x", None], dtype=object),
            "d": pd.Categorical(["lo", None], categories=["lo", "hi"]),
            "e": [True, False],
            "f": pd.Series([True, None], dtype=object),
            "g/h": [np.float32(0.25), np.float32(0.5)],
        }
    )

    decoded = json.loads(encode_request(frame))

    assert decoded == {
        "columns": ["b", "a", "c", "d", "e", "f", "g/h"],
        "data": {
            "b": [1.5, None],
            "a": [3, 4],
            "c": ["x", None],
            "d": ["lo", None],
            "e": [True, False],
            "f": [True, None],
            "g/h": [0.25, 0.5],
        },
    }


def test_an_infinite_value_cannot_be_sent() -> None:
    with pytest.raises(SchemaError, match="column 'x' holds an infinite value"):
        encode_request(pd.DataFrame({"x": [1.0, np.inf]}))
