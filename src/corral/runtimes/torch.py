"""PyTorch programs, TorchScript or torch.export, on the CPU or a GPU.

Two formats are taken, both zip archives whose code is a restricted program of
torch operators rather than Python:

* **TorchScript** (``torch.jit.script``/``torch.jit.trace``, saved as ``.pt``
  with ``torch.jit.save``). Deprecated by PyTorch 2.13 in favour of
  torch.export; still read, and its deprecation warnings are kept quiet here.
* **torch.export** (``torch.export.export``, saved as ``.pt2`` with
  ``torch.export.save``). The program must take one ``(rows, features)``
  float32 tensor whose batch dimension is dynamic (``torch.export.Dim``): the
  server sends batches of any size, so a program exported for a fixed batch is
  refused at registration. A finite upper bound on the batch dimension is kept
  by cutting bigger batches into pieces.

A plain ``torch.nn.Module`` is refused: saving one means pickling Python
objects, and corral never unpickles a model. Nor does it let torch do so: the
few pickles a ``.pt2`` archive may hold must pass torch's weights-only loader
before torch.export reads the file, and archives carrying compiled code
(AOTInductor) or anything else outside a plain exported program are refused.
The format of a file is read from its bytes, not its name.

Options: ``device`` (``"cpu"``, the default, ``"cuda"`` or ``"cuda:<index>"``),
where the model is loaded and run; loading fails, naming the device, when no
GPU is visible. ``output`` (classifiers only): ``"logits"`` (the default:
softmax over one column per class, or a sigmoid over a single column for two
classes) or ``"probabilities"`` (the network already returns them).
``classes``: the labels of the output columns, in order, when the training data
has no target to give them (otherwise they are the target's classes, sorted).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import threading
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from corral.core.schema import Signature, Task
from corral.errors import FlavorError, ModelLoadError, SchemaError
from corral.runtimes.base import (
    Prediction,
    RuntimeSpec,
    check_options,
    from_framework,
    labels_from_probabilities,
    plain_classes,
)

TORCHSCRIPT = "torchscript"
EXPORT = "export"
_FILES = {TORCHSCRIPT: "model.pt", EXPORT: "model.pt2"}
_SUFFIXES = (".pt", ".pt2", ".pth")
_OUTPUTS = ("logits", "probabilities")
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")
_NUMERIC = frozenset({"float64", "int64", "bool"})
_DYNAMIC_BATCH_HINT = (
    "export it with a dynamic batch dimension, e.g. torch.export.export(model, (example,), "
    "dynamic_shapes=({0: torch.export.Dim('batch')},))"
)

# What a plain torch.export archive holds, under its one root folder. Anything else (AOTInductor's compiled
# libraries, ExecuTorch or MTIA payloads, external weights) is refused: torch.export.load would load some of it.
_EXPORT_MEMBERS = re.compile(
    r"archive_format|archive_version|byteorder|version|\.data/[^/]+|models/[^/]+\.json"
    r"|data/(weights|constants)/[^/]+|data/sample_inputs/[^/]+\.pt|extra/[^/]+"
)
_OPAQUE_PREFIX = "opaque_obj_"  # constants torch.export.load reads with pickle.loads

# warnings.catch_warnings changes process-wide state: one runtime call at a time changes it.
_warnings_lock = threading.Lock()


class _Refused(Exception):
    """A file or program corral will not load; the message says why (callers add the error type)."""


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence PyTorch 2.13's deprecation of ``torch.jit.save``/``load``: the user chose TorchScript."""
    with _warnings_lock, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        yield


def _device(value: Any) -> str:
    """``value`` as a device name, or :class:`_Refused` naming what is allowed."""
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        raise _Refused(f"torch device must be 'cpu', 'cuda' or 'cuda:<index>', got {value!r}")
    return value


