"""The registry service: register, find, alias, retire and load model versions.

Read :meth:`Registry.log_model` first: it is the whole registration story.
Nothing is written to the store until the model has been saved, loaded back,
checked to reproduce its own predictions and profiled, so a failed
registration leaves no version behind (at most an unreferenced blob).

Loading (:meth:`Registry.load`, and :meth:`Registry.artifact` for workers) checks, in order: that a version
whose artifact runs code when loaded (a pickle) is trusted by the caller; its signature, when it has one or
signing is required; the artifact's SHA-256; the archive's members and sizes while unpacking; then the
runtime checks the files' own bytes. ``docs/safe-loading.md`` tells the whole story.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from corral.core.fingerprint import fingerprint_frame
from corral.core.profile import Profile, profile_column, profile_frame
from corral.core.refs import ModelRef, validate_alias, validate_name
from corral.core.schema import FeatureKind, OutputSpec, Signature, Task
from corral.errors import (
    AliasNotFoundError,
    ArtifactIntegrityError,
    ConfigurationError,
    CorralError,
    RegistrationError,
    RollbackError,
    SignatureMismatchError,
    UntrustedArtifactError,
    VersionInUseError,
    VersionNotFoundError,
)
from corral.registry.entities import (
    AliasAction,
    AliasEvent,
    Lineage,
    ModelVersion,
    RegisteredModel,
    VersionStatus,
    VersionTrust,
)
from corral.registry.environment import git_state, library_versions, python_version, requirement_lines
from corral.registry.loaded import LoadedModel
from corral.registry.packaging import MAX_BYTES, MAX_MEMBERS, pack, unpack
from corral.registry.ports import ANY, AliasHead, ArtifactStore, ModelHost, RegistryStore, VersionGuard
from corral.registry.signing import ArtifactSigning
from corral.runtimes.base import ModelRuntime, Prediction, RuntimeSpec
from corral.runtimes.loader import detect_flavor, runs_code_when_loaded, runtime_class

_TRUST_AWARE = {"sklearn", "mlflow"}


def _now() -> datetime:
    return datetime.now(UTC)


class Registry:
    """Registered models and their versions, over a store and an artifact store.

    Args:
        store: where versions, aliases and profiles are kept.
        artifacts: where model archives are kept, by SHA-256.
        actor: who acts when a call does not say (recorded in lineage and alias history).
        guards: callables that say why a version is still in use (e.g. stored
            predictions reference it); deletion is refused while any answers.
        verify_rows: rows of training data used to check a saved model
            reproduces the original's predictions.
        profile_rows: rows sampled to profile the model's outputs.
        clock: the time source (tests pass a fixed one).
        signing: signs versions at registration and checks signatures before every load; ``None``: nothing
            is signed, and a version that carries a signature cannot be checked, so it is refused.
        max_artifact_bytes: most bytes an artifact may unpack to.
        max_artifact_members: most files and folders an artifact may hold.
    """

    def __init__(
        self,
        store: RegistryStore,
        artifacts: ArtifactStore,
        *,
        actor: str,
        guards: Sequence[VersionGuard] = (),
        verify_rows: int = 200,
        profile_rows: int = 10_000,
        clock: Callable[[], datetime] = _now,
        signing: ArtifactSigning | None = None,
        max_artifact_bytes: int = MAX_BYTES,
        max_artifact_members: int = MAX_MEMBERS,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.actor = actor
        self.guards = list(guards)
        self.verify_rows = verify_rows
        self.profile_rows = profile_rows
        self.clock = clock
        self.signing = signing if signing is not None else ArtifactSigning()
        self.max_artifact_bytes = max_artifact_bytes
        self.max_artifact_members = max_artifact_members

    # -- registration ---------------------------------------------------------

    def log_model(
        self,
        model: Any,
        *,
        name: str,
        training_data: pd.DataFrame | None = None,
        target: str | pd.Series | None = None,
        flavor: str | None = None,
        signature: Signature | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        source: str | None = None,
        description: str = "",
        code_commit: str | None = None,
        requirements: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
        trusted: bool = False,
        created_by: str | None = None,
        host: ModelHost | None = None,
    ) -> ModelVersion:
        """Register ``model`` as the next version of ``name``.

        Args:
            model: a fitted model object, or a path (MLflow model directory,
                ``.onnx``, ``.skops``, ``.pkl``/``.joblib`` file).
            name: the model's name (letters, digits, ``-_.``).
            training_data: the frame the model was trained on, target included;
                it gives the signature, the data fingerprint and the reference profile.
            target: the target column's name in ``training_data`` (or the target itself).
            flavor: the framework; detected from the model when left out.
            signature: overrides the inferred signature (required without training data).
            params: training parameters, JSON values.
            metrics: evaluation metrics, numbers.
            tags: free string labels.
            source: where the training data came from (a URI), kept in lineage.
            description: free text.
            code_commit: the training code's commit; detected from git when left out.
            requirements: extra library versions to record, beyond those detected.
            options: flavor options (``serialization``, ``trusted_types``).
            trusted: allow artifacts that run code when loaded (pickle, pyfunc).
            created_by: who registers; defaults to the registry's actor.
            host: saves and checks the model elsewhere, such as in its own environment
                (:class:`corral.isolation.host.IsolatedHost`); the versions it found are recorded.

        Returns:
            The stored version, with its number.

        Raises:
            InvalidNameError, UnknownFlavorError, SignatureMismatchError,
            UntrustedArtifactError, RegistrationError: nothing is recorded.
        """
        validate_name(name)
        if self.signing.signs:
            _ = self.signing.key_id  # a key that cannot be read or created fails now, before anything is stored
        flavor = flavor or detect_flavor(model)
        runtime_cls = runtime_class(flavor)
        features, target_values = _split(training_data, target)
        if features is not None:
            features = _align_to_model(model, features)
        if signature is None:
            if features is None:
                raise RegistrationError(f"registering {name!r} needs training_data (or an explicit signature)")
            signature = Signature.infer(features, target_values)
        elif features is not None:
            if sorted(map(str, features.columns)) != sorted(signature.columns):
                raise SignatureMismatchError(
                    f"training data columns {list(features.columns)} do not match the signature's {signature.columns}"
                )
            features = features[signature.columns]
        opts = dict(options or {})
        if trusted and flavor in _TRUST_AWARE:
            opts["trusted"] = True
        with tempfile.TemporaryDirectory(prefix="corral-register-") as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            runtime: Any = None
            try:
                if host is not None:
                    spec, runtime = host.save_and_load(
                        model, folder, flavor=flavor, signature=signature, options=opts, trusted=trusted
                    )
                else:
                    spec = runtime_cls.save(model, folder, signature=signature, options=opts)
                    runtime = runtime_cls.load(folder, spec, trusted=trusted)
                signature = signature.with_outputs(_outputs(spec, signature.outputs))
                profile = None
                if features is not None:
                    self._verify(name, model, runtime, signature, features)
                    profile = self._profile(runtime, signature, features)
            finally:
                close = getattr(runtime, "close", None)  # a worker or an external program: stop it
                if callable(close):
                    close()
            archive = pack(folder)
        sha256 = self.artifacts.put(archive)
        commit, dirty = (code_commit, None) if code_commit else git_state()
        lineage = Lineage(
            data=fingerprint_frame(training_data, source=source) if training_data is not None else None,
            code_commit=commit,
            code_dirty=dirty,
            params=_json_values(params or {}, "params"),
            metrics=_numbers(metrics or {}),
            requirements={
                **(host.recorded if host is not None else library_versions(runtime_cls.requirements)),
                **dict(requirements or {}),
            },
            python=python_version(),
        )
        draft = ModelVersion(
            name=name,
            version=0,
            flavor=flavor,
            artifact_sha256=sha256,
            artifact_size=len(archive),
            signature=signature,
            runtime=spec,
            lineage=lineage,
            created_by=created_by or self.actor,
            created_at=self.clock(),
            description=description,
            tags=_tags(tags or {}),
        )
        return self.store.create_version(draft, profile, seal=self.signing.sign if self.signing.signs else None)

    def _verify(
        self, name: str, model: Any, runtime: ModelRuntime, signature: Signature, features: pd.DataFrame
    ) -> None:
        sample = features.iloc[: self.verify_rows]
        try:
            restored = runtime.predict(signature.validate(sample))
        except CorralError:
            raise
        except Exception as exc:
            raise SignatureMismatchError(
                f"{name!r} could not predict on its own training data ({type(exc).__name__}: {exc}); "
                "check that training_data holds the columns the model was fitted on"
            ) from exc
        original = _original_predictions(model, sample)
        if original is not None and not _same(original, restored.values):
            raise RegistrationError(
                f"{name!r}: the saved model does not reproduce the original's predictions; "
                "its framework may not serialize it faithfully. Nothing was registered"
            )

    def _profile(self, runtime: ModelRuntime, signature: Signature, features: pd.DataFrame) -> Profile:
        sample = features if len(features) <= self.profile_rows else features.sample(self.profile_rows, random_state=0)
        prediction = runtime.predict(signature.validate(sample))
        return Profile(
            rows=len(features), features=profile_frame(features, signature), outputs=_output_profile(prediction)
        )

    # -- reading ----------------------------------------------------------------

    def get_model(self, name: str) -> RegisteredModel:
        return self.store.get_model(validate_name(name))

    def list_models(self) -> list[RegisteredModel]:
        return self.store.list_models()

    def list_versions(self, name: str, *, include_archived: bool = True) -> list[ModelVersion]:
        versions = self.store.list_versions(validate_name(name))
        return [v for v in versions if include_archived or v.status is VersionStatus.READY]

    def get_version(self, name: str, version: int) -> ModelVersion:
        return self.store.get_version(validate_name(name), version)

    def get_profile(self, name: str, version: int) -> Profile | None:
        return self.store.get_profile(validate_name(name), version)

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The version a reference means now (``name/3``, ``name@champion``, ``name@latest``)."""
        ref = ModelRef.parse(ref)
        if ref.version is not None:
            return self.store.get_version(ref.name, ref.version)
        if ref.alias == "latest":
            ready = self.list_versions(ref.name, include_archived=False)
            if not ready:
                raise VersionNotFoundError(f"model {ref.name!r} has no version that is not archived")
            return ready[-1]
        model = self.store.get_model(ref.name)
        if ref.alias not in model.aliases:
            known = ", ".join(sorted(model.aliases)) or "none yet"
            raise AliasNotFoundError(f"model {ref.name!r} has no alias {ref.alias!r} (aliases: {known})")
        return self.store.get_version(ref.name, model.aliases[ref.alias])

    def load(self, ref: str | ModelRef, *, trusted: bool = False, device: str | None = None) -> LoadedModel:
        """Load a version in this process, verifying its signature and its artifact's SHA-256 first.

        ``device`` (``cuda``, ``cuda:1``) moves a model whose runtime uses a GPU; ``cpu`` or ``None`` keeps
        the device it was registered for. ``trusted`` lets this process unpickle a version whose artifact is a
        pickle: the caller's own decision, whether or not an admin trusted the version (servers never pass
        it: they load trusted pickles in a worker process).

        Raises:
            UntrustedArtifactError: for pickle-based artifacts without ``trusted=True`` (before any byte is read).
            ArtifactSignatureError: a signature that does not verify, or none where signatures are required.
            ArtifactIntegrityError: naming the version and both hashes when the stored bytes changed.
            UnsafeArtifactError: an archive member reaching outside the folder, a link, or an archive over the
                limits; a file whose bytes are not the format its spec records.
        """
        version = self.resolve(ref)
        if not trusted and self.needs_trust(version):
            raise UntrustedArtifactError(_untrusted_message(version))
        archive = self.artifact(version)
        with tempfile.TemporaryDirectory(prefix="corral-model-") as workdir:
            self.unpack(archive, Path(workdir))
            spec = version.runtime
            if device is not None and device != "cpu":
                spec = RuntimeSpec(spec.flavor, spec.task, spec.classes, {**spec.options, "device": device})
            runtime = runtime_class(version.flavor).load(Path(workdir), spec, trusted=trusted)
        return LoadedModel(version, runtime)

    def set_requirements(
        self, name: str, version: int, changes: Mapping[str, str | None], *, replace_all: bool = False
    ) -> ModelVersion:
        """Edit the library releases version ``name/version`` records (what its own environment is built from).

        ``changes`` maps a distribution to its release, or to ``None`` to drop it; ``replace_all`` replaces
        the whole set. Servers build the new environment the next time they load the version.

        Raises:
            ConfigurationError: a name or release that is not plain (nothing from it may reach an installer
                as an option or a URL), or dropping a requirement the version does not record.
            ModelNotFoundError / VersionNotFoundError.
        """
        current = self.store.get_version(validate_name(name), version)
        updated = {} if replace_all else dict(current.lineage.requirements)
        for key, release in changes.items():
            if release is None:
                if key not in updated:
                    raise ConfigurationError(f"{current.ref} records no requirement {key!r} to drop")
                del updated[key]
            else:
                updated[key] = release
        requirement_lines(updated)  # refuses what is not a plain name and release
        return self.store.set_requirements(name, version, updated)

    def artifact(self, version: ModelVersion) -> bytes:
        """A version's packed artifact, its signature and SHA-256 checked.

        Raises:
            ArtifactSignatureError: a signature that does not verify, or none where signatures are required.
            ArtifactIntegrityError: naming the version and both hashes when the stored bytes changed.
        """
        self.signing.verify(version)
        try:
            return self.artifacts.get(version.artifact_sha256)
        except ArtifactIntegrityError as exc:
            raise ArtifactIntegrityError(
                f"the artifact of {version.ref} is corrupt: expected sha256 {exc.expected}, "
                f"stored bytes hash to {exc.actual}. Refusing to load it",
                expected=exc.expected,
                actual=exc.actual,
            ) from None

    def unpack(self, archive: bytes, folder: Path) -> None:
        """Extract an artifact into ``folder`` within this registry's size and member limits."""
        unpack(archive, folder, max_bytes=self.max_artifact_bytes, max_members=self.max_artifact_members)

    # -- trust and signatures ----------------------------------------------------

    @staticmethod
    def needs_trust(version: ModelVersion) -> bool:
        """Whether loading ``version`` can run code from its artifact (a pickle or joblib file, an MLflow pyfunc)."""
        return runs_code_when_loaded(version.runtime)

    def trust(self, name: str, version: int, *, reason: str, actor: str | None = None) -> ModelVersion:
        """Record an admin's explicit opt-in to load a version whose artifact runs code when loaded.

        Servers load such a version only once it is trusted, and then only in a worker process of its own,
        never in the server's. Trusting a version that loads no code is recorded and changes nothing.

        Raises:
            ConfigurationError: without a reason.
            ModelNotFoundError, VersionNotFoundError.
        """
        if not reason.strip():
            raise ConfigurationError(
                f"trusting {name}/{version} needs a reason: say why its artifact is safe to unpickle "
                "(who made it, how it was reviewed)"
            )
        record = VersionTrust(actor or self.actor, self.clock(), reason.strip())
        return self.store.set_trust(validate_name(name), version, record)

    def untrust(self, name: str, version: int) -> ModelVersion:
        """Revoke the trust in a version: servers stop loading it (a loaded one is unloaded at their next refresh)."""
        return self.store.set_trust(validate_name(name), version, None)

    def sign_version(self, name: str, version: int) -> ModelVersion:
        """Sign a version registered before signing was set up, vouching for its artifact as stored now.

        The artifact's SHA-256 is checked first, so a corrupted artifact is never signed. A version already
        signed is signed again with this registry's key.

        Raises:
            ConfigurationError: no signing key is configured.
            ArtifactIntegrityError, ArtifactNotFoundError: the artifact is not as registered.
        """
        found = self.store.get_version(validate_name(name), version)
        if not self.signing.signs:
            raise ConfigurationError(
                "no artifact signing key is configured: set CORRAL_SIGNING__KEY_FILE (or CORRAL_PROFILE=regulated)"
            )
        try:
            self.artifacts.get(found.artifact_sha256)
        except ArtifactIntegrityError as exc:
            raise ArtifactIntegrityError(
                f"the artifact of {found.ref} is corrupt (stored bytes hash to {exc.actual}); refusing to sign it",
                expected=exc.expected,
                actual=exc.actual,
            ) from None
        signature = self.signing.sign(found)
        assert signature is not None  # signs is true
        return self.store.set_signature(found.name, found.version, signature)

    # -- aliases ----------------------------------------------------------------

    def set_alias(
        self, name: str, alias: str, version: int, *, reason: str = "", actor: str | None = None
    ) -> AliasEvent:
        """Point ``alias`` at ``version``, recording who, when and why."""
        validate_name(name)
        validate_alias(alias)
        current = self.store.get_model(name).aliases.get(alias)
        if current == version:
            self.store.get_version(name, version)
            last = self.store.alias_events(name, alias)[-1]
            if last.to_version == version:  # the event that put it there, unless another process moved it since
                return last
            current = last.to_version
        return self.store.move_alias(
            name,
            alias,
            version,
            expected=current,
            action=AliasAction.SET,
            actor=actor or self.actor,
            reason=reason,
            at=self.clock(),
        )

    def promote(
        self, name: str, version: int, *, alias: str = "champion", reason: str = "", actor: str | None = None
    ) -> AliasEvent:
        """Make ``version`` the ``alias`` (``champion`` by default)."""
        return self.set_alias(name, alias, version, reason=reason, actor=actor)

    def remove_alias(self, name: str, alias: str, *, reason: str = "", actor: str | None = None) -> AliasEvent:
        validate_alias(alias)
        return self.store.move_alias(
            validate_name(name),
            alias,
            None,
            expected=ANY,
            action=AliasAction.REMOVE,
            actor=actor or self.actor,
            reason=reason,
            at=self.clock(),
        )

    def rollback(self, name: str, alias: str = "champion", *, reason: str = "", actor: str | None = None) -> AliasEvent:
        """Move ``alias`` back to the version it pointed at before its last move.

        Rollbacks stack: rolling back twice goes back two moves.

        Raises:
            RollbackError: when the alias has no earlier version.
        """
        validate_name(name)
        validate_alias(alias)
        history = self.store.alias_events(name, alias)
        current, target = rollback_target(name, alias, history)
        return self.store.move_alias(
            name,
            alias,
            target,
            expected=AliasHead(current, history[-1].id),  # the target holds only if nothing moved it since
            action=AliasAction.ROLLBACK,
            actor=actor or self.actor,
            reason=reason,
            at=self.clock(),
        )

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        return self.store.alias_events(validate_name(name), alias)

    # -- lifecycle --------------------------------------------------------------

    def archive(self, name: str, version: int, *, reason: str = "") -> ModelVersion:
        """Retire a version: kept with its lineage for the record, never served or aliased."""
        return self.store.set_status(validate_name(name), version, VersionStatus.ARCHIVED, reason=reason or None)

    def restore(self, name: str, version: int) -> ModelVersion:
        return self.store.set_status(validate_name(name), version, VersionStatus.READY, reason=None)

    def delete_version(self, name: str, version: int) -> None:
        """Delete a version nothing uses; its artifact goes too when no other version shares it.

        Raises:
            VersionInUseError: when an alias points at it or a guard (stored
                predictions) still references it; archive it instead.
        """
        found = self.store.get_version(validate_name(name), version)
        for guard in self.guards:
            why = guard(name, version)
            if why:
                raise VersionInUseError(f"cannot delete {found.ref}: {why}; archive it instead")
        self.store.delete_version(name, version)
        if not self.store.artifact_in_use(found.artifact_sha256):
            self.artifacts.delete(found.artifact_sha256)


