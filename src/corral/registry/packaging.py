"""A saved model folder <-> one deterministic tar archive (the artifact).

The same files always give the same bytes (sorted names, zeroed times and
owners), so the artifact's SHA-256 identifies the model's files.

Extraction trusts nothing in the archive. Every member header is read and
checked before a byte is written: only regular files and folders, each named
by a relative path without ``..`` (no zip-slip), no links, devices or sparse
files, no name twice, at most ``max_members`` members and ``max_bytes`` bytes
in all (no archive bombs). Then the members are extracted into a fresh scratch
folder inside the target and moved into place, so a refused or failed
extraction leaves the target as it was. tarfile's ``data`` filter stays on as
a second guard.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from corral.errors import ModelLoadError, UnsafeArtifactError

MAX_BYTES = 4 * 1024**3
"""Largest total size of an artifact's files, unpacked (4 GiB)."""

MAX_MEMBERS = 10_000
"""Most files and folders one artifact may hold."""

_DRIVE = re.compile(r"^[A-Za-z]:")


def pack(folder: Path) -> bytes:
    """Archive every file under ``folder`` deterministically.

    Raises:
        UnsafeArtifactError: the folder holds a link or something that is neither a file nor a folder
            (an artifact holds regular files only; unpacking would refuse it).
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise UnsafeArtifactError(
                    f"the saved model holds {name!r}, which is a link or a special file: an artifact holds "
                    "regular files and folders only; copy what it points at instead"
                )
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_file():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def unpack(data: bytes, folder: Path, *, max_bytes: int = MAX_BYTES, max_members: int = MAX_MEMBERS) -> None:
    """Extract an artifact made by :func:`pack` into ``folder`` (an existing, empty folder).

    Raises:
        UnsafeArtifactError: a member is a link, a device or sparse, has an absolute name or a ``..`` part, comes
            twice, or the archive holds more than ``max_members`` members or ``max_bytes`` bytes; nothing is
            written.
        ModelLoadError: the bytes are not a readable archive; nothing is left behind.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = _checked(tar, max_bytes=max_bytes, max_members=max_members)
            scratch = Path(tempfile.mkdtemp(prefix=".corral-unpack-", dir=folder))
            moved: list[Path] = []
            try:
                tar.extractall(scratch, members=members, filter="data")
                for entry in sorted(scratch.iterdir()):
                    moved.append(entry.rename(folder / entry.name))
            except BaseException:
                for path in moved:  # a failure half-way (a full disk): take back what was moved
                    _remove(path)
                raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    except UnsafeArtifactError:
        raise
    except (tarfile.TarError, OSError) as exc:
        raise ModelLoadError(f"the artifact is not a readable model archive: {exc}") from exc


def _checked(tar: tarfile.TarFile, *, max_bytes: int, max_members: int) -> list[tarfile.TarInfo]:
    """Every member header, checked before anything is extracted."""
    members: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    total = 0
    for member in tar:  # reads headers only: the archive is in memory, nothing is extracted yet
        members.append(member)
        if len(members) > max_members:
            raise UnsafeArtifactError(
                f"the artifact holds more than {max_members} files and folders; refusing to unpack it"
            )
        name = member.name
        why = _bad_name(name)
        if why is None:
            if member.issym() or member.islnk():
                why = f"a {'symbolic' if member.issym() else 'hard'} link (to {member.linkname!r})"
            elif member.isdev():
                why = "a device or a pipe"
            elif member.issparse():
                why = "a sparse file"
            elif not (member.isreg() or member.isdir()):
                why = f"of tar type {member.type!r}, neither a file nor a folder"
            elif name.rstrip("/") in seen:
                why = "in the archive twice"
        if why is not None:
            raise UnsafeArtifactError(f"the artifact's member {name!r} is {why}; refusing to unpack it")
        seen.add(name.rstrip("/"))
        total += member.size if member.isreg() else 0
        if total > max_bytes:
            raise UnsafeArtifactError(
                f"the artifact unpacks to more than {max_bytes} bytes (the limit); refusing to unpack it"
            )
    return members


def _bad_name(name: str) -> str | None:
    if not name or "\x00" in name:
        return "unnamed"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "an absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "a path with '..' in it"
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
