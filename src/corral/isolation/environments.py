"""Virtual environments built from a version's recorded requirements, cached by their hash.

``Environments(root).ensure({"scikit-learn": "1.2.2", "numpy": "1.26.4"})`` returns the Python interpreter
of an environment holding exactly those releases, building it the first time: with ``uv`` when it is
installed (fast, its own download cache), else ``python -m venv`` and ``pip``. Environments live under
``root/<key>``, where the key hashes the sorted requirements, the Python version and the platform, so two
versions needing the same libraries share one, and servers reuse them across restarts.

A build happens in a scratch folder renamed into place only when complete (a half-built environment is
never used), under a file lock, so several server processes wanting the same environment build it once.
A failed build raises :class:`~corral.errors.EnvironmentBuildError` naming the requirement the installer
could not satisfy, and leaves nothing behind.

corral itself is not installed into an environment: the worker sees a small view of corral's own package
(``core``, ``errors``, ``runtimes``, ``isolation``) through ``PYTHONPATH``, so it needs only numpy, pandas
and the model's framework.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from corral.errors import ConfigurationError, EnvironmentBuildError
from corral.registry.environment import requirement_lines

log = logging.getLogger("corral.isolation")

_MARKER = "corral-environment.json"
_VIEW_PARTS = ("core", "errors.py", "runtimes", "isolation")


@dataclass(frozen=True, slots=True)
class Environment:
    """A built environment: its key, folder, interpreter and requirements."""

    key: str
    path: Path
    python: Path
    requirements: dict[str, str]
    created_at: float


def environment_key(requirements: Mapping[str, str]) -> str:
    """The cache key: the requirements, this Python's version and the platform, hashed."""
    recipe = {
        "requirements": requirement_lines(requirements),
        "python": ".".join(platform.python_version_tuple()[:2]),
        "platform": f"{sys.platform}-{platform.machine()}",
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:24]