def _untrusted_message(version: ModelVersion) -> str:
    what = f"{version.ref} is stored as a pickle: unpickling it can run arbitrary code"
    if version.trust is not None:
        how = (
            f"An admin trusted it ({version.trust.by}: {version.trust.reason}), so servers load it in a worker "
            "process of its own"
        )
    else:
        how = (
            "An admin can trust it, after reviewing where it came from: "
            f"corral models trust {version.name} {version.version} --reason '...'; servers then load it in a "
            "worker process of its own"
        )
    return f"{what}. {how}. To load it in this process, pass trusted=True, or re-register it with skops"


def rollback_target(name: str, alias: str, events: Sequence[AliasEvent]) -> tuple[int, int]:
    """(current, previous) version of an alias from its history; pure.

    The history is replayed as a stack: a set pushes, a rollback pops, a
    removal empties it.
    """
    stack: list[int] = []
    for event in events:
        if event.action is AliasAction.SET and event.to_version is not None:
            stack.append(event.to_version)
        elif event.action is AliasAction.ROLLBACK and stack:
            stack.pop()
        elif event.action is AliasAction.REMOVE:
            stack.clear()
    if not stack:
        raise RollbackError(f"{name}@{alias} is not set, so there is nothing to roll back")
    if len(stack) < 2:
        raise RollbackError(f"{name}@{alias} has no earlier version to roll back to (it is {name}/{stack[-1]})")
    return stack[-1], stack[-2]


