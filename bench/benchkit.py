"""Helpers shared by the benchmark scripts (importable because they run from this folder)."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from pathlib import Path
from typing import Any


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the results."""
    print(message, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """The facts of this machine that a benchmark report must state."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gib = round(int(line.split()[1]) / 1024**2, 1)
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": ram_gib, "platform": platform.platform()}


def corral_commit() -> str | None:
    """The checked-out commit of this repository, marked when the tree has uncommitted changes."""
    from corral.registry.environment import git_state

    commit, dirty = git_state(Path(__file__).parent)
    if commit is None:
        return None
    return commit[:7] + (" (uncommitted changes)" if dirty else "")
