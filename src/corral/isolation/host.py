"""The server's side of isolation: versions predicting through worker processes in their own environments.

- :func:`needs_isolation`: the ``auto`` rule. A version is isolated when a library it recorded at
  registration is installed here in another release (or not at all).
- :class:`WorkerRuntime`: a :class:`~corral.runtimes.base.ModelRuntime` whose ``predict`` sends the frame
  to a worker (numpy buffers over a Unix socket) and decodes its answer. Batching, monitoring and the audit
  log work on it as on any runtime. A crash, a hang and a restart are handled by
  :class:`~corral.runtimes.process.ChildProcess`.
- :func:`requires_trusted_worker`: whether a version is a pickle an admin trusted (it then loads only in a
  worker); an untrusted one is refused.
- :func:`load_isolated`: a registered version, hash-checked, unpacked into the worker's own folder, served
  by a worker started with its environment's interpreter.
- :class:`IsolatedHost`: registration inside the model's environment (``Registry.log_model(host=...)``):
  the model file is saved and loaded by a worker, so a model written by another release of its framework
  is registered without ever being loaded by the server's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from corral.core.schema import Signature
from corral.errors import ModelLoadError, UntrustedArtifactError
from corral.isolation import codec
from corral.isolation.environments import Environments
from corral.registry.entities import ModelVersion
from corral.registry.environment import NOT_INSTALLED
from corral.registry.service import Registry
from corral.runtimes.base import Prediction, RuntimeSpec
from corral.runtimes.process import ChildProcess

IN_PROCESS_FLAVORS = ("external",)  # programs with their own runtime: the server's libraries do not matter


def requires_trusted_worker(version: ModelVersion) -> bool:
    """Whether ``version``'s artifact runs code when loaded (a pickle): then it loads only in a worker process,
    and only once an admin trusted it.

    Raises:
        UntrustedArtifactError: it runs code when loaded and no admin has trusted it.
    """
    if not Registry.needs_trust(version):
        return False
    if version.trust is None:
        raise UntrustedArtifactError(
            f"{version.ref} is a pickle (loading it can run any code) and no admin has trusted it; "
            f"after reviewing where it came from: corral models trust {version.name} {version.version} "
            "--reason '...' (it then runs in a worker process of its own), or re-register it with skops"
        )
    return True


def needs_isolation(requirements: Mapping[str, str], flavor: str | None = None) -> list[str]:
    """The recorded requirements this process does not satisfy exactly (empty: it can run in process).

    An ``external`` model is a program of its own: it never needs a Python environment.
    """
    if flavor in IN_PROCESS_FLAVORS:
        return []
    differ = []
    for name, version in sorted(requirements.items()):
        if name.lower() in NOT_INSTALLED:
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            differ.append(f"{name}=={version} (not installed here)")
            continue
        if installed != version:
            differ.append(f"{name}=={version} (here {installed})")
    return differ


class WorkerRuntime:
    """A model answering from a worker process; see the module docstring.

    Args:
        process: the supervised worker (already started).
        spec: the runtime spec the worker loaded.
        folder: the worker's private copy of the artifact, removed by :meth:`close`.
        versions: the library versions the worker reported.
    """

    flavor: ClassVar[str] = "isolated"
    requirements: ClassVar[tuple[str, ...]] = ()

    def __init__(self, process: ChildProcess, spec: RuntimeSpec, folder: Path, versions: dict[str, str]) -> None:
        self.process = process
        self.spec = spec
        self.folder = folder
        self.versions = versions
        self._finalizer = weakref.finalize(self, _cleanup, process, folder)

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return False

    @classmethod
    def save(cls, model: Any, path: Path, **_kwargs: Any) -> RuntimeSpec:
        raise ModelLoadError("an isolated runtime only predicts; register models with their own flavor")

    @classmethod
    def load(cls, path: Path, spec: RuntimeSpec, *, trusted: bool = False) -> WorkerRuntime:
        raise ModelLoadError("an isolated runtime is started with corral.isolation.host.load_isolated")

    def predict(self, frame: pd.DataFrame) -> Prediction:
        answer = self.process.call(codec.encode_frame(frame))
        header, body = codec.unpack(answer)
        if header.get("op") == "error":
            codec.raise_error(header, self.process.name)
        return codec.decode_prediction(header, body)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def close(self) -> None:
        """Stop the worker and remove its folder."""
        self._finalizer()


def _cleanup(process: ChildProcess, folder: Path) -> None:
    process.close()
    shutil.rmtree(folder, ignore_errors=True)


def start_worker(
    python: Path,
    view: Path,
    folder: Path,
    *,
    name: str,
    flavor: str,
    arguments: list[str],
    timeout: float | None,
    max_memory_mb: int | None,
    trusted: bool,
) -> tuple[ChildProcess, dict[str, Any]]:
    """Start a worker on ``folder`` and wait for it to load its model; returns the process and its handshake.

    Raises:
        ModelLoadError (or the error the worker reported while loading): the worker could not load the model.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(view)
    env["PYTHONNOUSERSITE"] = "1"
    if max_memory_mb is not None:  # one BLAS thread keeps the address space within a memory limit
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
    command = [str(python), "-m", "corral.isolation.worker", "--flavor", flavor]
    command += ["--folder", str(folder), *arguments, *(["--trusted"] if trusted else [])]
    process = ChildProcess(
        command, name=name, cwd=folder, env=env, transport="socket", timeout=timeout, max_memory_mb=max_memory_mb
    )
    header, _ = codec.unpack(process.start())
    if header.get("op") != "ready":
        process.close()
        codec.raise_error(header, name)
    return process, header


