"""PyTorch runtime: small networks trained here, scripted or exported, registered and loaded back.

The loaded model runs the same program on the same float32 inputs as the
original, so outputs agree to float32 rounding at most (1e-6); labels exactly.
"""

from __future__ import annotations

import asyncio
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import expit, softmax
from torch import nn

from corral.core.schema import Task
from corral.errors import FlavorError, ModelLoadError, SchemaError
from corral.registry.service import Registry
from corral.runtimes import loader
from corral.runtimes.base import RuntimeSpec
from corral.runtimes.torch import TorchRuntime
from corral.serving.deployments import Deployments
from corral.serving.entities import BatchingPolicy
from corral.serving.server import ModelServer
from corral.storage.memory import MemoryDeploymentStore

# TorchScript is deprecated in torch 2.13; these tests still make it, on purpose
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.(script|trace)\w*` is deprecated:DeprecationWarning")

ATOL = 1e-6
HAS_CUDA = torch.cuda.is_available()


# -- networks -------------------------------------------------------------------------


class Standardize(nn.Module):
    """Scales raw features with the training mean and deviation, so the registered model takes raw rows."""

    def __init__(self, features: pd.DataFrame) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(features.mean().to_numpy(), dtype=torch.float32))
        scale = features.std(ddof=0).replace(0.0, 1.0).to_numpy()
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


class Rescale(nn.Module):
    def __init__(self, mean: float, scale: float) -> None:
        super().__init__()
        self.mean, self.scale = mean, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.mean


def features_of(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="target")


def tensor(frame: pd.DataFrame) -> torch.Tensor:
    return torch.tensor(frame.to_numpy(), dtype=torch.float32)


def fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Callable[..., torch.Tensor]) -> nn.Module:
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(200):
        optimizer.zero_grad()
        loss(net(x), y).backward()
        optimizer.step()
    return net.eval()


def classifier(frame: pd.DataFrame, outputs: int, *, hidden: int = 16) -> nn.Module:
    """A two-layer network trained on ``frame``'s target: ``outputs`` logits (one means a single binary logit)."""
    torch.manual_seed(0)
    features = features_of(frame)
    net = nn.Sequential(
        Standardize(features), nn.Linear(features.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, outputs)
    )
    y = torch.tensor(frame["target"].to_numpy())
    if outputs == 1:
        return fit(net, tensor(features), y.float().unsqueeze(1), nn.functional.binary_cross_entropy_with_logits)
    return fit(net, tensor(features), y.long(), nn.functional.cross_entropy)


def regressor(frame: pd.DataFrame) -> nn.Module:
    torch.manual_seed(0)
    features = features_of(frame)
    target = frame["target"]
    mean, scale = float(target.mean()), float(target.std(ddof=0))
    net = nn.Sequential(Standardize(features), nn.Linear(features.shape[1], 32), nn.ReLU(), nn.Linear(32, 1))
    y = torch.tensor(((target - mean) / scale).to_numpy(), dtype=torch.float32).unsqueeze(1)
    fit(net, tensor(features), y, nn.functional.mse_loss)
    return nn.Sequential(net, Rescale(mean, scale)).eval()


def export(module: nn.Module, frame: pd.DataFrame, **batch: Any) -> torch.export.ExportedProgram:
    """``module`` exported with a dynamic batch dimension (``batch`` passes bounds to ``Dim``)."""
    example = tensor(features_of(frame).head(8))
    return torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch", **batch)},))


def outputs_of(module: Any, frame: pd.DataFrame) -> np.ndarray:
    """What the original module returns for ``frame``'s feature rows, as float64."""
    with torch.inference_mode():
        return np.asarray(module(tensor(features_of(frame)) if "target" in frame else tensor(frame)), dtype="float64")


@pytest.fixture(scope="module")
def cancer_net(cancer: pd.DataFrame) -> nn.Module:
    return classifier(cancer, 2)


@pytest.fixture(scope="module")
def cancer_logit(cancer: pd.DataFrame) -> nn.Module:
    return classifier(cancer, 1)


@pytest.fixture(scope="module")
def diabetes_net(diabetes: pd.DataFrame) -> nn.Module:
    return regressor(diabetes)


FORMATS = ["torchscript", "export"]


def program(kind: str, module: nn.Module, frame: pd.DataFrame) -> Any:
    """``module`` as the program a user registers: scripted, or exported with a dynamic batch."""
    return torch.jit.script(module) if kind == "torchscript" else export(module, frame)


def callable_of(registered: Any) -> Any:
    return registered.module() if isinstance(registered, torch.export.ExportedProgram) else registered


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", FORMATS)
def test_classifier_with_two_logits_round_trip(
    kind: str, cancer: pd.DataFrame, cancer_net: nn.Module, round_trip: Callable[..., Any]
) -> None:
    registered = program(kind, cancer_net, cancer)

    rt = round_trip(registered, cancer, name=f"cancer-{kind}")

    assert rt.version.flavor == "torch"
    assert rt.version.signature.outputs.task is Task.CLASSIFICATION
    assert rt.version.runtime.classes == (0, 1)
    assert rt.version.runtime.options == {
        "format": kind,
        "file": "model.pt" if kind == "torchscript" else "model.pt2",
        "device": "cpu",
        "output": "logits",
    }
    assert rt.version.lineage.requirements["torch"] == torch.__version__
    expected = softmax(outputs_of(callable_of(registered), cancer), axis=1)
    np.testing.assert_allclose(rt.loaded.predict_proba(rt.features), expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(expected, softmax(outputs_of(cancer_net, cancer), axis=1), rtol=0, atol=ATOL)
    labels = rt.loaded.predict(rt.features)
    np.testing.assert_array_equal(labels, expected.argmax(axis=1))
    assert (labels == cancer["target"]).mean() > 0.95  # it learned something: the comparison means something


@pytest.mark.parametrize("kind", FORMATS)
def test_classifier_with_one_logit_uses_a_sigmoid(
    kind: str, cancer: pd.DataFrame, cancer_logit: nn.Module, round_trip: Callable[..., Any]
) -> None:
    rt = round_trip(program(kind, cancer_logit, cancer), cancer, name="cancer-logit")

    positive = expit(outputs_of(cancer_logit, cancer)[:, 0])
    proba = rt.loaded.predict_proba(rt.features)
    np.testing.assert_allclose(proba, np.column_stack([1 - positive, positive]), rtol=0, atol=ATOL)
    np.testing.assert_array_equal(rt.loaded.predict(rt.features), (positive > 0.5).astype(int))


@pytest.mark.parametrize("kind", FORMATS)
def test_regressor_round_trip(
    kind: str, diabetes: pd.DataFrame, diabetes_net: nn.Module, round_trip: Callable[..., Any]
) -> None:
    registered = program(kind, diabetes_net, diabetes)

    rt = round_trip(registered, diabetes, name="diabetes-torch")

    assert rt.version.signature.outputs.task is Task.REGRESSION
    assert rt.version.runtime.classes is None
    assert "output" not in rt.version.runtime.options
    values = rt.loaded.predict(rt.features)
    assert values.shape == (len(diabetes),) and values.dtype == np.float64
    np.testing.assert_allclose(values, outputs_of(callable_of(registered), diabetes)[:, 0], rtol=ATOL)
    np.testing.assert_allclose(values, outputs_of(diabetes_net, diabetes)[:, 0], rtol=1e-5)
    assert np.corrcoef(values, diabetes["target"])[0, 1] > 0.6


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("rows", [1, 7, 300])
def test_any_batch_size(
    kind: str,
    rows: int,
    cancer: pd.DataFrame,
    cancer_net: nn.Module,
    diabetes: pd.DataFrame,
    diabetes_net: nn.Module,
    registry: Registry,
) -> None:
    registry.log_model(program(kind, cancer_net, cancer), name="c", training_data=cancer, target="target")
    registry.log_model(program(kind, diabetes_net, diabetes), name="d", training_data=diabetes, target="target")
    c, d = registry.load("c/1"), registry.load("d/1")
    cx, dx = features_of(cancer).tail(rows), features_of(diabetes).tail(rows)

    proba = c.predict_proba(cx)
    values = d.predict(dx)

    assert proba.shape == (rows, 2) and values.shape == (rows,)
    np.testing.assert_allclose(proba, softmax(outputs_of(cancer_net, cx), axis=1), rtol=0, atol=ATOL)
    np.testing.assert_allclose(values, outputs_of(diabetes_net, dx)[:, 0], rtol=1e-5)


def test_exported_batch_bound_is_kept_by_cutting_batches(
    cancer: pd.DataFrame, cancer_net: nn.Module, round_trip: Callable[..., Any]
) -> None:
    registered = export(cancer_net, cancer, max=16)
    with pytest.raises(Exception, match="<= 16"):  # the program itself refuses more rows
        registered.module()(tensor(features_of(cancer).head(17)))

    rt = round_trip(registered, cancer, name="bounded")

    assert isinstance(rt.loaded.runtime, TorchRuntime) and rt.loaded.runtime.batch_limit == 16
    proba = rt.loaded.predict_proba(rt.features.head(300))
    np.testing.assert_allclose(proba, softmax(outputs_of(cancer_net, cancer.head(300)), axis=1), rtol=0, atol=ATOL)


def test_multiclass_probabilities_with_named_classes_and_no_target(
    wine: pd.DataFrame, round_trip: Callable[..., Any], registry: Registry
) -> None:
    net = nn.Sequential(classifier(wine, 3), nn.Softmax(dim=1)).eval()  # the network returns probabilities
    names = ["barolo", "grignolino", "barbera"]  # output column order, not sorted
    features = features_of(wine)

    version = registry.log_model(
        torch.jit.script(net),
        name="wine",
        training_data=features,
        options={"output": "probabilities", "classes": names},
    )

    assert version.signature.outputs.task is Task.CLASSIFICATION
    assert version.runtime.classes == tuple(names)
    assert version.runtime.options["output"] == "probabilities"
    loaded = registry.load("wine/1")
    expected = outputs_of(net, features)
    np.testing.assert_allclose(loaded.predict_proba(features), expected, rtol=0, atol=ATOL)
    np.testing.assert_array_equal(loaded.predict(features), np.array(names, dtype=object)[expected.argmax(axis=1)])
    assert (loaded.predict(features) == wine["target"].map(dict(enumerate(names)))).mean() > 0.95


def row_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=1)


@pytest.fixture(scope="module")
def mean_of_row() -> torch.jit.ScriptFunction:
    with pytest.warns(DeprecationWarning, match="torch.jit.script"):
        return torch.jit.script(row_mean)


def test_script_function_round_trip(
    diabetes: pd.DataFrame, mean_of_row: torch.jit.ScriptFunction, round_trip: Callable[..., Any]
) -> None:
    assert isinstance(mean_of_row, torch.jit.ScriptFunction)

    rt = round_trip(mean_of_row, diabetes, name="mean-row")

    assert rt.version.runtime.options["format"] == "torchscript"
    np.testing.assert_allclose(
        rt.loaded.predict(rt.features), features_of(diabetes).mean(axis=1).to_numpy(), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_register_from_file(
    tmp_path: Path,
    kind: str,
    as_str: bool,
    cancer: pd.DataFrame,
    cancer_net: nn.Module,
    round_trip: Callable[..., Any],
) -> None:
    file = save_program(tmp_path, kind, program(kind, cancer_net, cancer))

    rt = round_trip(str(file) if as_str else file, cancer, name="from-file")

    assert rt.version.runtime.options["format"] == kind
    expected = softmax(outputs_of(cancer_net, cancer), axis=1)
    np.testing.assert_allclose(rt.loaded.predict_proba(rt.features), expected, rtol=0, atol=ATOL)


def save_program(folder: Path, kind: str, registered: Any, name: str | None = None) -> Path:
    file = folder / (name or ("model.pt" if kind == "torchscript" else "model.pt2"))
    if kind == "torchscript":
        with pytest.warns(DeprecationWarning, match="torch.jit.save"):
            torch.jit.save(registered, str(file))
    else:
        torch.export.save(registered, str(file))
    return file


@pytest.mark.parametrize(("kind", "name"), [("torchscript", "misnamed.pt2"), ("export", "misnamed.pt")])
def test_the_format_comes_from_the_bytes_not_the_name(
    tmp_path: Path, kind: str, name: str, cancer: pd.DataFrame, cancer_net: nn.Module, round_trip: Callable[..., Any]
) -> None:
    file = save_program(tmp_path, kind, program(kind, cancer_net, cancer), name)

    rt = round_trip(file, cancer, name="misnamed")

    assert rt.version.runtime.options["format"] == kind
    np.testing.assert_allclose(
        rt.loaded.predict_proba(rt.features), softmax(outputs_of(cancer_net, cancer), axis=1), atol=ATOL
    )


def test_detection(
    tmp_path: Path, cancer: pd.DataFrame, cancer_net: nn.Module, mean_of_row: torch.jit.ScriptFunction
) -> None:
    assert loader.DETECTION_ORDER.index("torch") < loader.DETECTION_ORDER.index("onnx")
    for model in (torch.jit.script(cancer_net), export(cancer_net, cancer), mean_of_row, cancer_net):
        assert loader.detect_flavor(model) == "torch", type(model)
    for name in ("m.pt", "m.pt2", "m.pth"):
        assert loader.detect_flavor(tmp_path / name) == "torch"
        assert loader.detect_flavor(str(tmp_path / name)) == "torch"
    assert not TorchRuntime.accepts(tmp_path / "m.onnx")
    assert not TorchRuntime.accepts(np.zeros(3))


# -- refused models and files ---------------------------------------------------------------


def test_plain_module_is_refused_with_what_to_do(
    cancer: pd.DataFrame, cancer_net: nn.Module, registry: Registry
) -> None:
    with pytest.raises(FlavorError) as caught:
        registry.log_model(cancer_net, name="plain", training_data=cancer, target="target")

    message = str(caught.value)
    assert "a plain torch.nn.Module (torch.nn.modules.container.Sequential) cannot be registered" in message
    assert "never unpickles" in message
    assert "torch.jit.script" in message and "torch.export.export" in message
    assert registry.list_models() == []


def test_other_torch_objects_are_refused(cancer: pd.DataFrame, registry: Registry) -> None:
    with pytest.raises(FlavorError, match=r"cannot register a torch\.Tensor: the torch flavor takes"):
        registry.log_model(torch.zeros(3), name="t", training_data=cancer, target="target", flavor="torch")


@pytest.mark.parametrize(
    "content", [b"", b"definitely not a zip \x00\xff", b"PK\x03\x04 but nothing after"], ids=["empty", "text", "magic"]
)
def test_a_file_that_is_not_a_zip_is_refused(
    tmp_path: Path, cancer: pd.DataFrame, registry: Registry, content: bytes
) -> None:
    file = tmp_path / "broken.pt"
    file.write_bytes(content)

    with pytest.raises(FlavorError, match=r"broken\.pt is not a zip archive, or is cut short"):
        registry.log_model(file, name="broken", training_data=cancer, target="target")

    assert registry.list_models() == []


@pytest.mark.parametrize("kind", FORMATS)
def test_a_truncated_file_is_refused(
    tmp_path: Path, kind: str, cancer: pd.DataFrame, cancer_net: nn.Module, registry: Registry
) -> None:
    file = save_program(tmp_path, kind, program(kind, cancer_net, cancer))
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])

    with pytest.raises(FlavorError, match="is not a zip archive, or is cut short"):
        registry.log_model(file, name="cut", training_data=cancer, target="target")

    assert registry.list_models() == []


def test_a_pickled_checkpoint_is_refused_unread(
    tmp_path: Path, cancer: pd.DataFrame, cancer_net: nn.Module, registry: Registry
) -> None:
    whole, weights = tmp_path / "whole.pt", tmp_path / "weights.pth"
    torch.save(cancer_net, whole)
    torch.save(cancer_net.state_dict(), weights)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"weights": [1.0]}, protocol=2))

    for file in (whole, weights):
        with pytest.raises(FlavorError, match=r"is a torch\.save checkpoint \(pickled Python objects\)"):
            registry.log_model(file, name="ckpt", training_data=cancer, target="target")
    with pytest.raises(FlavorError, match="starts like a pickle"):
        registry.log_model(legacy, name="ckpt", training_data=cancer, target="target")
    assert registry.list_models() == []


def test_an_unknown_zip_is_refused(tmp_path: Path, cancer: pd.DataFrame, registry: Registry) -> None:
    file = tmp_path / "other.pt"
    with zipfile.ZipFile(file, "w") as archive:
        archive.writestr("other/readme.txt", "hello")

    with pytest.raises(FlavorError, match=r"neither a TorchScript \(\.pt\) nor a torch\.export"):
        registry.log_model(file, name="zip", training_data=cancer, target="target")


class Touch:
    """Unpickled, it creates a file: a stand-in for code a hostile pickle would run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path.touch, (self.path,))


def rewritten(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    """A copy of the zip ``source`` with entries (named below its root folder) replaced or added."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        root = old.namelist()[0].split("/")[0]
        for name in old.namelist():
            inner = name[len(root) + 1 :]
            new.writestr(name, replace.pop(inner) if inner in replace else old.read(name))
        for inner, data in replace.items():
            new.writestr(f"{root}/{inner}", data)
    return target


@pytest.fixture
def exported_file(tmp_path: Path, cancer: pd.DataFrame, cancer_net: nn.Module) -> Path:
    return save_program(tmp_path, "export", export(cancer_net, cancer))


def test_a_pt2_with_a_hostile_pickle_is_refused_before_torch_reads_it(
    tmp_path: Path, exported_file: Path, cancer: pd.DataFrame, registry: Registry
) -> None:
    marker = tmp_path / "pwned"
    hostile = rewritten(
        exported_file, tmp_path / "hostile.pt2", {"data/sample_inputs/model.pt": pickle.dumps(Touch(marker))}
    )

    with pytest.raises(FlavorError, match=r"hostile\.pt2: holds 'data/sample_inputs/model\.pt', a pickle that torch's"):
        registry.log_model(hostile, name="hostile", training_data=cancer, target="target")
    spec = RuntimeSpec("torch", Task.CLASSIFICATION, (0, 1), {"format": "export", "file": "hostile.pt2"})
    with pytest.raises(ModelLoadError, match="a pickle that torch's weights-only loader refuses"):
        TorchRuntime.load(tmp_path, spec)

    assert not marker.exists()
    assert registry.list_models() == []


def test_the_pickle_check_matters(tmp_path: Path, exported_file: Path) -> None:
    """torch.export.load alone falls back to a full unpickle: the hostile payload runs."""
    marker = tmp_path / "pwned"
    hostile = rewritten(exported_file, tmp_path / "h.pt2", {"data/sample_inputs/model.pt": pickle.dumps(Touch(marker))})

    with pytest.raises(Exception):  # what matters is what ran before it failed
        torch.export.load(str(hostile))

    assert marker.exists()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("data/aotinductor/model/model.so", "not part of a plain torch.export program"),
        ("data/executorch/model.pte", "not part of a plain torch.export program"),
        ("data/weights/nested/weight_9", "not part of a plain torch.export program"),
    ],
)
def test_a_pt2_with_compiled_code_or_odd_entries_is_refused(
    tmp_path: Path, exported_file: Path, cancer: pd.DataFrame, registry: Registry, entry: str, message: str
) -> None:
    odd = rewritten(exported_file, tmp_path / "odd.pt2", {entry: b"\x7fELF"})

    with pytest.raises(FlavorError, match=message):
        registry.log_model(odd, name="odd", training_data=cancer, target="target")


def test_a_pt2_with_a_pickled_constant_is_refused(
    tmp_path: Path, exported_file: Path, cancer: pd.DataFrame, registry: Registry
) -> None:
    config = b'{"config": {"table": {"path_name": "opaque_obj_0", "is_param": false, "use_pickle": true}}}'
    odd = rewritten(
        exported_file,
        tmp_path / "odd.pt2",
        {"data/constants/model_constants_config.json": config, "data/constants/opaque_obj_0": b"x"},
    )

    with pytest.raises(FlavorError, match="holds the constant 'table' as a pickled Python object"):
        registry.log_model(odd, name="odd", training_data=cancer, target="target")


def test_a_static_batch_program_is_refused(cancer: pd.DataFrame, cancer_net: nn.Module, registry: Registry) -> None:
    static = torch.export.export(cancer_net, (tensor(features_of(cancer).head(4)),))

    with pytest.raises(FlavorError, match=r"takes batches of exactly 4 row\(s\).*torch\.export\.Dim\('batch'\)"):
        registry.log_model(static, name="static", training_data=cancer, target="target")

    assert registry.list_models() == []


def test_a_program_of_another_width_or_dtype_is_refused(
    cancer: pd.DataFrame, wine: pd.DataFrame, cancer_net: nn.Module, registry: Registry
) -> None:
    with pytest.raises(FlavorError, match="takes 30 features per row but the signature has 13 columns"):
        registry.log_model(export(cancer_net, cancer), name="w", training_data=wine, target="target")
    double = torch.export.export(
        nn.Linear(13, 3).double().eval(),
        (torch.zeros(4, 13, dtype=torch.float64),),
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    with pytest.raises(FlavorError, match=r"takes torch\.float64 input; corral sends float32"):
        registry.log_model(double, name="w", training_data=wine, target="target")


def test_a_classifier_with_the_wrong_number_of_outputs(wine: pd.DataFrame, registry: Registry) -> None:
    three = torch.jit.script(nn.Linear(13, 3).eval())
    two = torch.jit.script(nn.Linear(13, 2).eval())
    binary = wine[wine["target"] < 2]

    with pytest.raises(SchemaError, match=r"gives \(3,\) outputs per row but it has 2 classes \[0, 1\]"):
        registry.log_model(three, name="w", training_data=binary, target="target")
    with pytest.raises(SchemaError, match=r"gives \(2,\) outputs per row but it has 3 classes \[0, 1, 2\]"):
        registry.log_model(two, name="w", training_data=wine, target="target")
    assert registry.list_models() == []


def test_a_regressor_must_give_one_value_per_row(diabetes: pd.DataFrame, registry: Registry) -> None:
    with pytest.raises(SchemaError, match=r"returned \(2,\) values per row; a regression gives one"):
        registry.log_model(torch.jit.script(nn.Linear(10, 2)), name="r", training_data=diabetes, target="target")


def pair_of_outputs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.sum(dim=1), x.mean(dim=1)


def one_total(x: torch.Tensor) -> torch.Tensor:
    return x.sum()


def first_row(x: torch.Tensor) -> torch.Tensor:
    return x[:1, 0]


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (pair_of_outputs, "the torch model returned a tuple; corral expects one tensor per call"),
        (one_total, r"the torch model returned a single value for \d+ input rows"),
        (first_row, r"the torch model returned 1 rows for \d+ input rows"),
    ],
)
def test_outputs_that_are_not_one_row_per_input_are_refused(
    diabetes: pd.DataFrame, registry: Registry, function: Callable[..., Any], message: str
) -> None:
    with pytest.raises(SchemaError, match=message):
        registry.log_model(torch.jit.script(function), name="odd", training_data=diabetes, target="target")

    assert registry.list_models() == []


# -- options ---------------------------------------------------------------------------------


def test_unknown_option_is_refused(cancer: pd.DataFrame, cancer_net: nn.Module, registry: Registry) -> None:
    with pytest.raises(
        FlavorError, match=r"torch does not take option\(s\) batch_size; it takes: classes, device, output"
    ):
        registry.log_model(
            torch.jit.script(cancer_net), name="o", training_data=cancer, target="target", options={"batch_size": 8}
        )


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:x", "CPU", 0, None])
def test_unknown_device_is_refused(
    cancer: pd.DataFrame, cancer_net: nn.Module, registry: Registry, device: Any
) -> None:
    with pytest.raises(FlavorError, match=r"torch device must be 'cpu', 'cuda' or 'cuda:<index>', got "):
        registry.log_model(
            torch.jit.script(cancer_net), name="o", training_data=cancer, target="target", options={"device": device}
        )


def test_unknown_stored_device_is_a_load_error(tmp_path: Path, cancer: pd.DataFrame, cancer_net: nn.Module) -> None:
    save_program(tmp_path, "torchscript", torch.jit.script(cancer_net))
    spec = RuntimeSpec(
        "torch", Task.CLASSIFICATION, (0, 1), {"format": "torchscript", "file": "model.pt", "device": "mps"}
    )

    with pytest.raises(ModelLoadError, match="torch device must be 'cpu', 'cuda' or 'cuda:<index>', got 'mps'"):
        TorchRuntime.load(tmp_path, spec)


@pytest.mark.parametrize("output", ["softmax", "proba", None])
def test_wrong_output_value_is_refused(
    cancer: pd.DataFrame, cancer_net: nn.Module, registry: Registry, output: Any
) -> None:
    with pytest.raises(FlavorError, match=r"torch option output must be 'logits' or 'probabilities', got "):
        registry.log_model(
            torch.jit.script(cancer_net), name="o", training_data=cancer, target="target", options={"output": output}
        )


def test_output_is_for_classifiers_only(diabetes: pd.DataFrame, diabetes_net: nn.Module, registry: Registry) -> None:
    with pytest.raises(FlavorError, match="but this model's task is regression"):
        registry.log_model(
            torch.jit.script(diabetes_net),
            name="o",
            training_data=diabetes,
            target="target",
            options={"output": "logits"},
        )


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (["a"], "must list at least two distinct labels"),
        (["a", "a"], "must list at least two distinct labels"),
        ("ab", "must list at least two distinct labels"),
        (["benign", "malignant"], r"differ from the training target's classes \[0, 1\]"),
    ],
)
def test_bad_classes_are_refused(
    cancer: pd.DataFrame, cancer_net: nn.Module, registry: Registry, classes: Any, message: str
) -> None:
    with pytest.raises(FlavorError, match=message):
        registry.log_model(
            torch.jit.script(cancer_net), name="o", training_data=cancer, target="target", options={"classes": classes}
        )


def test_text_features_are_refused(cancer: pd.DataFrame, cancer_net: nn.Module, registry: Registry) -> None:
    frame = cancer.assign(colour="red")

    with pytest.raises(FlavorError, match="torch models take numbers; these feature columns are not: colour"):
        registry.log_model(
            torch.jit.script(nn.Linear(31, 2)), name="o", training_data=frame, target="target", flavor="torch"
        )


# -- devices -----------------------------------------------------------------------------------


@pytest.mark.skipif(HAS_CUDA, reason="a GPU is visible: the no-GPU refusal cannot be seen here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_a_load_error(
    cancer: pd.DataFrame, cancer_net: nn.Module, registry: Registry, device: str
) -> None:
    with pytest.raises(ModelLoadError) as caught:
        registry.log_model(
            torch.jit.script(cancer_net), name="gpu", training_data=cancer, target="target", options={"device": device}
        )

    message = str(caught.value)
    assert f"device {device!r} but no GPU is visible here (torch.cuda.is_available() is False" in message
    assert "options={'device': 'cpu'}" in message
    assert registry.list_models() == []


@pytest.mark.skipif(not HAS_CUDA, reason="no GPU visible")
@pytest.mark.parametrize("kind", FORMATS)
def test_cuda_predictions_match_the_cpu(
    kind: str, cancer: pd.DataFrame, cancer_net: nn.Module, registry: Registry
) -> None:
    registered = program(kind, cancer_net, cancer)
    registry.log_model(registered, name="cpu", training_data=cancer, target="target")
    version = registry.log_model(
        registered, name="gpu", training_data=cancer, target="target", options={"device": "cuda"}
    )

    assert version.runtime.options["device"] == "cuda"
    gpu, cpu = registry.load("gpu/1"), registry.load("cpu/1")
    assert isinstance(gpu.runtime, TorchRuntime) and gpu.runtime.device == "cuda"
    for rows in (1, 7, 300):
        x = features_of(cancer).head(rows)
        np.testing.assert_allclose(gpu.predict_proba(x), cpu.predict_proba(x), rtol=0, atol=1e-4)
    spec = RuntimeSpec("torch", Task.CLASSIFICATION, (0, 1), {**version.runtime.options, "device": "cuda:99"})
    with pytest.raises(ModelLoadError, match=r"device 'cuda:99' but only \d+ GPU\(s\) are visible"):
        TorchRuntime.load(Path("unused"), spec)


# -- stored files --------------------------------------------------------------------------------


def test_garbage_stored_file_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"garbage")
    spec = RuntimeSpec("torch", Task.REGRESSION, options={"format": "torchscript", "file": "model.pt", "device": "cpu"})

    with pytest.raises(ModelLoadError, match=r"model\.pt is not a zip archive"):
        TorchRuntime.load(tmp_path, spec)


def test_a_stored_file_of_the_other_format_is_a_load_error(tmp_path: Path, exported_file: Path) -> None:
    spec = RuntimeSpec("torch", Task.REGRESSION, options={"format": "torchscript", "file": exported_file.name})

    with pytest.raises(ModelLoadError, match="holds a export program, not the torchscript program its spec says"):
        TorchRuntime.load(tmp_path, spec)


def test_a_damaged_member_is_a_load_error(tmp_path: Path, exported_file: Path) -> None:
    broken = rewritten(exported_file, tmp_path / "b.pt2", {"models/model.json": b"{not json"})
    spec = RuntimeSpec("torch", Task.REGRESSION, options={"format": "export", "file": broken.name})

    with pytest.raises(ModelLoadError, match=r"torch could not load b\.pt2 on cpu"):
        TorchRuntime.load(tmp_path, spec)


# -- serving ---------------------------------------------------------------------------------------


def test_served_with_batching_each_request_gets_its_own_rows(
    tmp_path: Path, cancer: pd.DataFrame, cancer_net: nn.Module, registry: Registry
) -> None:
    registry.log_model(export(cancer_net, cancer), name="cancer", training_data=cancer, target="target")
    registry.promote("cancer", 1)
    deployments = Deployments(MemoryDeploymentStore(registry.store), actor="t")
    deployments.create("api", model="cancer", batching=BatchingPolicy(enabled=True, max_batch_size=512, max_wait_ms=5))
    server = ModelServer(deployments.store, registry, refresh_seconds=60)
    features = features_of(cancer)
    # requests over 16 rows never run inline on the event loop: they queue while a batch runs, and coalesce
    requests = [features.iloc[i * 17 : i * 17 + 17 + i % 3] for i in range(30)]

    async def scenario() -> list[Any]:
        await server.start()
        try:
            return await asyncio.gather(*(server.predict("api", rows) for rows in requests))
        finally:
            await server.stop()

    results = asyncio.run(asyncio.wait_for(scenario(), 60))

    for rows, result in zip(requests, results, strict=True):
        expected = softmax(outputs_of(cancer_net, rows), axis=1)
        np.testing.assert_allclose(result.prediction.probabilities, expected, rtol=0, atol=ATOL)
        np.testing.assert_array_equal(result.prediction.values, expected.argmax(axis=1))
        assert result.model == "cancer" and result.version == 1
    assert max(r.batch_size for r in results) > max(len(rows) for rows in requests)  # requests were coalesced


def test_module_name_does_not_shadow_torch() -> None:
    import corral.runtimes.torch as runtime

    assert runtime.__name__ == "corral.runtimes.torch"
    assert torch.__name__ == "torch" and hasattr(torch, "jit")
