"""What registration records about the environment: library versions, git commit, user."""

from __future__ import annotations

import getpass
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

BASE_REQUIREMENTS = ("numpy", "pandas", "corral")


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
