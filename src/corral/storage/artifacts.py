"""Content-addressed artifact storage over fsspec: a local folder, ``memory://``, ``s3://``...

Blobs live at ``<root>/sha256/<first two hex>/<digest>``. A write goes to a
temporary name first and is renamed into place, so a reader never sees half a
blob; every read hashes the bytes again and refuses a mismatch.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

import fsspec

from corral.errors import ArtifactIntegrityError, ArtifactNotFoundError, StoreError
from corral.registry.ports import ArtifactStore

_HEX64 = re.compile(r"[0-9a-f]{64}")


class FsspecArtifactStore:
    """An :class:`ArtifactStore` on any fsspec filesystem; plain paths mean the local disk."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self._fs, self._root = fsspec.core.url_to_fs(url)
        except (ValueError, ImportError) as exc:
            raise StoreError(f"cannot open artifact store {url!r}: {exc}") from exc
        self._local = "file" in self._fs.protocol or "local" in self._fs.protocol
        self._root = self._root.rstrip("/")

    def _path(self, sha256: str) -> str:
        if not _HEX64.fullmatch(sha256):
            raise ArtifactNotFoundError(f"{sha256!r} is not a SHA-256 hex digest")
        return f"{self._root}/sha256/{sha256[:2]}/{sha256}"

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        try:
            if self._intact(path, digest, len(data)):
                return digest
            if self._local:
                _atomic_local_write(Path(path), data)
            else:
                self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                self._remote_write(path, data)
        except OSError as exc:
            raise StoreError(f"could not write artifact {digest} to {self.url}: {exc}") from exc
        return digest

    def _remote_write(self, path: str, data: bytes) -> None:
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            self._fs.pipe_file(tmp, data)
            self._fs.mv(tmp, path)
        finally:
            try:
                if self._fs.exists(tmp):
                    self._fs.rm_file(tmp)
            except OSError:
                pass  # the write's own error says more

    def _intact(self, path: str, digest: str, size: int) -> bool:
        """Whether ``path`` already holds the blob; a damaged copy (same size or not) is not it."""
        if not self._fs.exists(path) or self._fs.size(path) != size:
            return False
        try:
            return hashlib.sha256(self._fs.cat_file(path)).hexdigest() == digest
        except FileNotFoundError:  # deleted meanwhile
            return False

    def get(self, sha256: str) -> bytes:
        path = self._path(sha256)
        try:
            data: bytes = self._fs.cat_file(path)
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"artifact {sha256} is not in {self.url}") from None
        except OSError as exc:
            raise StoreError(f"could not read artifact {sha256} from {self.url}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArtifactIntegrityError(
                f"artifact bytes in {self.url} hash to {actual}, not {sha256}: the file was changed or truncated",
                expected=sha256,
                actual=actual,
            )
        return data

    def exists(self, sha256: str) -> bool:
        return bool(self._fs.exists(self._path(sha256)))

    def delete(self, sha256: str) -> None:
        path = self._path(sha256)
        if self._fs.exists(path):
            self._fs.rm_file(path)


def _atomic_local_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_: type[ArtifactStore] = FsspecArtifactStore
