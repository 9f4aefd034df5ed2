"""Flavor names to runtime classes, imported lazily; model files recognised by their bytes.

The frameworks are heavy to import; a runtime module is imported only when
its flavor is used. ``tests/unit/runtimes/test_loader.py`` fails when a
runtime module exists that is not listed here.

A model file is what its bytes say, never what its name says (:func:`sniff`):
a ``.skops`` file that is really a pickle is a pickle, and needs trust like one.
"""

from __future__ import annotations

import importlib
import pickletools
import zipfile
from pathlib import Path
from typing import Any

from corral.errors import UnknownFlavorError
from corral.runtimes.base import ModelRuntime, RuntimeSpec

RUNTIMES: dict[str, str] = {
    "sklearn": "corral.runtimes.sklearn:SklearnRuntime",
    "xgboost": "corral.runtimes.xgboost:XGBoostRuntime",
    "lightgbm": "corral.runtimes.lightgbm:LightGBMRuntime",
    "onnx": "corral.runtimes.onnx:OnnxRuntime",
    "torch": "corral.runtimes.torch:TorchRuntime",
    "python": "corral.runtimes.custom:CustomRuntime",
    "mlflow": "corral.runtimes.mlflow:MlflowRuntime",
    "external": "corral.runtimes.external:ExternalRuntime",
}

# Most specific first: XGBoost and LightGBM models are also scikit-learn
# estimators, and anything with save/load/predict passes as a custom model.
DETECTION_ORDER = ("mlflow", "xgboost", "lightgbm", "torch", "onnx", "sklearn", "external", "python")


def known_flavors() -> list[str]:
    return sorted(RUNTIMES)


def runtime_class(flavor: str) -> type[ModelRuntime]:
    """The runtime class for ``flavor``.

    Raises:
        UnknownFlavorError: naming the flavor and the known ones.
    """
    target = RUNTIMES.get(flavor)
    if target is None:
        raise UnknownFlavorError(f"unknown flavor {flavor!r}; known flavors: {', '.join(known_flavors())}")
    module, _, name = target.partition(":")
    cls: type[ModelRuntime] = getattr(importlib.import_module(module), name)
    return cls


def detect_flavor(model: Any) -> str:
    """Which flavor handles ``model`` (an object or a path).

    A file is recognised by its bytes (:func:`sniff`), whatever its name: a pickle or a joblib file is
    ``sklearn`` (and needs trust), a skops zip ``sklearn``, an ONNX protobuf ``onnx``, a TorchScript or
    torch.export zip ``torch``. Folders (MLflow) and paths that do not exist yet go by the runtimes' rules.

    Raises:
        UnknownFlavorError: when no runtime accepts it, naming what a file's bytes are.
    """
    if isinstance(model, str | Path) and Path(model).is_file():
        return _flavor_of_file(Path(model))
    for flavor in DETECTION_ORDER:
        if runtime_class(flavor).accepts(model):
            return flavor
    if isinstance(model, str | Path):
        raise UnknownFlavorError(
            f"corral does not know how to load the model path {str(model)!r}: it takes an MLflow model "
            "directory (with an MLmodel file) or a .onnx, .skops, .pkl, .pickle or .joblib file; "
            f"pass flavor= one of {', '.join(known_flavors())} if the name misleads"
        )
    raise UnknownFlavorError(
        f"corral does not know how to save a {type(model).__module__}.{type(model).__qualname__}; "
        f"pass flavor= one of {', '.join(known_flavors())}, or wrap it in a class with save/load/predict"
    )


# -- what a file's bytes are ------------------------------------------------------------------

PICKLE = "pickle"
COMPRESSED = "compressed"
SKOPS = "skops"
TORCH = "torch"
ZIP = "zip"
BROKEN_ZIP = "broken-zip"
ONNX = "onnx"
EMPTY = "empty"
UNKNOWN = "unknown"

PICKLED = frozenset({PICKLE, COMPRESSED})
"""Formats that joblib.load would unpickle: loading them can run any code."""

_DESCRIPTIONS = {
    PICKLE: "a pickle (loading it can run any code)",
    COMPRESSED: "a compressed stream, as joblib writes compressed pickles (loading it can run any code)",
    SKOPS: "a skops file (a zip archive with a schema.json)",
    TORCH: "a PyTorch zip archive",
    ZIP: "a zip archive that is not a skops file (it has no schema.json)",
    BROKEN_ZIP: "a damaged or truncated zip archive",
    ONNX: "an ONNX model",
    EMPTY: "empty",
    UNKNOWN: "not a format corral recognises (pickle, joblib, skops, ONNX, TorchScript)",
}

