"""What registration records about the environment: library versions, git commit, user."""

from __future__ import annotations

import getpass
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

from corral.errors import ConfigurationError

BASE_REQUIREMENTS = ("numpy", "pandas", "corral")
NOT_INSTALLED = ("corral",)  # never installed into a model's environment: workers see the server's own
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?$")
_VERSION = re.compile(r"^[A-Za-z0-9.+!*_-]+$")


def requirement_lines(requirements: Mapping[str, str]) -> list[str]:
    """``name==version`` lines, sorted, leaving out corral itself.

    Raises:
        ConfigurationError: a name or version that is not a plain distribution name and release (nothing
            from a requirement reaches a shell or a URL).
    """
    lines = []
    for name, version in sorted(requirements.items(), key=lambda item: item[0].lower()):
        if name.lower() in NOT_INSTALLED:
            continue
        if not _NAME.match(name):
            raise ConfigurationError(f"requirement name {name!r} is not a distribution name")
        if not _VERSION.match(str(version)):
            raise ConfigurationError(f"requirement {name}: version {version!r} is not a release number")
        lines.append(f"{name}=={version}")
    return lines


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of the named distributions; those not installed are left out."""
    found: dict[str, str] = {}
    for name in [*BASE_REQUIREMENTS, *names]:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return dict(sorted(found.items()))


def python_version() -> str:
    return platform.python_version()


def git_state(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """The commit checked out where the code runs, and whether the tree has changes.

    ``(None, None)`` outside a git checkout or without git.
    """

    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd or Path.cwd(), capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = run("status", "--porcelain", "--untracked-files=no")
    return commit, bool(status) if status is not None else None


def current_user() -> str:
    """The login name of the process (settings may name someone else)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
