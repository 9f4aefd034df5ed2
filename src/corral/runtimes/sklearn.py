"""scikit-learn models, saved with skops; pickle/joblib only when trusted.

skops stores an estimator without pickle, and lists the types it would have to
import on load. For an estimator corral dumps itself those types come from the
object the user handed over, so they are recorded at registration and trusted
on load. A ``.skops`` file brought from elsewhere must have its extra types
named by the user (``options={"trusted_types": [...]}``). Pickle and joblib can
run any code when loaded, so they need ``trusted=True`` every time.

Files are told apart by their bytes, not their names (:func:`corral.runtimes.loader.sniff`): a ``.skops``
file that is really a pickle needs trust like any pickle, a ``.pkl`` that is really a skops zip loads as
skops, and anything else is refused naming what its bytes are. Loading checks the stored file the same
way, so an artifact whose file is not the format its spec records is refused before it is read.
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from corral.core.schema import Signature, Task
from corral.errors import FlavorError, ModelLoadError, UnsafeArtifactError, UntrustedArtifactError
from corral.runtimes.base import Prediction, RuntimeSpec, check_options, plain_classes
from corral.runtimes.loader import PICKLED, SKOPS, describe, sniff

_SKOPS_FILE = "model.skops"
_PICKLE_FILE = "model.pkl"
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


def _sklearn_task(model: Any) -> Task:
    from sklearn.base import BaseEstimator, is_classifier, is_regressor

    if not isinstance(model, BaseEstimator):  # is_classifier raises on objects without sklearn tags
        return Task.OTHER
    if is_classifier(model):
        return Task.CLASSIFICATION
    if is_regressor(model):
        return Task.REGRESSION
    return Task.OTHER


class SklearnRuntime:
    """Runtime for scikit-learn estimators and pipelines."""

    flavor: ClassVar[str] = "sklearn"
    requirements: ClassVar[tuple[str, ...]] = ("scikit-learn", "numpy", "scipy", "skops")

    def __init__(self, model: Any, spec: RuntimeSpec) -> None:
        self.model = model
        self.spec = spec
        self._named = hasattr(model, "feature_names_in_")

    @classmethod
    def accepts(cls, model: Any) -> bool:
        if isinstance(model, str | Path):
            if Path(model).is_file():  # its bytes decide; a missing file is named when it is saved
                try:
                    return sniff(Path(model)) in (*PICKLED, SKOPS)
                except OSError:
                    return False
            return str(model).endswith((".skops", *_PICKLE_SUFFIXES))
        from sklearn.base import BaseEstimator

        return isinstance(model, BaseEstimator)

    @classmethod
    def save(
        cls, model: Any, path: Path, *, signature: Signature | None = None, options: Mapping[str, Any] | None = None
    ) -> RuntimeSpec:
        opts = check_options(cls.flavor, options, {"serialization", "trusted", "trusted_types"})
        trusted_types = opts.get("trusted_types", [])
        if not isinstance(trusted_types, list | tuple) or not all(isinstance(t, str) for t in trusted_types):
            raise FlavorError(f"trusted_types must be a list of type names, got {trusted_types!r}")
        serialization = opts.get("serialization", "skops")
        if serialization not in ("skops", "pickle"):
            raise FlavorError(f"sklearn serialization must be 'skops' or 'pickle', got {serialization!r}")
        if isinstance(model, str | Path):
            spec = cls._save_file(Path(model), path, opts)
            if spec.options["format"] != "pickle" or serialization == "pickle":
                return spec
            # a pickle read once (trusted) is stored with skops, so loading it never runs code again
            loaded = cls.load(path, spec, trusted=True).model
            (path / _PICKLE_FILE).unlink()
            try:
                return cls.save(loaded, path, signature=signature, options={**opts, "serialization": "skops"})
            except FlavorError as exc:
                keep = "register it with options={'serialization': 'pickle'} to keep the pickle"
                raise FlavorError(f"{exc}; {keep}") from exc

        if serialization == "pickle":
            with open(path / _PICKLE_FILE, "wb") as fh:
                pickle.dump(model, fh, protocol=5)
            return cls._spec(model, {"format": "pickle", "file": _PICKLE_FILE})
        import skops.io as sio

        target = path / _SKOPS_FILE
        try:
            sio.dump(model, target)
        except Exception as exc:  # skops raises plain TypeErrors for unsupported objects
            raise FlavorError(f"skops cannot serialize this {type(model).__name__}: {exc}") from exc
        trusted_types = sorted(sio.get_untrusted_types(file=target))
        return cls._spec(model, {"format": "skops", "file": _SKOPS_FILE, "trusted_types": trusted_types})

    @classmethod
    def _save_file(cls, source: Path, path: Path, opts: dict[str, Any]) -> RuntimeSpec:
        if not source.is_file():
            raise FlavorError(f"model file {str(source)!r} does not exist")
        fmt = _format_of(source)
        if fmt == SKOPS:
            shutil.copyfile(source, path / _SKOPS_FILE)
            options = {"format": "skops", "file": _SKOPS_FILE, "trusted_types": sorted(opts.get("trusted_types", []))}
        elif fmt in PICKLED:
            if not opts.get("trusted"):
                raise _untrusted(source.name, fmt)
            shutil.copyfile(source, path / _PICKLE_FILE)
            options = {"format": "pickle", "file": _PICKLE_FILE}
        else:
            raise UnsafeArtifactError(
                f"{source.name}: not a scikit-learn model file: its bytes are {describe(fmt)}, whatever its name "
                "says. corral reads skops files and, when trusted, pickle and joblib files"
            )
        model = cls.load(path, RuntimeSpec(cls.flavor, Task.OTHER, options=options), trusted=bool(opts.get("trusted")))
        if not callable(getattr(model.model, "predict", None)):
            raise FlavorError(
                f"{source.name} holds a {type(model.model).__module__}.{type(model.model).__qualname__}, "
                "not a model with a predict method"
            )
        return cls._spec(model.model, options)

    @classmethod
    def _spec(cls, model: Any, options: dict[str, Any]) -> RuntimeSpec:
        task = _sklearn_task(model)
        classes = plain_classes(model.classes_) if task is Task.CLASSIFICATION and hasattr(model, "classes_") else None
        options["probabilities"] = hasattr(model, "predict_proba") and classes is not None
        options["labels_from_proba"] = options["probabilities"] and _argmax_consistent(model)
        return RuntimeSpec(cls.flavor, task, classes, options)

    @classmethod
    def load(cls, path: Path, spec: RuntimeSpec, *, trusted: bool = False) -> Self:
        """Load the stored file as its bytes say: a pickle only with ``trusted``, whatever the spec records.

        Raises:
            UntrustedArtifactError: a pickle or joblib file without ``trusted``, or skops types nobody trusted.
            UnsafeArtifactError: the file is not the format the spec records.
            ModelLoadError: the file cannot be read or loaded.
        """
        file = path / spec.options["file"]
        declared = spec.options["format"]
        fmt = _format_of(file)
        if (declared == "pickle" or fmt in PICKLED) and not trusted:
            raise _untrusted(file.name, fmt)
        if declared == "skops" and fmt != SKOPS:
            raise UnsafeArtifactError(
                f"{file.name} is not a readable skops file: its bytes are {describe(fmt)}; refusing to load it"
            )
        if declared == "pickle" and fmt not in PICKLED:
            raise UnsafeArtifactError(
                f"{file.name} should be a pickle but its bytes are {describe(fmt)}; refusing to load it"
            )
        model = _load_pickle(file) if fmt in PICKLED else _load_skops(file, spec.options.get("trusted_types", []))
        return cls(model, spec)

    def predict(self, frame: pd.DataFrame) -> Prediction:
        data: Any = frame if self._named else frame.to_numpy()
        if self.spec.options.get("labels_from_proba"):
            # predict() would compute the same probabilities again and take their argmax: do it once
            proba = np.asarray(self.model.predict_proba(data), dtype="float64")
            return Prediction(self.model.classes_.take(np.argmax(proba, axis=1), axis=0), proba, self.spec.classes)
        values = np.asarray(self.model.predict(data))
        if self.spec.options.get("probabilities"):
            return Prediction(values, np.asarray(self.model.predict_proba(data), dtype="float64"), self.spec.classes)
        return Prediction(values, classes=self.spec.classes)  # classifiers without predict_proba keep their classes


# Classifiers whose predict() is, in scikit-learn's own code, classes_[argmax(predict_proba)].
# Not here on purpose: SVC/NuSVC (Platt-scaled probabilities can disagree with predict), hard
# voting, and anything unknown. Registration still checks labels against the original's predict.
_ARGMAX_CLASSIFIERS = frozenset(
    {
        "LogisticRegression",
        "LogisticRegressionCV",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "HistGradientBoostingClassifier",
        "GradientBoostingClassifier",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "KNeighborsClassifier",
        "GaussianNB",
        "MultinomialNB",
        "BernoulliNB",
        "ComplementNB",
        "CategoricalNB",
        "MLPClassifier",
        "LinearDiscriminantAnalysis",
        "QuadraticDiscriminantAnalysis",
        "BaggingClassifier",
    }
)


def _argmax_consistent(model: Any) -> bool:
    final = model
    while hasattr(final, "steps"):  # a Pipeline: its last step decides
        final = final.steps[-1][1]
    kind = type(final)
    return kind.__module__.startswith("sklearn.") and kind.__name__ in _ARGMAX_CLASSIFIERS


def _format_of(file: Path) -> str:
    try:
        return sniff(file)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {file.name}: {exc}") from exc


def _untrusted(name: str, fmt: str) -> UntrustedArtifactError:
    what = describe(fmt) if fmt in PICKLED else "a pickle/joblib artifact"
    return UntrustedArtifactError(
        f"refusing to load {name}: it is {what}, and unpickling can run arbitrary code. "
        "Pass trusted=True only if you trust where it came from, or re-register the model "
        "with skops (the default serialization)"
    )


def _load_skops(file: Path, trusted_types: list[str]) -> Any:
    import skops.io as sio

    try:
        untrusted = set(sio.get_untrusted_types(file=file))
    except Exception as exc:
        raise ModelLoadError(f"{file.name} is not a readable skops file: {exc}") from exc
    unknown = sorted(untrusted - set(trusted_types))
    if unknown:
        raise UntrustedArtifactError(
            f"the skops file needs types nobody trusted: {', '.join(unknown)}. "
            "Review them and register with options={'trusted_types': [...]} to allow them"
        )
    try:
        return sio.load(file, trusted=sorted(untrusted))
    except Exception as exc:
        raise ModelLoadError(f"{file.name} could not be loaded by skops: {exc}") from exc


def _load_pickle(file: Path) -> Any:
    import joblib

    try:
        return joblib.load(file)
    except Exception as exc:
        raise ModelLoadError(f"{file.name} could not be unpickled: {type(exc).__name__}: {exc}") from exc