_FILE_FLAVORS = {PICKLE: "sklearn", COMPRESSED: "sklearn", SKOPS: "sklearn", ONNX: "onnx", TORCH: "torch"}
_NAMED = {
    **dict.fromkeys((".skops", ".pkl", ".pickle", ".joblib"), "sklearn"),
    ".onnx": "onnx",
    **dict.fromkeys((".pt", ".pt2", ".pth"), "torch"),
}

# joblib.load decompresses a file starting with one of these, then unpickles it (joblib/compressor.py)
_COMPRESSED_MAGIC = (b"ZF", b"\x78", b"\x1f\x8b", b"BZ", b"\xfd\x37\x7a\x58\x5a", b"\x5d\x00", b"\x04\x22\x4d\x18")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_ONNX_MAX_BYTES = 2**31  # protobuf's limit: a bigger file cannot be one ModelProto


def sniff(file: Path) -> str:
    """What ``file`` is, read from its bytes (never its name): one of the format constants of this module.

    Pickles of protocol 2 and later start with the ``PROTO`` opcode (``\\x80``); older ones are recognised by
    parsing their opcodes up to ``STOP``. Zip archives are told apart by their entries (skops writes a
    ``schema.json``, PyTorch a ``data.pkl`` or an ``archive_format``). ONNX is a protobuf ``ModelProto``
    with a graph, parsed with the ``onnx`` package when it is installed.

    Raises:
        OSError: the file cannot be read.
    """
    with open(file, "rb") as fh:
        head = fh.read(8)
        if not head:
            return EMPTY
        if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
            return PICKLE
        if head.startswith(_ZIP_MAGIC):
            return _zip_kind(file)
        if head.startswith(_COMPRESSED_MAGIC):
            return COMPRESSED
        fh.seek(0)
        if _old_pickle(fh):
            return PICKLE
    return ONNX if _onnx(file) else UNKNOWN


def describe(fmt: str) -> str:
    """Words for a format returned by :func:`sniff`, for messages."""
    return _DESCRIPTIONS.get(fmt, fmt)


def runs_code_when_loaded(spec: RuntimeSpec) -> bool:
    """Whether loading a version with this spec unpickles: pickle and joblib files, MLflow pyfunc models.

    Such a version loads only with an admin's trust, and servers load it in a worker process.
    """
    if spec.flavor == "sklearn":
        return spec.options.get("format") == "pickle"
    if spec.flavor == "pyfunc":
        return True
    if spec.flavor == "mlflow" and isinstance(spec.options.get("inner"), dict):
        return runs_code_when_loaded(RuntimeSpec.from_dict(spec.options["inner"]))
    return False


def _flavor_of_file(file: Path) -> str:
    """The flavor for a file's bytes. The name only picks which runtime refuses bytes none recognises (each
    runtime checks the bytes itself and says what they are), and sends a pickle named like a PyTorch file to
    the torch runtime, which never unpickles it."""
    try:
        fmt = sniff(file)
    except OSError as exc:
        raise UnknownFlavorError(f"cannot read the model file {str(file)!r}: {exc}") from exc
    named = _NAMED.get(file.suffix.lower())
    flavor = _FILE_FLAVORS.get(fmt)
    if fmt in PICKLED and named == "torch":
        flavor = "torch"
    elif flavor is None:
        flavor = named
    if flavor is None:
        raise UnknownFlavorError(
            f"{file.name}: its bytes are {describe(fmt)}, whatever its name says. corral reads skops, pickle and "
            "joblib files (scikit-learn), ONNX models and TorchScript or torch.export archives; pass flavor= one of "
            f"{', '.join(known_flavors())} if another runtime reads it"
        )
    return flavor


def _zip_kind(file: Path) -> str:
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return BROKEN_ZIP
    if "schema.json" in names:
        return SKOPS
    if any(n.rsplit("/", 1)[-1] in ("data.pkl", "archive_format") for n in names):
        return TORCH
    return ZIP


def _old_pickle(fh: Any) -> bool:
    """Whether the stream parses as pickle opcodes up to ``STOP`` (protocols 0 and 1 have no header)."""
    try:
        for opcode, _arg, _pos in pickletools.genops(fh):
            if opcode.name == "STOP":
                return True
    except Exception:  # not an opcode, an argument cut short: not a pickle
        return False
    return False


def _onnx(file: Path) -> bool:
    if file.stat().st_size >= _ONNX_MAX_BYTES:
        return False
    data = file.read_bytes()
    try:
        import onnx
    except ImportError:  # only onnxruntime: a ModelProto starts with its ir_version (field 1, a varint)
        return data[:1] == b"\x08"
    try:
        model = onnx.load_model_from_string(data)
    except Exception:
        return False
    return model.ir_version > 0 and model.HasField("graph")
