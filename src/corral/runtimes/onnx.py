"""ONNX models run by onnxruntime on the CPU.

Two input layouts are understood: one 2-D tensor holding every feature in
signature order (what most converters emit), or one ``[N, 1]`` input per
feature column named like the column. Classifiers from skl2onnx return a label
tensor and probabilities either as a tensor or as a list of ``{class: p}``
maps (ZipMap); both come out as one probability matrix, its columns in the
order of the class labels the graph declares (read with the ``onnx`` package
when installed; otherwise the training target's classes are used).

A file is an ONNX model when its bytes parse as one, whatever its name (a pickle named ``.onnx`` is refused
as a pickle). A graph may keep tensors in external data files; every ``location`` must name a file inside
the model's folder (no absolute path, no ``..``, no link leading out), checked when the model is registered
(its external files are then copied into the artifact) and again before every load, so onnxruntime never
reads a file outside the artifact.
"""

from __future__ import annotations

import itertools
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path, PureWindowsPath
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from corral.core.schema import Signature, Task
from corral.errors import FlavorError, ModelLoadError, SchemaError, UnsafeArtifactError
from corral.runtimes.base import Prediction, RuntimeSpec, check_options, from_framework, plain_classes
from corral.runtimes.loader import ONNX, describe, sniff

_FILE = "model.onnx"
_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def _graph_classes(file: Path) -> tuple[Any, ...] | None:
    """The class labels a classifier graph declares, in its probability-column order.

    Read from the ZipMap node, else the last ``*Classifier`` node (skl2onnx and
    onnxmltools write ``classlabels_*`` on both). ``None`` when the ``onnx``
    package is not installed or the graph declares no labels.
    """
    try:
        import onnx
    except ImportError:
        return None
    try:
        graph = onnx.load(str(file), load_external_data=False).graph
    except Exception:
        return None
    nodes = [n for n in graph.node if n.op_type == "ZipMap"] or [
        n for n in graph.node if n.op_type.endswith("Classifier")
    ][-1:]
    for node in nodes:
        for attr in node.attribute:
            if attr.name in ("classlabels_int64s", "classlabels_ints") and len(attr.ints):
                return tuple(int(v) for v in attr.ints)
            if attr.name == "classlabels_strings" and len(attr.strings):
                return tuple(v.decode("utf-8") for v in attr.strings)
    return None


def _external_tensors(model: Any) -> Iterator[Any]:
    """Every tensor of a ModelProto that names external data: initializers, constants, subgraphs, functions."""

    def graph_tensors(graph: Any) -> Iterator[Any]:
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        for node in graph.node:
            yield from attribute_tensors(node.attribute)

    def attribute_tensors(attributes: Any) -> Iterator[Any]:
        for attr in attributes:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
            for sparse in attr.sparse_tensors:
                yield from (sparse.values, sparse.indices)
            if attr.HasField("g"):
                yield from graph_tensors(attr.g)
            for graph in attr.graphs:
                yield from graph_tensors(graph)

    nodes = [node for function in model.functions for node in function.node]
    tensors = itertools.chain(graph_tensors(model.graph), *(attribute_tensors(n.attribute) for n in nodes))
    for tensor in tensors:
        if tensor.data_location == 1 or len(tensor.external_data):  # TensorProto.EXTERNAL
            yield tensor


def external_data(file: Path) -> list[str]:
    """The external data locations of the ONNX model ``file``, each checked to stay inside its folder.

    Locations are relative to the model file's folder, as onnxruntime reads them.

    Raises:
        UnsafeArtifactError: a location that is absolute, holds ``..``, or leads out of the folder through a
            link; or, without the ``onnx`` package to read the graph, a model that may name external data.
        FlavorError: the graph cannot be parsed.
    """
    try:
        import onnx
    except ImportError:
        if b"\n\x08location" in file.read_bytes():  # the key of an external_data entry
            raise UnsafeArtifactError(
                f"{file.name} may keep tensors in external data files, and the onnx package is not installed "
                "to check where they are: pip install onnx"
            ) from None
        return []
    try:
        model = onnx.load(str(file), load_external_data=False)
    except Exception as exc:
        raise FlavorError(f"not a valid ONNX model: {exc}") from exc
    locations = []
    for tensor in _external_tensors(model):
        found = [entry.value for entry in tensor.external_data if entry.key == "location"]
        if not found:
            raise UnsafeArtifactError(f"{file.name}: tensor {tensor.name!r} is external but names no location")
        _check_location(file, found[-1])
        locations.append(found[-1])
    return sorted(set(locations))


