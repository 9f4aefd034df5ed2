"""ONNX external data: tensors kept in files beside the graph must stay inside the model's folder.

The graphs are crafted with ``onnx.helper``: ``y = x + W`` where ``W`` (one float) lives in an external file
named by its ``location``. A hostile graph names ``../../etc/passwd`` or ``/etc/passwd``, or a link leading
out; it is refused when registered and again when loaded, before onnxruntime opens anything.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from onnx import ModelProto, TensorProto, helper

from corral.core.schema import FeatureKind, FeatureSpec, OutputSpec, Signature, Task
from corral.errors import FlavorError, UnsafeArtifactError
from corral.registry.entities import Lineage, ModelVersion
from corral.registry.packaging import pack, unpack
from corral.registry.service import Registry
from corral.runtimes.base import RuntimeSpec
from corral.runtimes.onnx import OnnxRuntime, external_data

SIGNATURE = Signature(
    (FeatureSpec("x", "float64", FeatureKind.NUMERICAL, min=0.0, max=10.0),), OutputSpec(Task.REGRESSION, "float64")
)
FRAME = pd.DataFrame({"x": [0.0, 1.5, 7.0]})


def external(name: str, location: str) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[1], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "4")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def add_model(location: str, *, as_constant: bool = False) -> ModelProto:
    """``y = x + W``, ``W`` stored at ``location`` (as an initializer, or inside a Constant node)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])
    weight = external("W", location)
    nodes = [helper.make_node("Add", ["x", "W"], ["y"])]
    initializers = [weight]
    if as_constant:
        nodes.insert(0, helper.make_node("Constant", [], ["W"], value=weight))
        initializers = []
    graph = helper.make_graph(nodes, "add", [x], [y], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def write(folder: Path, location: str, *, weight: float | None = 2.0, **kw: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "model.onnx"
    file.write_bytes(add_model(location, **kw).SerializeToString())
    if weight is not None and not Path(location).is_absolute() and ".." not in location:
        (folder / location).parent.mkdir(parents=True, exist_ok=True)
        (folder / location).write_bytes(np.float32(weight).tobytes())
    return file


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside every model folder, holding four bytes a hostile graph would read as its weight."""
    path = tmp_path / "outside" / "secret"
    path.parent.mkdir()
    path.write_bytes(np.float32(1234.0).tobytes())
    return path


# -- a model with its data beside it is fine ---------------------------------------------------


def test_a_model_with_external_data_in_its_folder_registers_and_loads(tmp_path: Path, registry: Registry) -> None:
    file = write(tmp_path / "src", "data/weights.bin", weight=2.0)

    version = registry.log_model(file, name="add", signature=SIGNATURE)

    loaded = registry.load("add/1")
    np.testing.assert_allclose(loaded.predict(FRAME), [2.0, 3.5, 9.0])
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    unpack(registry.artifacts.get(version.artifact_sha256), unpacked)
    assert sorted(p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()) == [
        "data/weights.bin",
        "model.onnx",
    ]


# -- hostile locations, at registration ------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("../../etc/passwd", "a '..' part"),
        ("/etc/passwd", "an absolute path"),
        ("data/../../secret", "a '..' part"),
        ("C:\\Windows\\win.ini", "an absolute path"),
        ("..\\secret", "a '..' part"),
    ],
)
@pytest.mark.parametrize("as_constant", [False, True], ids=["initializer", "constant"])
def test_a_location_outside_the_folder_is_refused_at_registration(
    tmp_path: Path, registry: Registry, location: str, why: str, as_constant: bool
) -> None:
    file = write(tmp_path / "src", location, as_constant=as_constant)

    with pytest.raises(UnsafeArtifactError, match=re.escape(f"keeps tensor data at {location!r}, {why}")) as caught:
        registry.log_model(file, name="evil", signature=SIGNATURE)

    assert "must stay inside the model's folder" in str(caught.value)
    assert registry.list_models() == []
    assert not [p for p in Path(registry.artifacts.url).rglob("*") if p.is_file()]  # not even a blob


def test_a_link_leading_out_of_the_folder_is_refused(tmp_path: Path, registry: Registry, secret: Path) -> None:
    folder = tmp_path / "src"
    file = write(folder, "weights.bin", weight=None)
    (folder / "weights.bin").symlink_to(secret)

    with pytest.raises(UnsafeArtifactError, match=r"'weights\.bin', a link leading out of the folder"):
        registry.log_model(file, name="evil", signature=SIGNATURE)
    assert registry.list_models() == []


def test_a_model_object_with_external_data_is_refused(registry: Registry) -> None:
    with pytest.raises(FlavorError, match="keeps tensors in external data files, which an object in memory cannot"):
        registry.log_model(add_model("weights.bin"), name="obj", signature=SIGNATURE)
    with pytest.raises(UnsafeArtifactError, match="'/etc/passwd', an absolute path"):
        registry.log_model(add_model("/etc/passwd"), name="obj", signature=SIGNATURE)
    assert registry.list_models() == []


# -- hostile locations, at load (an artifact crafted past registration) ---------------------------


def crafted_version(registry: Registry, folder: Path) -> ModelVersion:
    """Store ``folder`` as an artifact and a version of ``evil`` pointing at it, bypassing registration."""
    archive = pack(folder)
    draft = ModelVersion(
        name="evil",
        version=0,
        flavor="onnx",
        artifact_sha256=registry.artifacts.put(archive),
        artifact_size=len(archive),
        signature=SIGNATURE,
        runtime=RuntimeSpec("onnx", Task.REGRESSION, options={"file": "model.onnx"}),
        lineage=Lineage(),
        created_by="mallory",
        created_at=datetime.now(UTC),
    )
    return registry.store.create_version(draft, None)


@pytest.mark.parametrize(
    ("location", "why"), [("../../etc/passwd", "a '..' part"), ("/etc/passwd", "an absolute path")]
)
def test_a_location_outside_the_folder_is_refused_at_load(
    tmp_path: Path, registry: Registry, location: str, why: str
) -> None:
    crafted_version(registry, write(tmp_path / "artifact", location).parent)

    with pytest.raises(UnsafeArtifactError, match=re.escape(f"keeps tensor data at {location!r}, {why}")):
        registry.load("evil/1")


def test_the_load_check_sees_links_too(tmp_path: Path, secret: Path) -> None:
    """An artifact cannot carry a link (unpacking refuses it), but the runtime checks its folder itself too."""
    folder = tmp_path / "model"
    write(folder, "weights.bin", weight=None)
    (folder / "weights.bin").symlink_to(secret)
    spec = RuntimeSpec("onnx", Task.REGRESSION, options={"file": "model.onnx"})

    with pytest.raises(UnsafeArtifactError, match="a link leading out of the folder"):
        OnnxRuntime.load(folder, spec)
    assert external_data(write(tmp_path / "fine", "w.bin")) == ["w.bin"]


def test_without_the_onnx_package_external_data_is_refused_unchecked(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch, hide_onnx: Callable[[], None]
) -> None:
    file = write(tmp_path / "src", "weights.bin")
    hide_onnx()

    with pytest.raises(UnsafeArtifactError, match="the onnx package is not installed to check where they are"):
        registry.log_model(file, name="add", signature=SIGNATURE)


@pytest.fixture
def hide_onnx(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    def hide() -> None:
        monkeypatch.setitem(sys.modules, "onnx", None)

    return hide


def test_a_crafted_version_with_its_data_inside_loads(tmp_path: Path, registry: Registry) -> None:
    """Guards the load tests above: the crafted versions fail for their locations, nothing else."""
    version = crafted_version(registry, write(tmp_path / "artifact", "w.bin").parent)
    assert version.flavor == "onnx"
    np.testing.assert_allclose(registry.load("evil/1").predict(FRAME), [2.0, 3.5, 9.0])