def _check_visible(device: str) -> None:
    """Raise :class:`ModelLoadError` when ``device`` is a GPU this process cannot see."""
    if device == "cpu":
        return
    import torch

    if not torch.cuda.is_available():
        build = "" if torch.version.cuda else f"; this torch ({torch.__version__}) is built without CUDA"
        raise ModelLoadError(
            f"the model is to run on device {device!r} but no GPU is visible here "
            f"(torch.cuda.is_available() is False{build}); register it with options={{'device': 'cpu'}} "
            "to serve it on the CPU"
        )
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ModelLoadError(f"the model is to run on device {device!r} but only {count} GPU(s) are visible here")


def _sniff(file: Path) -> str:
    """The format of ``file``, read from its bytes: ``"torchscript"`` or ``"export"``.

    Raises:
        _Refused: saying what the file is instead (not a zip, cut short, a
            pickled ``torch.save`` checkpoint, another zip).
    """
    if not zipfile.is_zipfile(file):
        with open(file, "rb") as fh:
            pickled = fh.read(1) == b"\x80"
        raise _Refused(
            "is not a zip archive, or is cut short: TorchScript (.pt) and torch.export (.pt2) files are zip archives"
            + (". It starts like a pickle (an old torch.save file?): corral never unpickles a model" if pickled else "")
        )
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _Refused(f"is a damaged zip archive ({exc})") from exc
    if not names:
        raise _Refused("is an empty zip archive")
    root = names[0].split("/", 1)[0]
    inner = {n[len(root) + 1 :] for n in names if n.startswith(root + "/")}
    if "archive_format" in inner:
        return EXPORT
    if "data.pkl" in inner and any(n.startswith("code/") for n in inner):
        return TORCHSCRIPT
    if "data.pkl" in inner:
        raise _Refused(
            "is a torch.save checkpoint (pickled Python objects), not a TorchScript or torch.export program. "
            "corral never unpickles a model: load the weights into your nn.Module yourself, then script it "
            "(torch.jit.script) or export it (torch.export.export) and register that"
        )
    if "serialized_exported_program.json" in names:
        raise _Refused(
            "was written by a torch.export.save older than the .pt2 archive format; load it with that torch "
            "and save it again with this one"
        )
    raise _Refused("is a zip archive but neither a TorchScript (.pt) nor a torch.export (.pt2) file")


def _check_export_archive(file: Path) -> None:
    """Refuse a ``.pt2`` archive that would make torch.export.load unpickle or load compiled code.

    torch.export.load reads tensors it could not store raw, and its sample
    inputs, with ``torch.load`` (falling back to ``weights_only=False``), some
    constants with ``pickle.loads``, and AOTInductor libraries it finds. Every
    pickle here must load with ``weights_only=True`` first (then torch's own
    load of the same bytes needs no fallback); the rest is refused.
    """
    import torch

    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            root = names[0].split("/", 1)[0] + "/"
            if len(set(names)) != len(names) or not all(n.startswith(root) for n in names):
                raise _Refused("is not a torch.export archive: its entries are not all under one folder, once")
            inner = [n[len(root) :] for n in names]
            odd = [n for n in inner if not _EXPORT_MEMBERS.fullmatch(n)]
            if odd:
                raise _Refused(
                    f"holds {odd[0]!r}, which is not part of a plain torch.export program (corral does not load "
                    "AOTInductor-compiled code or other packaged payloads)"
                )
            pickles = [n for n in inner if n.endswith(".pt")]
            for config in (n for n in inner if n.startswith("data/") and n.endswith("_config.json")):
                folder = config.rsplit("/", 1)[0] + "/"
                entries = json.loads(archive.read(root + config)).get("config", {})
                for fqn, meta in entries.items():
                    if meta["path_name"].startswith(_OPAQUE_PREFIX):
                        raise _Refused(f"holds the constant {fqn!r} as a pickled Python object; corral never unpickles")
                    if meta.get("use_pickle"):
                        pickles.append(folder + meta["path_name"])
            for name in pickles:
                try:
                    torch.load(io.BytesIO(archive.read(root + name)), weights_only=True, map_location="cpu")
                except Exception as exc:
                    raise _Refused(
                        f"holds {name!r}, a pickle that torch's weights-only loader refuses ({exc}); "
                        "corral never unpickles anything more"
                    ) from exc
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError, OSError) as exc:
        raise _Refused(f"is a damaged torch.export archive ({type(exc).__name__}: {exc})") from exc


