"""ONNX models run by onnxruntime on the CPU.

Two input layouts are understood: one 2-D tensor holding every feature in
signature order (what most converters emit), or one ``[N, 1]`` input per
feature column named like the column. Classifiers from skl2onnx return a label
tensor and probabilities either as a tensor or as a list of ``{class: p}``
maps (ZipMap); both come out as one probability matrix, its columns in the
order of the class labels the graph declares (read with the ``onnx`` package
when installed; otherwise the training target's classes are used).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from corral.core.schema import Signature, Task
from corral.errors import FlavorError, ModelLoadError, SchemaError
from corral.runtimes.base import Prediction, RuntimeSpec, check_options, from_framework, plain_classes

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
            return str(model).endswith(".onnx")
        return from_framework(model, "onnx")

    @classmethod
    def save(
        cls, model: Any, path: Path, *, signature: Signature | None = None, options: Mapping[str, Any] | None = None
    ) -> RuntimeSpec:
        check_options(cls.flavor, options, set())
        target = path / _FILE
        if isinstance(model, str | Path):
            if not Path(model).is_file():
                raise FlavorError(f"ONNX file {str(model)!r} does not exist")
            shutil.copyfile(model, target)
            source = Path(model).name
        else:
            target.write_bytes(model.SerializeToString())
            source = "the ONNX model"
        try:
            return cls.describe(path, _FILE, signature)
        except FlavorError as exc:
            raise FlavorError(f"{source}: {exc}") from exc

    @classmethod
    def describe(cls, folder: Path, file: str, signature: Signature | None) -> RuntimeSpec:
        """The spec of the ONNX graph ``folder/file``: a classifier or a regressor, from its outputs.

        Also used for ONNX models inside MLflow directories, so both paths agree.

        Raises:
            FlavorError: when the file is not a valid ONNX model, or is a
                classifier whose classes are unknown or differ from the
                signature's.
        """
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
        try:
            return cls(_session(str(path / spec.options["file"])), spec)
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
