"""Versions crafted past registration, as an attacker with write access to the stores would make them.

``store_version`` puts an archive into the artifact store under its real SHA-256 and records a version
pointing at it, so ``Registry.load`` (and a server) reach the checks that guard loading.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from corral.core.schema import Signature, Task
from corral.registry.entities import Lineage, ModelVersion
from corral.registry.service import Registry
from corral.runtimes.base import RuntimeSpec

PICKLE_SPEC = RuntimeSpec("sklearn", Task.REGRESSION, options={"format": "pickle", "file": "model.pkl"})
SKOPS_SPEC = RuntimeSpec("sklearn", Task.REGRESSION, options={"format": "skops", "file": "model.skops"})


class Sentinel:
    """Unpickled, it creates ``path``: proof that the pickle ran code in the process that loaded it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (str(self.path), "w"))


def member(name: str, data: bytes = b"x", *, kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple[Any, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def header_only(name: str, size: int) -> bytes:
    """A tar holding one member that claims ``size`` bytes but carries none (a bomb, by its header)."""
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + b"\0" * 1024


def store_version(
    registry: Registry,
    archive: bytes,
    *,
    name: str = "crafted",
    runtime: RuntimeSpec = SKOPS_SPEC,
    signature: Signature | None = None,
    flavor: str | None = None,
) -> ModelVersion:
    draft = ModelVersion(
        name=name,
        version=0,
        flavor=flavor or runtime.flavor,
        artifact_sha256=registry.artifacts.put(archive),
        artifact_size=len(archive),
        signature=signature or Signature.infer(pd.DataFrame({"x": [0.0, 1.0, 2.0]})),
        runtime=runtime,
        lineage=Lineage(),
        created_by="mallory",
        created_at=datetime.now(UTC),
    )
    return registry.store.create_version(draft, None)


def pickle_archive(payload: Any, file: str = "model.pkl") -> bytes:
    return tar_of(member(file, pickle.dumps(payload, protocol=5)))