class Environments:
    """Builds, finds and lists model environments under ``root``.

    Args:
        root: the cache folder (default ``<CORRAL_HOME>/environments``).
        installer: ``"auto"`` (uv when found, else pip), ``"uv"`` or ``"pip"``.
        timeout: seconds one build may take.
        index_url: a package index to install from instead of the default.
    """

    def __init__(
        self, root: Path, *, installer: str = "auto", timeout: float = 900.0, index_url: str | None = None
    ) -> None:
        if installer not in ("auto", "uv", "pip"):
            raise ConfigurationError(f"installer must be auto, uv or pip, not {installer!r}")
        self.root = Path(root)
        self.installer = installer
        self.timeout = timeout
        self.index_url = index_url

    # -- building -------------------------------------------------------------------

    def ensure(self, requirements: Mapping[str, str], *, what: str = "a model") -> Environment:
        """The environment for ``requirements``, built now if it does not exist yet.

        Raises:
            EnvironmentBuildError: the installer failed; the message names the requirement it could not
                satisfy and ``what`` needed it.
            ConfigurationError: a malformed requirement.
        """
        lines = requirement_lines(requirements)
        key = environment_key(requirements)
        target = self.root / key
        found = self._read(target)
        if found is not None:
            return found
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked(key):
            found = self._read(target)  # another process built it while we waited
            if found is not None:
                return found
            scratch = self.root / f".building-{key}-{os.getpid()}"
            shutil.rmtree(scratch, ignore_errors=True)
            started = time.monotonic()
            log.info("building the environment %s for %s: %s", key, what, " ".join(lines))
            try:
                self._build(scratch, lines, what)
                (scratch / _MARKER).write_text(
                    json.dumps({"key": key, "requirements": dict(requirements), "created_at": time.time()})
                )
                scratch.rename(target)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
            log.info("built the environment %s in %.1f s", key, time.monotonic() - started)
        built = self._read(target)
        assert built is not None
        return built

    def _build(self, folder: Path, lines: list[str], what: str) -> None:
        uv = self._uv()
        python = folder / "bin" / "python"
        if uv is not None:
            self._run([uv, "venv", "--quiet", "--python", sys.executable, str(folder)], lines, what)
            command = [uv, "pip", "install", "--quiet", "--python", str(python)]
        else:
            self._run([sys.executable, "-m", "venv", str(folder)], lines, what)
            command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        if self.index_url:
            command += ["--index-url", self.index_url]
        if lines:
            self._run([*command, *lines], lines, what)

    def _uv(self) -> str | None:
        if self.installer == "pip":
            return None
        found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
        if found is None and self.installer == "uv":
            raise ConfigurationError("installer 'uv' was asked for but no uv executable is on PATH")
        return found

    def _run(self, command: list[str], lines: list[str], what: str) -> None:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise EnvironmentBuildError(
                f"building the environment for {what} took longer than {self.timeout:g} s ({' '.join(lines)})"
            ) from None
        except OSError as exc:
            raise EnvironmentBuildError(f"cannot run {command[0]} to build the environment for {what}: {exc}") from None
        if done.returncode != 0:
            output = f"{done.stderr}\n{done.stdout}"
            culprit = _culprit(output, lines)
            detail = _last_error(output)
            named = f"the requirement {culprit} could not be installed" if culprit else "the installer failed"
            raise EnvironmentBuildError(f"building the environment for {what}: {named}: {detail}")

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        with (self.root / f".{key}.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- finding --------------------------------------------------------------------

    def _read(self, folder: Path) -> Environment | None:
        marker = folder / _MARKER
        python = folder / "bin" / "python"
        if not marker.is_file() or not python.exists():
            return None
        data = json.loads(marker.read_text())
        return Environment(data["key"], folder, python, dict(data["requirements"]), float(data["created_at"]))

    def list(self) -> list[Environment]:
        """Every built environment, oldest first."""
        if not self.root.is_dir():
            return []
        found = [self._read(path) for path in self.root.iterdir() if path.is_dir() and not path.name.startswith(".")]
        return sorted((env for env in found if env is not None), key=lambda env: env.created_at)

    def remove(self, key: str) -> None:
        """Delete one environment (running workers keep their open files until they stop)."""
        target = self.root / key
        if self._read(target) is None:
            raise ConfigurationError(f"no environment {key!r} under {self.root}")
        with self._locked(key):
            shutil.rmtree(target)

    # -- the worker's view of corral ---------------------------------------------------

    def view(self) -> Path:
        """A folder for a worker's ``PYTHONPATH`` holding only the parts of corral a worker imports.

        Links into this installation of corral, so workers always run the server's own code.
        """
        package = Path(__file__).resolve().parent.parent
        view = self.root / f".view-{hashlib.sha256(str(package).encode()).hexdigest()[:12]}"
        if not (view / "corral" / "__init__.py").is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            scratch = self.root / f".view-building-{os.getpid()}"
            shutil.rmtree(scratch, ignore_errors=True)
            (scratch / "corral").mkdir(parents=True)
            (scratch / "corral" / "__init__.py").write_text('"""corral, as a model worker sees it."""\n')
            for part in _VIEW_PARTS:
                (scratch / "corral" / part).symlink_to(package / part)
            try:
                scratch.rename(view)
            except OSError:  # another process made it first
                shutil.rmtree(scratch, ignore_errors=True)
        return view


def _culprit(output: str, lines: list[str]) -> str | None:
    """The requirement an installer's output blames, if one is named in it."""
    lowered = output.lower()
    for line in lines:
        name = line.split("==")[0].lower()
        spellings = {name, name.replace("-", "_"), name.replace("_", "-")}
        if any(f"{spelling}==" in lowered or f"for {spelling}" in lowered for spelling in spellings):
            return line
    return None


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "error", "×", "╰─▶", "Because"))]
    chosen = errors[-3:] if errors else lines[-3:]
    return " ".join(chosen)[:600] or "no output"
