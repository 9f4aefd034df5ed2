"""A saved model folder <-> one deterministic tar archive (the artifact).

The same files always give the same bytes (sorted names, zeroed times and
owners), so the artifact's SHA-256 identifies the model's files. Extraction
uses tarfile's ``data`` filter: no absolute paths, links or devices.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from corral.errors import ModelLoadError


def pack(folder: Path) -> bytes:
    """Archive every file under ``folder`` deterministically."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_file():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            elif path.is_dir():
                tar.addfile(info)
    return buffer.getvalue()


def unpack(data: bytes, folder: Path) -> None:
    """Extract an artifact made by :func:`pack` into ``folder``."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            tar.extractall(folder, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ModelLoadError(f"the artifact is not a readable model archive: {exc}") from exc
