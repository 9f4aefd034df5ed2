"""Models in any language: an executable that speaks ``corral-external/1`` over its stdin and stdout.

The model is a folder (its code, its weights, whatever it needs) and a command that runs in it, such as
``["Rscript", "serve.R"]`` or ``["node", "model.js"]``. Registration copies the folder into the artifact;
loading copies it again into a private temporary folder that lives as long as the runtime, and starts the
command there as a child process (:class:`~corral.runtimes.process.ChildProcess`, stdio transport).

The protocol (``docs/external-models.md`` is its full description): frames of a 4-byte big-endian length
followed by that many bytes of UTF-8 JSON, in both directions.

- The child first sends its handshake: ``{"protocol": "corral-external/1", "ready": true}`` (optionally
  ``"name"``).
- corral sends a request: ``{"columns": [...], "data": {column: [values...]}}``, column-oriented, the
  signature's columns in order; missing values are ``null``.
- The child answers ``{"predictions": [...]}`` (one per row; classifiers may add ``"probabilities"``, one
  list per row in the order of the registered classes), or ``{"error": "message"}`` when it cannot answer
  (``"invalid_input": true`` added when the request's data is at fault).

What can go wrong and what corral raises (the API turns them into HTTP statuses):

- the child does not start, or its handshake is missing or wrong: :class:`~corral.errors.ModelLoadError`;
- it exits while answering: :class:`~corral.errors.WorkerCrashedError` (503), restarted with backoff;
- it does not answer within ``timeout_seconds``: :class:`~corral.errors.ModelTimeoutError` (504), killed;
- it answers ``{"error": ..., "invalid_input": true}``: :class:`~corral.errors.SchemaError` (400);
- it answers ``{"error": ...}``, or an answer that breaks the protocol (not JSON, wrong row count, unknown
  class labels, missing probabilities): :class:`ExternalModelError` (500), naming what was wrong.

Nothing is auto-detected: register with ``flavor="external"`` and ``options={"command": [...]}``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import shutil
import stat
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from corral.core.schema import Signature, Task
from corral.errors import CorralError, FlavorError, ModelLoadError, SchemaError
from corral.runtimes.base import Prediction, RuntimeSpec, check_options, labels_from_probabilities, plain_classes
from corral.runtimes.process import ChildProcess

log = logging.getLogger("corral.worker")

PROTOCOL = "corral-external/1"
_DIR = "model"
OPTIONS = {
    "command",  # the program and its arguments, run in the model folder (a list, or one shell-quoted string)
    "classes",  # class labels, in the order of the probabilities the model returns
    "task",  # "classification", "regression" or "other"; inferred from the target when left out
    "probabilities",  # whether a classifier answers probabilities (default true)
    "timeout_seconds",  # one call's limit before the child is killed (default 30)
    "start_timeout_seconds",  # how long the child has to send its handshake (default 60)
    "max_memory_mb",  # the child's address-space limit (default none)
    "env",  # extra environment variables for the child (recorded in the registry: no secrets)
}
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_TIMEOUT = 60.0
# What the child inherits from the server's environment; everything else (database URLs, tokens) stays out.
INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


class ExternalModelError(CorralError):
    """An external model reported an error, or answered with something that breaks ``corral-external/1``.

    The model is at fault, not the request: the API answers 500 with this message.
    """


class ExternalRuntime:
    """Runtime for models in other languages, served by a child process over ``corral-external/1``.

    A loaded runtime owns a running program and a folder: :meth:`close` stops and deletes them (the server
    calls it when it retires a version; a runtime nobody closes does it when garbage-collected or at exit).
    """

    flavor: ClassVar[str] = "external"
    # Only corral's side of the exchange (it speaks the protocol); the model's own language and libraries are
    # its folder's business, and no Python environment of the model's could change how it runs.
    requirements: ClassVar[tuple[str, ...]] = ("corral",)

    def __init__(self, folder: Path, workdir: Path | None, spec: RuntimeSpec) -> None:
        self.folder = folder
        self.spec = spec
        self.command: list[str] = list(spec.options["command"])
        self.name = f"external model `{shlex.join(self.command)}`"
        self.probabilities = spec.task is Task.CLASSIFICATION and bool(spec.options.get("probabilities", True))
        # a label as JSON gives it (1, 1.0, true) -> the registered class it equals
        self._labels: dict[Any, Any] = {c: c for c in (spec.classes or ())}
        memory = spec.options.get("max_memory_mb")
        self.process = ChildProcess(
            self.command,
            name=self.name,
            cwd=folder,
            env=child_environment(spec.options.get("env") or {}),
            transport="stdio",
            timeout=float(spec.options.get("timeout_seconds", DEFAULT_TIMEOUT)),
            max_memory_mb=int(memory) if memory is not None else None,
            start_timeout=float(spec.options.get("start_timeout_seconds", DEFAULT_START_TIMEOUT)),
        )
        # A runtime nobody closes must not leak its process or its folder.
        self._finalizer = weakref.finalize(self, _release, self.process, workdir)

    # -- the runtime protocol ---------------------------------------------------------------

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return False  # a folder of any language cannot be recognised: register with flavor="external"

    @classmethod
    def save(
        cls, model: Any, path: Path, *, signature: Signature | None = None, options: Mapping[str, Any] | None = None
    ) -> RuntimeSpec:
        opts = check_options(cls.flavor, options, OPTIONS)
        source = _model_folder(model)
        command = _command(opts.get("command"))
        task, classes = _task_and_classes(opts, signature)
        spec_options: dict[str, Any] = {
            "protocol": PROTOCOL,
            "dir": _DIR,
            "command": command,
            "timeout_seconds": _positive(opts, "timeout_seconds", DEFAULT_TIMEOUT),
            "start_timeout_seconds": _positive(opts, "start_timeout_seconds", DEFAULT_START_TIMEOUT),
            "env": _env(opts.get("env")),
        }
        if opts.get("max_memory_mb") is not None:
            spec_options["max_memory_mb"] = int(_positive(opts, "max_memory_mb", 0))
        if task is Task.CLASSIFICATION:
            spec_options["probabilities"] = _flag(opts, "probabilities", default=True)
        program = command[0]
        if "/" in program and not Path(program).is_absolute() and not (source / program).is_file():
            raise FlavorError(f"the command's program {program!r} is not a file in the model folder {str(source)!r}")
        _check_links(source)
        target = path / _DIR
        try:  # links inside the folder are copied as the files they point at
            shutil.copytree(source, target, symlinks=False)
        except (OSError, shutil.Error) as exc:
            raise FlavorError(f"cannot copy the model folder {str(source)!r}: {exc}") from exc
        spec_options["executables"] = _executables(target)  # the artifact keeps no file modes; load restores these
        return RuntimeSpec(cls.flavor, task, classes, spec_options)

    @classmethod
    def load(cls, path: Path, spec: RuntimeSpec, *, trusted: bool = False) -> Self:
        """Copy the model folder somewhere it outlives ``path``, start the command there, check its handshake."""
        protocol = spec.options.get("protocol", PROTOCOL)
        if protocol != PROTOCOL:
            raise ModelLoadError(f"this external model was registered for {protocol}; this corral speaks {PROTOCOL}")
        source = path / spec.options.get("dir", _DIR)
        if not source.is_dir():
            raise ModelLoadError(f"the artifact has no model folder {spec.options.get('dir', _DIR)!r}")
        workdir = Path(tempfile.mkdtemp(prefix="corral-external-"))
        try:
            folder = workdir / _DIR
            shutil.copytree(source, folder, symlinks=True)
            for relative in spec.options.get("executables", []):
                file = folder / relative
                if file.is_file() and not file.is_symlink():
                    file.chmod(file.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            runtime = cls(folder, workdir, spec)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        try:
            runtime.start()
        except BaseException:
            runtime.close()
            raise
        return runtime

    def predict(self, frame: pd.DataFrame) -> Prediction:
        """Send the rows to the child and turn its answer into a :class:`Prediction`.

        Raises:
            WorkerCrashedError, ModelTimeoutError: the child died or hung (it restarts on a later call).
            SchemaError: the model refused the request's data (``invalid_input``).
            ExternalModelError: the model reported an error or broke the protocol.
        """
        if len(frame) == 0:
            return self._decode({"predictions": [], "probabilities": []}, 0)
        return self._decode(self._parse(self.process.call(encode_request(frame))), len(frame))

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the child and check its handshake (:meth:`load` does; a closed runtime stays closed).

        Raises:
            ModelLoadError: it did not start, or its handshake is not ``corral-external/1``'s.
        """
        handshake = self.process.start()
        problem = handshake_problem(handshake)
        if problem is not None:
            self.process.close()
            raise ModelLoadError(
                f"{self.name} {problem}; its first frame must be "
                f'{{"protocol": "{PROTOCOL}", "ready": true}} (see docs/external-models.md)'
            )
        said = json.loads(handshake).get("name")
        log.info("%s is ready%s", self.name, f" ({said})" if isinstance(said, str) and said else "")

    def close(self) -> None:
        """Stop the child and delete the runtime's copy of the model folder. Safe to call twice."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- answers ----------------------------------------------------------------------------

    def _parse(self, answer: bytes) -> dict[str, Any]:
        try:
            message = json.loads(answer.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ExternalModelError(
                f"{self.name} answered with a frame that is not UTF-8 JSON ({exc}): {_excerpt(answer)}"
            ) from None
        if not isinstance(message, dict):
            raise ExternalModelError(
                f"{self.name} answered with a JSON {type(message).__name__}, not an object: {_excerpt(answer)}"
            )
        return message

    def _decode(self, message: dict[str, Any], rows: int) -> Prediction:
        if "error" in message:
            text = str(message["error"])
            if message.get("invalid_input") is True:
                raise SchemaError(f"{self.name} refused the input: {text}")
            raise ExternalModelError(f"{self.name} reported an error: {text}")
        probabilities = self._probabilities(message, rows) if self.probabilities else None
        if "predictions" not in message and probabilities is not None:  # labels follow from probabilities
            values = labels_from_probabilities(probabilities, self.spec.classes or ())
            return Prediction(values, probabilities, self.spec.classes)
        raw = message.get("predictions")
        if not isinstance(raw, list):
            keys = ", ".join(sorted(map(str, message))) or "none"
            raise ExternalModelError(
                f'{self.name} answered without a "predictions" list (keys: {keys}); '
                'answer {"predictions": [...]} or {"error": "..."}'
            )
        if len(raw) != rows:
            raise ExternalModelError(f"{self.name} answered {len(raw)} predictions for {rows} rows")
        if self.spec.task is Task.CLASSIFICATION:
            return Prediction(self._class_labels(raw), probabilities, self.spec.classes)
        return Prediction(_values(raw))

    def _class_labels(self, raw: list[Any]) -> np.ndarray:
        labels: list[Any] = []
        for i, value in enumerate(raw):
            label = self._labels.get(value, _MISSING) if isinstance(value, str | int | float | bool) else _MISSING
            if label is _MISSING:
                known = ", ".join(map(repr, self.spec.classes or ()))
                raise ExternalModelError(
                    f"{self.name} predicted {value!r} for row {i}, which is not one of its classes ({known})"
                )
            labels.append(label)
        classes = self.spec.classes or ()
        if any(isinstance(c, str) for c in classes):
            return np.array(labels, dtype=object)
        return np.asarray(labels)

    def _probabilities(self, message: dict[str, Any], rows: int) -> np.ndarray:
        raw = message.get("probabilities")
        width = len(self.spec.classes or ())
        if raw is None:
            raise ExternalModelError(
                f'{self.name} answered without "probabilities"; a classifier answers one list of {width} per row, '
                "in the order of its classes (or register it with options probabilities=false)"
            )
        if not isinstance(raw, list) or len(raw) != rows:
            count = len(raw) if isinstance(raw, list) else type(raw).__name__
            raise ExternalModelError(f"{self.name} answered {count} probability rows for {rows} rows")
        for i, row in enumerate(raw):
            if not isinstance(row, list) or len(row) != width or not all(_is_number(p) or p is None for p in row):
                raise ExternalModelError(
                    f"{self.name} answered probabilities {row!r} for row {i}; expected {width} numbers "
                    f"(classes {list(self.spec.classes or ())})"
                )
        return np.array([[np.nan if p is None else p for p in row] for row in raw], dtype="float64").reshape(
            rows, width
        )


_MISSING = object()


# -- the protocol's encoding, usable on its own --------------------------------------------------


def encode_request(frame: pd.DataFrame) -> bytes:
    """One request frame's payload: the frame's columns, in order, as JSON lists (missing values as ``null``)."""
    columns = [str(c) for c in frame.columns]
    data = {name: _json_column(frame[column]) for name, column in zip(columns, frame.columns, strict=True)}
    try:
        text = json.dumps({"columns": columns, "data": data}, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"the input cannot be sent as JSON: {exc}") from None
    return text.encode("utf-8")


def handshake_problem(frame: bytes) -> str | None:
    """What is wrong with a handshake frame, or ``None`` when it is ``corral-external/1``'s."""
    try:
        message = json.loads(frame.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return f"sent a first frame that is not UTF-8 JSON: {_excerpt(frame)}"
    if not isinstance(message, dict):
        return f"sent a first frame that is not a JSON object: {_excerpt(frame)}"
    protocol = message.get("protocol")
    if protocol is None:
        return f'sent a handshake without "protocol": {_excerpt(frame)}'
    if protocol != PROTOCOL:
        return f"speaks protocol {protocol!r}; this corral speaks {PROTOCOL!r}"
    if message.get("ready") is not True:
        return f'did not say it is ready ("ready": true): {_excerpt(frame)}'
    return None


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The child's whole environment: a few of the server's variables (not its secrets) plus the model's own."""
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(extra)
    return env


def _json_column(column: pd.Series) -> list[Any]:
    if pd.api.types.is_float_dtype(column.dtype) and isinstance(column.dtype, np.dtype):
        array = column.to_numpy()
        values: list[Any] = array.tolist()
        bad = ~np.isfinite(array)
        for i in np.flatnonzero(bad):
            if not math.isnan(array[i]):
                raise SchemaError(f"column {column.name!r} holds an infinite value, which JSON cannot carry")
            values[i] = None
        return values
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iub":
        return list(column.to_numpy().tolist())
    out: list[Any] = []
    for item in column.astype(object).tolist():
        value = item.item() if isinstance(item, np.generic) else item
        if value is None or value is pd.NA or value is pd.NaT:
            out.append(None)
        elif isinstance(value, float) and not math.isfinite(value):
            if not math.isnan(value):
                raise SchemaError(f"column {column.name!r} holds an infinite value, which JSON cannot carry")
            out.append(None)
        elif isinstance(value, str | bool | int | float):
            out.append(value)
        else:
            out.append(str(value))
    return out


def _values(raw: list[Any]) -> np.ndarray:
    if all(_is_number(v) or v is None for v in raw):
        return np.array([np.nan if v is None else v for v in raw], dtype="float64")
    return np.array(raw, dtype=object)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _excerpt(data: bytes, limit: int = 120) -> str:
    return repr(data[:limit]) + ("..." if len(data) > limit else "")


def _release(process: ChildProcess, workdir: Path | None) -> None:
    try:
        process.close()
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


# -- registration checks ---------------------------------------------------------------------


def _model_folder(model: Any) -> Path:
    if not isinstance(model, str | os.PathLike):
        raise FlavorError(
            f"an external model is a folder (its code, weights and the command's files), not a {type(model).__name__}"
        )
    folder = Path(model)
    if not folder.exists():
        raise FlavorError(f"the external model folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise FlavorError(f"an external model is a folder; {str(folder)!r} is a file")
    return folder


def _command(value: Any) -> list[str]:
    if isinstance(value, str):
        value = shlex.split(value)
    if value is None:
        raise FlavorError(
            'an external model needs options={"command": [...]}: the program that serves it and its arguments, '
            'run in the model folder (e.g. ["node", "model.js"])'
        )
    if not isinstance(value, Sequence) or not all(isinstance(part, str) for part in value):
        raise FlavorError(f"the command must be a list of strings, got {value!r}")
    if not value or not value[0].strip():
        raise FlavorError('the command is empty: give the program and its arguments, e.g. ["node", "model.js"]')
    return list(value)


def _check_links(folder: Path) -> None:
    root = folder.resolve()
    for path in sorted(folder.rglob("*")):
        if not path.is_symlink():
            continue
        target = path.resolve()
        if not target.exists():
            raise FlavorError(f"{path} is a broken link (to {os.readlink(path)!r}); remove it or fix it")
        if target != root and root not in target.parents:
            raise FlavorError(
                f"{path} links outside the model folder (to {str(target)!r}); copy what it points at into the "
                "folder instead, so the artifact holds everything the model runs"
            )


def _executables(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.stat().st_mode & 0o111
    )


def _task_and_classes(opts: Mapping[str, Any], signature: Signature | None) -> tuple[Task, tuple[Any, ...] | None]:
    inferred = signature.outputs if signature is not None else None
    raw_task = opts.get("task")
    try:
        task = Task(raw_task) if raw_task is not None else None
    except ValueError:
        raise FlavorError(f"task must be one of {', '.join(t.value for t in Task)}, got {raw_task!r}") from None
    classes = opts.get("classes")
    if classes is not None:
        if task not in (None, Task.CLASSIFICATION):
            raise FlavorError(f"classes were given but task is {task}")
        if not isinstance(classes, list | tuple) or not classes:
            raise FlavorError(f"classes must be a non-empty list of labels, got {classes!r}")
        labels = plain_classes(classes)
        if not all(isinstance(c, str | int) for c in labels):
            raise FlavorError(f"class labels must be strings, integers or booleans, got {list(labels)!r}")
        if len(set(labels)) != len(labels):
            raise FlavorError(f"classes must be distinct, got {list(labels)!r}")
        if inferred is not None and inferred.classes is not None and set(inferred.classes) != set(labels):
            raise FlavorError(
                f"options classes {list(labels)} differ from the training target's classes {list(inferred.classes)}"
            )
        return Task.CLASSIFICATION, labels
    if task is None:
        task = inferred.task if inferred is not None else Task.OTHER
    if task is Task.CLASSIFICATION:
        if inferred is None or inferred.classes is None:
            raise FlavorError(
                "an external classifier needs its classes: pass options classes=[...] in the order of the "
                "probabilities it answers, or register it with training data and a target"
            )
        return task, plain_classes(inferred.classes)
    return task, None


def _positive(opts: Mapping[str, Any], key: str, default: float) -> float:
    value = opts.get(key, default)
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise FlavorError(f"{key} must be a positive number, got {value!r}")
    return float(value)


def _flag(opts: Mapping[str, Any], key: str, *, default: bool) -> bool:
    value = opts.get(key, default)
    if not isinstance(value, bool):
        raise FlavorError(f"{key} must be true or false, got {value!r}")
    return value


def _env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise FlavorError(f"env must map variable names to strings, got {value!r}")
    return dict(value)


__all__ = ["PROTOCOL", "ExternalModelError", "ExternalRuntime", "encode_request", "handshake_problem"]
