"""Custom Python models: any class with ``save``, ``load`` and ``predict``.

The contract, duck-typed (no base class to inherit)::

    class MyModel:
        def save(self, path: Path) -> None: ...          # write files into the folder
        @classmethod
        def load(cls, path: Path) -> "MyModel": ...      # read them back (all of
                                                         # them: the folder is
                                                         # removed after loading)
        def predict(self, frame: pd.DataFrame): ...      # one value per row
        # optional, for classifiers:
        classes_: list                                   # class labels
        def predict_proba(self, frame): ...              # (rows, classes)

The class is recorded as ``module:QualifiedName`` and imported on load, so it
must live in an importable module (not ``__main__``) on the serving side, or
travel with the model: ``options={"code_paths": ["mymodels.py"]}`` copies those
files or packages into the artifact and puts them first on the import path while
the model loads (a model in its own environment keeps them for its life).
``load`` must read everything it needs before returning: the folder it is
given is temporary.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from corral.core.schema import Signature, Task
from corral.errors import FlavorError, ModelLoadError
from corral.runtimes.base import Prediction, RuntimeSpec, check_options, plain_classes

_DIR = "model"
_CODE = "code"


class CustomRuntime:
    """Runtime for user-written Python model classes."""

    flavor: ClassVar[str] = "python"
    requirements: ClassVar[tuple[str, ...]] = ("numpy", "pandas")

    def __init__(self, model: Any, spec: RuntimeSpec) -> None:
        self.model = model
        self.spec = spec

    @classmethod
    def accepts(cls, model: Any) -> bool:
        kind = type(model)
        return all(callable(getattr(kind, m, None)) for m in ("save", "load", "predict")) and not isinstance(
            model, type
        )

    @classmethod
    def save(
        cls, model: Any, path: Path, *, signature: Signature | None = None, options: Mapping[str, Any] | None = None
    ) -> RuntimeSpec:
        opts = check_options(cls.flavor, options, {"code_paths"})
        code_paths = opts.get("code_paths", [])
        if not isinstance(code_paths, list | tuple) or not all(isinstance(c, str | Path) for c in code_paths):
            raise FlavorError(f"code_paths must be a list of files or folders, got {code_paths!r}")
        if isinstance(model, type):
            raise FlavorError(f"register an instance of {model.__qualname__}, not the class itself")
        if not cls.accepts(model):
            raise FlavorError(
                f"{type(model).__name__} is not a custom model: it needs save(path), a load(path) classmethod "
                "and predict(frame)"
            )
        kind = type(model)
        if kind.__module__ == "__main__" or "<locals>" in kind.__qualname__:
            raise FlavorError(
                f"{kind.__qualname__} is defined in {kind.__module__}; move it to an importable module "
                "so the server can import it to load the model"
            )
        if code_paths:
            _copy_code(code_paths, path / _CODE)
        folder = path / _DIR
        folder.mkdir()
        try:
            model.save(folder)
        except Exception as exc:
            raise FlavorError(f"{kind.__qualname__}.save failed: {type(exc).__name__}: {exc}") from exc
        classes = getattr(model, "classes_", None)
        task = Task.CLASSIFICATION if classes is not None else (signature.outputs.task if signature else Task.OTHER)
        if task is Task.CLASSIFICATION and classes is None:
            task = Task.OTHER
        return RuntimeSpec(
            cls.flavor,
            task,
            plain_classes(classes) if classes is not None else None,
            {
                "class": f"{kind.__module__}:{kind.__qualname__}",
                "dir": _DIR,
                "probabilities": callable(getattr(model, "predict_proba", None)) and classes is not None,
                **({"code": _CODE} if code_paths else {}),
            },
        )

    @classmethod
    def load(cls, path: Path, spec: RuntimeSpec, *, trusted: bool = False) -> Self:
        module_name, _, qualname = spec.options["class"].partition(":")
        code = str(path / spec.options["code"]) if spec.options.get("code") else None
        if code is not None:
            sys.path.insert(0, code)
        try:
            try:
                target: Any = importlib.import_module(module_name)
                for part in qualname.split("."):
                    target = getattr(target, part)
            except (ImportError, AttributeError) as exc:
                raise ModelLoadError(
                    f"cannot import the model class {spec.options['class']}: {exc}. "
                    "Install the package that defines it where the model is loaded, or register it with "
                    "options={'code_paths': [...]}"
                ) from exc
            try:
                return cls(target.load(path / spec.options["dir"]), spec)
            except Exception as exc:
                raise ModelLoadError(f"{qualname}.load failed: {type(exc).__name__}: {exc}") from exc
        finally:
            if code is not None and code in sys.path:
                sys.path.remove(code)

    def predict(self, frame: pd.DataFrame) -> Prediction:
        raw = self.model.predict(frame)
        values = raw.to_numpy() if isinstance(raw, pd.Series | pd.DataFrame) else np.asarray(raw)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if self.spec.options.get("probabilities"):
            proba = np.asarray(self.model.predict_proba(frame), dtype="float64")
            return Prediction(values, proba, self.spec.classes)
        return Prediction(values, classes=self.spec.classes)


def _copy_code(code_paths: list[str | Path] | tuple[str | Path, ...], target: Path) -> None:
    """Copy the model's own modules (files or package folders) into the artifact."""
    target.mkdir()
    for item in map(Path, code_paths):
        if not item.exists():
            raise FlavorError(f"code path {str(item)!r} does not exist")
        if item.is_dir():
            shutil.copytree(item, target / item.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(item, target / item.name)