def _read_program(file: Path) -> Any:
    """The ExportedProgram in ``file``, after :func:`_check_export_archive`."""
    import torch

    _check_export_archive(file)
    return torch.export.load(str(file))


def _batch_limit(program: Any, features: int | None) -> int | None:
    """Check an ExportedProgram takes one ``(rows, features)`` float32 tensor with a dynamic batch.

    Returns the most rows one call may take (``None``: any number).

    Raises:
        _Refused: naming what does not fit.
    """
    import sympy
    import torch
    from torch.export.graph_signature import InputKind

    users = [s for s in program.graph_signature.input_specs if s.kind is InputKind.USER_INPUT]
    if len(users) != 1:
        raise _Refused(
            f"the exported program takes {len(users)} inputs; corral calls it with one (rows, features) float32 tensor"
        )
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    example = placeholders[users[0].arg.name].meta.get("val")
    if not isinstance(example, torch.Tensor) or example.dim() != 2:
        shape = f"a {example.dim()}-D tensor" if isinstance(example, torch.Tensor) else type(example).__name__
        raise _Refused(f"the exported program takes {shape}; corral calls it with one (rows, features) tensor")
    if example.dtype != torch.float32:
        raise _Refused(
            f"the exported program takes {example.dtype} input; corral sends float32: "
            "call .float() on the module before exporting it"
        )
    rows, width = example.shape
    if features is not None and isinstance(width, int) and width != features:
        raise _Refused(f"the exported program takes {width} features per row but the signature has {features} columns")
    if isinstance(rows, int):
        raise _Refused(
            f"the exported program takes batches of exactly {rows} row(s), and the server sends batches of any "
            f"size: {_DYNAMIC_BATCH_HINT}"
        )
    bounds = program.range_constraints.get(rows.node.expr)
    upper = bounds.upper if bounds is not None else None
    return max(int(upper), 1) if isinstance(upper, sympy.Integer) else None


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow (scipy's expit costs more than the model on small batches)."""
    result: np.ndarray = np.exp(-np.logaddexp(0.0, -logits))
    return result


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return result


def _classes(signature: Signature | None, declared: Any) -> tuple[Task, tuple[Any, ...] | None]:
    """The task and the classes (in output-column order), from the option and the signature."""
    inferred = signature.outputs if signature is not None else None
    if declared is not None:
        if (
            not isinstance(declared, list | tuple)
            or len(declared) < 2
            or not all(isinstance(c, str | int) for c in declared)
            or len(set(declared)) != len(declared)
        ):
            raise FlavorError(f"torch option classes must list at least two distinct labels, got {declared!r}")
        if inferred is not None and inferred.task is Task.REGRESSION:
            raise FlavorError("torch option classes was given but the training target is continuous (a regression)")
        if inferred is not None and inferred.classes is not None and set(inferred.classes) != set(declared):
            raise FlavorError(
                f"torch option classes {list(declared)} differ from the training target's classes "
                f"{list(inferred.classes)}"
            )
        return Task.CLASSIFICATION, plain_classes(declared)
    if inferred is None:
        return Task.OTHER, None
    if inferred.task is Task.CLASSIFICATION:
        if inferred.classes is None:
            raise FlavorError("a torch classifier needs its classes: give training data with a target, or classes=")
        return Task.CLASSIFICATION, inferred.classes
    return inferred.task, None


def _refuse_module(model: Any) -> FlavorError:
    import torch

    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    if isinstance(model, torch.nn.Module):
        return FlavorError(
            f"a plain torch.nn.Module ({kind}) cannot be registered: saving it would pickle Python objects, "
            "and corral never unpickles a model. Script it (torch.jit.script(model.eval())) or export it "
            f"(torch.export.export(model.eval(), (example,), dynamic_shapes=...)) first and register that"
        )
    return FlavorError(
        f"corral cannot register a {kind}: the torch flavor takes a TorchScript module or function, a "
        "torch.export ExportedProgram, or the path of a .pt/.pt2 file saved from one"
    )


class TorchRuntime:
    """Runtime for TorchScript and torch.export programs."""

    flavor: ClassVar[str] = "torch"
    requirements: ClassVar[tuple[str, ...]] = ("torch",)

    def __init__(self, module: Any, spec: RuntimeSpec, device: str, batch_limit: int | None = None) -> None:
        self.module = module
        self.spec = spec
        self.device = device
        self.batch_limit = batch_limit

    @classmethod
    def accepts(cls, model: Any) -> bool:
        if isinstance(model, str | Path):
            return str(model).endswith(_SUFFIXES)
        return from_framework(model, "torch")  # plain nn.Modules too, so that save can say what to do

    @classmethod
    def save(
        cls, model: Any, path: Path, *, signature: Signature | None = None, options: Mapping[str, Any] | None = None
    ) -> RuntimeSpec:
        opts = check_options(cls.flavor, options, {"device", "output", "classes"})
        try:
            device = _device(opts.get("device", "cpu"))
        except _Refused as exc:
            raise FlavorError(str(exc)) from None
        task, classes = _classes(signature, opts.get("classes"))
        extra: dict[str, Any] = {}
        if task is Task.CLASSIFICATION:
            output = opts.get("output", "logits")
            if output not in _OUTPUTS:
                raise FlavorError(f"torch option output must be 'logits' or 'probabilities', got {output!r}")
            extra["output"] = output
        elif "output" in opts:
            raise FlavorError(
                "torch option output says how a classifier's outputs become probabilities, "
                f"but this model's task is {task}"
            )
        if signature is not None:
            text = [f.name for f in signature.inputs if f.dtype not in _NUMERIC]
            if text:
                raise FlavorError(f"torch models take numbers; these feature columns are not: {', '.join(text)}")
        width = len(signature.inputs) if signature is not None else None
        source, fmt = cls._write(model, path)
        if fmt == EXPORT:
            try:
                program = _read_program(path / _FILES[EXPORT]) if isinstance(model, str | Path) else model
                _batch_limit(program, width)
            except _Refused as exc:
                raise FlavorError(f"{source}: {exc}") from None
            except Exception as exc:
                raise FlavorError(f"{source}: torch.export cannot read it ({type(exc).__name__}: {exc})") from exc
        options_out = {"format": fmt, "file": _FILES[fmt], "device": device, **extra}
        return RuntimeSpec(cls.flavor, task, classes, options_out)

    @classmethod
    def _write(cls, model: Any, path: Path) -> tuple[str, str]:
        """Write ``model`` into ``path``; returns what to call it in messages and its format."""
        import torch

        if isinstance(model, str | Path):
            source = Path(model)
            if not source.is_file():
                raise FlavorError(f"PyTorch file {str(source)!r} does not exist")
            try:
                fmt = _sniff(source)
            except _Refused as exc:
                raise FlavorError(f"{source.name} {exc}") from None
            shutil.copyfile(source, path / _FILES[fmt])
            return source.name, fmt
        if isinstance(model, torch.jit.ScriptModule | torch.jit.ScriptFunction):
            with _quiet_jit():
                torch.jit.save(model, str(path / _FILES[TORCHSCRIPT]))
            return "the TorchScript program", TORCHSCRIPT
        if isinstance(model, torch.export.ExportedProgram):
            torch.export.save(model, str(path / _FILES[EXPORT]))
            return "the exported program", EXPORT
        raise _refuse_module(model)

    @classmethod
    def load(cls, path: Path, spec: RuntimeSpec, *, trusted: bool = False) -> Self:
        """Load on ``spec.options["device"]``.

        ``trusted`` changes nothing: neither format is unpickled.

        Raises:
            ModelLoadError: an unknown device or one with no GPU visible, a
                file that is not the program its spec says, or one torch
                cannot read.
        """
        options = spec.options
        file_name = options.get("file", "")
        try:
            device = _device(options.get("device", "cpu"))
        except _Refused as exc:
            raise ModelLoadError(str(exc)) from None
        fmt = options.get("format")
        if fmt not in _FILES:
            raise ModelLoadError(f"torch model format must be 'torchscript' or 'export', got {fmt!r}")
        _check_visible(device)
        file = path / file_name
        try:
            found = _sniff(file)
            if found != fmt:
                raise _Refused(f"holds a {found} program, not the {fmt} program its spec says")
        except (_Refused, OSError) as exc:
            raise ModelLoadError(f"{file_name} {exc}") from None
        import torch

        try:
            if fmt == TORCHSCRIPT:
                with _quiet_jit():
                    module = torch.jit.load(str(file), map_location=device)  # type: ignore[no-untyped-call]
                if isinstance(module, torch.jit.ScriptModule):
                    module.eval()
                return cls(module, spec, device)
            program = _read_program(file)
            limit = _batch_limit(program, None)
            if device != "cpu":
                from torch.export.passes import move_to_device_pass

                program = move_to_device_pass(program, device)
            return cls(program.module(), spec, device, limit)
        except _Refused as exc:
            raise ModelLoadError(f"{file_name} {exc}") from None
        except Exception as exc:
            raise ModelLoadError(f"torch could not load {file_name} on {device}: {type(exc).__name__}: {exc}") from exc

    def predict(self, frame: pd.DataFrame) -> Prediction:
        """The signature's columns, in order, as one float32 ``(rows, features)`` tensor on the device."""
        import torch

        data = frame.to_numpy(dtype=np.float32)
        if not (data.flags.writeable and data.flags.c_contiguous):  # torch warns on read-only arrays
            data = np.array(data, order="C")
        step = self.batch_limit or max(len(data), 1)
        parts = []
        with torch.inference_mode():
            for start in range(0, max(len(data), 1), step):
                batch = torch.from_numpy(data[start : start + step]).to(self.device)
                out = self.module(batch)
                if not isinstance(out, torch.Tensor):
                    raise SchemaError(
                        f"the torch model returned a {type(out).__name__}; corral expects one tensor per call"
                    )
                parts.append(out.detach().to("cpu", torch.float64).numpy())
        raw = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if raw.ndim == 0 or len(raw) != len(data):
            rows = "a single value" if raw.ndim == 0 else f"{len(raw)} rows"
            raise SchemaError(f"the torch model returned {rows} for {len(data)} input rows")
        if self.spec.task is Task.CLASSIFICATION:
            return self._classify(raw)
        if raw.ndim == 2 and raw.shape[1] == 1:
            raw = raw[:, 0]
        if raw.ndim != 1:
            raise SchemaError(
                f"the torch model returned {raw.shape[1:]} values per row; a regression gives one, and a classifier "
                "needs its classes (training data with a target, or options={'classes': [...]})"
            )
        return Prediction(raw)

    def _classify(self, raw: np.ndarray) -> Prediction:
        classes = self.spec.classes or ()
        logits = self.spec.options.get("output", "logits") == "logits"
        if raw.ndim == 2 and raw.shape[1] == 1:
            raw = raw[:, 0]
        if raw.ndim == 1:
            if len(classes) != 2:
                raise SchemaError(
                    f"the torch classifier gives one output per row, which fits two classes, but it has "
                    f"{len(classes)} classes {list(classes)}"
                )
            positive = _sigmoid(raw) if logits else raw
            probabilities = np.column_stack([1.0 - positive, positive])
        elif raw.ndim == 2 and raw.shape[1] == len(classes):
            probabilities = _softmax(raw) if logits else raw
        else:
            raise SchemaError(
                f"the torch classifier gives {raw.shape[1:]} outputs per row but it has {len(classes)} classes "
                f"{list(classes)}"
            )
        return Prediction(labels_from_probabilities(probabilities, classes), probabilities, classes)