def load_isolated(
    registry: Registry,
    version: ModelVersion,
    environments: Environments,
    *,
    name: str,
    timeout: float | None = 30.0,
    max_memory_mb: int | None = None,
    device: str | None = None,
    trusted: bool = False,
) -> WorkerRuntime:
    """``version`` served by a worker in the environment of its recorded requirements.

    Raises:
        EnvironmentBuildError: the environment could not be built (naming the requirement).
        ArtifactIntegrityError: the stored artifact does not match its SHA-256.
        UnsafeArtifactError: the archive breaks the registry's containment, size or member limits.
        ModelLoadError: the worker could not load the model.
    """
    archive = registry.artifact(version)
    folder = Path(tempfile.mkdtemp(prefix=f"corral-worker-{version.name}-{version.version}-"))
    try:
        registry.unpack(archive, folder)  # the registry's size and member limits, before building anything
        environment = environments.ensure(version.lineage.requirements, what=str(version.ref))
        arguments = ["--spec", json.dumps(version.runtime.to_dict())]
        if device is not None and device != "cpu":
            arguments += ["--device", device]
        process, ready = start_worker(
            environment.python,
            environments.view(),
            folder,
            name=name,
            flavor=version.flavor,
            arguments=arguments,
            timeout=timeout,
            max_memory_mb=max_memory_mb,
            trusted=trusted,
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return WorkerRuntime(process, RuntimeSpec.from_dict(ready["spec"]), folder, dict(ready.get("versions", {})))


class IsolatedHost:
    """Registers a model inside its own environment (``Registry.log_model(path, host=IsolatedHost(...))``).

    Args:
        environments: where environments are built.
        requirements: the exact releases the model needs (``{"scikit-learn": "1.2.2", ...}``); recorded as
            the version's requirements.
        timeout: seconds one prediction may take during registration's checks.
    """

    def __init__(
        self, environments: Environments, requirements: Mapping[str, str], *, timeout: float | None = 120.0
    ) -> None:
        self.environments = environments
        self.requirements = dict(requirements)
        self.timeout = timeout
        self.recorded: dict[str, str] = dict(requirements)  # what the worker found installed, after saving

    def save_and_load(
        self,
        model: Any,
        folder: Path,
        *,
        flavor: str,
        signature: Signature | None,
        options: Mapping[str, Any],
        trusted: bool,
    ) -> tuple[RuntimeSpec, WorkerRuntime]:
        """Save ``model`` (a path) into ``folder`` inside the environment; return its spec and a runtime on it.

        Raises:
            RegistrationError-like errors from the worker (the flavor's own), EnvironmentBuildError.
        """
        if not isinstance(model, str | Path):
            raise ModelLoadError(
                "a model registered in its own environment must be a file or folder: an object in this process "
                "was made by this process's libraries"
            )
        environment = self.environments.ensure(self.requirements, what=f"registering {Path(model).name}")
        private = Path(tempfile.mkdtemp(prefix="corral-register-worker-"))
        (private / "model").mkdir()
        arguments = ["--save", str(Path(model).resolve()), "--options", json.dumps(dict(options))]
        if signature is not None:
            arguments += ["--signature", json.dumps(signature.to_dict())]
        try:
            process, ready = start_worker(
                environment.python,
                self.environments.view(),
                private / "model",
                name=f"registration of {Path(model).name}",
                flavor=flavor,
                arguments=arguments,
                timeout=self.timeout,
                max_memory_mb=None,
                trusted=trusted,
            )
        except BaseException:
            shutil.rmtree(private, ignore_errors=True)
            raise
        shutil.copytree(private / "model", folder, dirs_exist_ok=True)
        spec = RuntimeSpec.from_dict(ready["spec"])
        versions = dict(ready.get("versions", {}))
        self.recorded = {**versions, **self.requirements}
        return spec, WorkerRuntime(process, spec, private, versions)


def close_runtime(runtime: Any) -> None:
    """Stop a runtime that holds a process or files (a worker, an external program); others need nothing."""
    close = getattr(runtime, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()