def _check_location(file: Path, location: str) -> None:
    folder = file.parent
    why = None
    if not location:
        why = "an empty location"
    elif "\x00" in location:
        why = "a NUL character"
    elif (
        location.startswith(("/", "\\")) or PureWindowsPath(location).is_absolute() or re.match(r"^[A-Za-z]:", location)
    ):
        why = "an absolute path"
    elif ".." in re.split(r"[\\/]", location):
        why = "a '..' part"
    else:
        try:
            resolved = (folder / location).resolve()
            root = folder.resolve()
        except (OSError, RuntimeError):
            why = "a path that does not resolve"
        else:
            if root not in resolved.parents:
                why = "a link leading out of the folder"
    if why is not None:
        raise UnsafeArtifactError(
            f"{file.name} keeps tensor data at {location!r}, {why}: external data must stay inside the model's "
            "folder, so refusing it. Save the model with its data beside it "
            "(onnx.save(model, path, save_as_external_data=True, location='weights.bin'))"
        )


def _check_file(file: Path, error: type[FlavorError]) -> None:
    """Refuse a file whose bytes are not an ONNX model, naming what they are (``NAME: not a valid ...``)."""
    try:
        fmt = sniff(file)
    except OSError as exc:
        raise error(f"{file.name}: cannot be read: {exc}") from exc
    if fmt != ONNX:
        raise error(f"{file.name}: not a valid ONNX model: its bytes are {describe(fmt)}, whatever its name says")