def _split(data: Any, target: str | pd.Series | None) -> tuple[pd.DataFrame | None, pd.Series | None]:
    if data is None:
        if target is not None:
            raise RegistrationError("target was given without training_data")
        return None, None
    if not isinstance(data, pd.DataFrame):
        raise RegistrationError(
            "training_data must be a pandas DataFrame (its column names become the signature), "
            f"got {type(data).__name__}"
        )
    if target is None:
        return data, None
    if isinstance(target, str):
        if target not in data.columns:
            raise SignatureMismatchError(
                f"target column {target!r} is not in training_data (columns: {list(data.columns)})"
            )
        return data.drop(columns=[target]), data[target]
    series = pd.Series(target)
    if len(series) != len(data):
        raise SignatureMismatchError(f"target has {len(series)} rows but training_data has {len(data)}")
    return data, series.set_axis(data.index)


def _align_to_model(model: Any, features: pd.DataFrame) -> pd.DataFrame:
    """Check the training columns against what the model was fitted on; put them in its order."""
    present = [str(c) for c in features.columns]
    expected = _model_feature_names(model)
    if expected is None:
        count = getattr(model, "n_features_in_", None)
        if isinstance(count, int) and count != len(present):
            raise SignatureMismatchError(
                f"the model was fitted on {count} features but training data has {len(present)} feature columns"
                + (" (did you forget target=?)" if len(present) == count + 1 else "")
            )
        return features
    if expected == present:
        return features
    if _from_lightgbm(model):
        # LightGBM stores "mean radius" as "mean_radius"; match on its spelling, keep the user's names
        spelled = {c.replace(" ", "_"): c for c in present}
        if sorted(spelled) == sorted(expected) and len(spelled) == len(present):
            return features[[spelled[c] for c in expected]]
    missing = [c for c in expected if c not in present]
    unexpected = [c for c in present if c not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unexpected:
            parts.append(f"unexpected {unexpected}" + (" (did you forget target=?)" if len(unexpected) == 1 else ""))
        raise SignatureMismatchError(
            f"training data columns do not match the model: {'; '.join(parts)}; the model expects {expected}"
        )
    return features[expected]


def _from_lightgbm(model: Any) -> bool:
    return any(c.__module__.split(".")[0] == "lightgbm" for c in type(model).__mro__)


def _model_feature_names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    if names is None and type(model).__name__ == "Booster":
        names = getattr(model, "feature_names", None)  # xgboost
        if names is None and callable(getattr(model, "feature_name", None)):
            names = model.feature_name()  # lightgbm
            if all(n.startswith("Column_") for n in names):
                return None
    return [str(n) for n in names] if names is not None else None


def _original_predictions(model: Any, frame: pd.DataFrame) -> np.ndarray | None:
    if isinstance(model, str | Path) or not callable(getattr(model, "predict", None)):
        return None
    if type(model).__name__ == "Booster":
        return None
    named = hasattr(model, "feature_names_in_") or not hasattr(model, "n_features_in_")
    try:
        return np.asarray(model.predict(frame if named else frame.to_numpy()))
    except Exception:  # the restored model predicted; the original's own quirks are not our check
        return None


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
        if a.shape != b.shape:
            return False
    if np.issubdtype(a.dtype, np.number) and np.issubdtype(b.dtype, np.number):
        return bool(np.allclose(a.astype(float), b.astype(float), rtol=1e-6, atol=1e-9, equal_nan=True))
    return [str(x) for x in a.ravel()] == [str(x) for x in b.ravel()]


def _outputs(spec: RuntimeSpec, inferred: OutputSpec) -> OutputSpec:
    if spec.task is Task.CLASSIFICATION:
        classes = spec.classes if spec.classes is not None else inferred.classes
        dtype = "string" if classes and any(isinstance(c, str) for c in classes) else inferred.dtype
        probabilities = classes is not None and bool(spec.options.get("probabilities", True))
        return OutputSpec(Task.CLASSIFICATION, dtype if dtype != "float64" else "int64", classes, probabilities)
    if spec.task is Task.REGRESSION:
        return OutputSpec(Task.REGRESSION, "float64")
    return inferred if inferred.task is not Task.CLASSIFICATION else OutputSpec(Task.OTHER, "float64")


def _output_profile(prediction: Prediction) -> dict[str, Any]:
    values = pd.Series(prediction.values)
    if prediction.classes is not None:
        outputs = {"prediction": profile_column("prediction", values, FeatureKind.CATEGORICAL)}
        if prediction.probabilities is not None and len(prediction.classes) <= 10:
            for i, cls in enumerate(prediction.classes):
                column = f"proba_{cls}"
                outputs[column] = profile_column(
                    column, pd.Series(prediction.probabilities[:, i]), FeatureKind.NUMERICAL
                )
        return outputs
    kind = FeatureKind.NUMERICAL if pd.api.types.is_numeric_dtype(values) else FeatureKind.CATEGORICAL
    return {"prediction": profile_column("prediction", values, kind)}


def _json_values(values: Mapping[str, Any], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in values.items():
        value = raw.item() if isinstance(raw, np.generic) else raw
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise RegistrationError(
                f"{what}[{key!r}] = {value!r} is not a JSON value (strings, numbers, lists, dicts)"
            ) from None
        out[str(key)] = value
    return out


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RegistrationError(f"metric {key!r} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise RegistrationError(f"metric {key!r} must be finite, got {number}")
        out[str(key)] = number
    return out


def _tags(tags: Mapping[str, Any]) -> dict[str, str]:
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise RegistrationError(f"tags are strings: {key!r}: {value!r} is not")
    return dict(tags)


__all__ = ["Registry", "rollback_target"]