def _session(source: bytes | str) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxRuntime:
    """Runtime for ONNX graphs."""

    flavor: ClassVar[str] = "onnx"
    requirements: ClassVar[tuple[str, ...]] = ("onnxruntime", "numpy")

    def __init__(self, session: Any, spec: RuntimeSpec) -> None:
        self.session = session
        self.spec = spec
        self.inputs = session.get_inputs()
        self.outputs = [o.name for o in session.get_outputs()]

    @classmethod
    def accepts(cls, model: Any) -> bool:
        if isinstance(model, str | Path):
            if Path(model).is_file():  # its bytes decide; a missing file is named when it is saved
                try:
                    return sniff(Path(model)) == ONNX
                except OSError:
                    return False
            return str(model).endswith(".onnx")
        return from_framework(model, "onnx")

    @classmethod
    def save(
        cls, model: Any, path: Path, *, signature: Signature | None = None, options: Mapping[str, Any] | None = None
    ) -> RuntimeSpec:
        check_options(cls.flavor, options, set())
        target = path / _FILE
        if isinstance(model, str | Path):
            file = Path(model)
            if not file.is_file():
                raise FlavorError(f"ONNX file {str(model)!r} does not exist")
            _check_file(file, FlavorError)
            locations = external_data(file)
            shutil.copyfile(file, target)
            for location in locations:  # the external data files travel inside the artifact
                (path / location).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file.parent / location, path / location)
            source = file.name
        else:
            target.write_bytes(model.SerializeToString())
            source = "the ONNX model"
            if external_data(target):
                raise FlavorError(
                    "the ONNX model keeps tensors in external data files, which an object in memory cannot bring "
                    "along: register the .onnx file's path instead, its external data files beside it"
                )
        try:
            return cls.describe(path, _FILE, signature)
        except FlavorError as exc:
            raise type(exc)(f"{source}: {exc}") from exc

    @classmethod
    def describe(cls, folder: Path, file: str, signature: Signature | None) -> RuntimeSpec:
        """The spec of the ONNX graph ``folder/file``: a classifier or a regressor, from its outputs.

        Also used for ONNX models inside MLflow directories, so both paths agree.

        Raises:
            FlavorError: when the file is not a valid ONNX model, or is a
                classifier whose classes are unknown or differ from the
                signature's.
        """
        external_data(folder / file)  # before onnxruntime opens any of them
        try:
            session = _session(str(folder / file))
        except Exception as exc:
            raise FlavorError(f"not a valid ONNX model: {exc}") from exc
        outputs = session.get_outputs()
        classes = signature.outputs.classes if signature is not None else None
        looks_like_classifier = len(outputs) >= 2 and (
            "seq(map" in outputs[1].type or outputs[1].name in ("probabilities", "output_probability")
        )
        if looks_like_classifier:
            declared = _graph_classes(folder / file)
            if declared is not None and classes is not None and set(declared) != set(classes):
                raise FlavorError(
                    f"the ONNX classifier predicts classes {list(declared)} but the training target "
                    f"has classes {list(classes)}"
                )
            classes = declared if declared is not None else classes  # the graph's order is its columns' order
            if classes is None:
                raise FlavorError(
                    "an ONNX classifier needs its classes and this graph does not declare them (or the onnx "
                    "package is not installed to read them): register it with training data and a target"
                )
            shape = outputs[1].shape if "seq(map" not in outputs[1].type else None
            if shape is not None and len(shape) == 2 and isinstance(shape[1], int) and shape[1] != len(classes):
                raise FlavorError(
                    f"the ONNX classifier gives {shape[1]} probabilities per row but the training target "
                    f"has {len(classes)} classes {list(classes)}"
                )
            return RuntimeSpec(cls.flavor, Task.CLASSIFICATION, plain_classes(classes), {"file": file})
        return RuntimeSpec(cls.flavor, Task.REGRESSION, options={"file": file})

    @classmethod
    def load(cls, path: Path, spec: RuntimeSpec, *, trusted: bool = False) -> Self:
        """Load the stored graph after checking its bytes are ONNX and its external data stays in ``path``.

        Raises:
            UnsafeArtifactError: the file is not an ONNX model, or names external data outside the folder.
            ModelLoadError: onnxruntime cannot load it.
        """
        file = path / spec.options["file"]
        _check_file(file, UnsafeArtifactError)
        try:
            external_data(file)
        except UnsafeArtifactError:
            raise
        except FlavorError as exc:
            raise ModelLoadError(f"{spec.options['file']}: {exc}") from exc
        try:
            return cls(_session(str(file)), spec)
        except Exception as exc:
            raise ModelLoadError(f"onnxruntime could not load {spec.options['file']}: {exc}") from exc

    def _feeds(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        if len(self.inputs) == 1 and self.inputs[0].name not in frame.columns:
            spec = self.inputs[0]
            return {spec.name: frame.to_numpy(dtype=_TYPES.get(spec.type, np.float32))}
        feeds = {}
        for spec in self.inputs:
            if spec.name not in frame.columns:
                raise SchemaError(f"the ONNX graph has an input {spec.name!r} that is not a feature column")
            column = frame[spec.name].to_numpy()
            feeds[spec.name] = column.astype(_TYPES.get(spec.type, np.float32)).reshape(-1, 1)
        return feeds

    def predict(self, frame: pd.DataFrame) -> Prediction:
        results = self.session.run(None, self._feeds(frame))
        if self.spec.task is not Task.CLASSIFICATION:
            values = np.asarray(results[0], dtype="float64")
            return Prediction(values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values)
        labels = np.asarray(results[0]).ravel()
        classes = self.spec.classes or ()
        raw = results[1]
        if isinstance(raw, list):
            missing = [c for c in classes if raw and c not in raw[0]]
            if missing:
                raise SchemaError(f"the ONNX classifier's probability maps have no class {missing[0]!r}")
            proba = np.array([[row[c] for c in classes] for row in raw], dtype="float64")
        else:
            proba = np.asarray(raw, dtype="float64")
        return Prediction(labels, proba, classes)
