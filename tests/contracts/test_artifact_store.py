"""The ArtifactStore contract, over a local folder and fsspec's ``memory://``."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.errors import ArtifactIntegrityError, ArtifactNotFoundError, StoreError
from corral.registry.ports import ArtifactStore
from corral.storage import open_artifact_store
from corral.storage.artifacts import FsspecArtifactStore

BLOB = b"corral model archive \x00\x01\x02 " * 100
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()
SMALL_SHA = hashlib.sha256(b"already there").hexdigest()


def _memory_url() -> str:
    return f"memory://corral-test-{uuid.uuid4().hex}"


def _files(store: FsspecArtifactStore) -> list[str]:
    """Every file under the store's root, relative to it."""
    fs, root = fsspec.core.url_to_fs(store.url)
    root = root.rstrip("/")
    if not fs.exists(root):
        return []
    return sorted(p[len(root) + 1 :] if p.startswith(root) else p for p in fs.find(root))


@pytest.fixture(params=["local", "memory"])
def artifact_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FsspecArtifactStore]:
    if request.param == "local":
        store = open_artifact_store(str(tmp_path / "artifacts"))
        assert isinstance(store, FsspecArtifactStore)
        yield store
    else:
        url = _memory_url()
        store = open_artifact_store(url)
        assert isinstance(store, FsspecArtifactStore)
        yield store
        fs, root = fsspec.core.url_to_fs(url)
        if fs.exists(root):
            fs.rm(root, recursive=True)


def test_put_returns_the_sha256_and_get_returns_the_bytes(artifact_store: ArtifactStore) -> None:
    digest = artifact_store.put(BLOB)

    assert digest == BLOB_SHA
    assert artifact_store.get(digest) == BLOB
    assert artifact_store.exists(digest)


def test_blobs_live_under_their_hash(artifact_store: FsspecArtifactStore) -> None:
    artifact_store.put(BLOB)

    assert _files(artifact_store) == [f"sha256/{BLOB_SHA[:2]}/{BLOB_SHA}"]


def test_empty_bytes_are_a_blob_too(artifact_store: ArtifactStore) -> None:
    digest = artifact_store.put(b"")

    assert digest == hashlib.sha256(b"").hexdigest()
    assert artifact_store.get(digest) == b""


def test_put_is_idempotent(artifact_store: FsspecArtifactStore) -> None:
    first = artifact_store.put(BLOB)
    second = artifact_store.put(BLOB)
    other = artifact_store.put(b"another blob")

    assert first == second == BLOB_SHA
    assert artifact_store.get(first) == BLOB
    assert artifact_store.get(other) == b"another blob"
    assert len(_files(artifact_store)) == 2


def test_exists_and_delete(artifact_store: FsspecArtifactStore) -> None:
    keep = artifact_store.put(b"keep me")
    digest = artifact_store.put(BLOB)

    artifact_store.delete(digest)

    assert not artifact_store.exists(digest)
    assert artifact_store.exists(keep)
    assert artifact_store.get(keep) == b"keep me"
    artifact_store.delete(digest)  # deleting what is gone is fine
    with pytest.raises(ArtifactNotFoundError, match=digest):
        artifact_store.get(digest)


def test_a_missing_blob_is_not_found(artifact_store: ArtifactStore) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()

    assert not artifact_store.exists(missing)
    with pytest.raises(ArtifactNotFoundError, match=missing):
        artifact_store.get(missing)


@pytest.mark.parametrize(
    "bad",
    [
        "../../etc/passwd",
        "../" * 20 + "etc/passwd",
        "/etc/passwd",
        "",
        "a" * 63,
        "a" * 65,
        "A" * 64,  # digests are lowercase hex
        "g" * 64,
        "aa/" + "a" * 61,
        "a" * 64 + "\n",
    ],
)
def test_keys_that_are_not_sha256_hex_are_refused(artifact_store: FsspecArtifactStore, bad: str) -> None:
    artifact_store.put(BLOB)

    with pytest.raises(ArtifactNotFoundError, match="not a SHA-256"):
        artifact_store.get(bad)
    with pytest.raises(ArtifactNotFoundError):
        artifact_store.exists(bad)
    with pytest.raises(ArtifactNotFoundError):
        artifact_store.delete(bad)
    assert artifact_store.get(BLOB_SHA) == BLOB


def test_no_temporary_files_are_left_behind(artifact_store: FsspecArtifactStore) -> None:
    for i in range(5):
        artifact_store.put(f"blob {i}".encode() * 1000)
        artifact_store.put(f"blob {i}".encode() * 1000)

    files = _files(artifact_store)
    assert len(files) == 5
    assert all(f.startswith("sha256/") and not f.endswith(".tmp") for f in files)


# -- the local disk: corruption and failed writes ----------------------------------------


@pytest.fixture
def local_store(tmp_path: Path) -> FsspecArtifactStore:
    return FsspecArtifactStore(str(tmp_path / "artifacts"))


def _blob_path(store: FsspecArtifactStore, digest: str) -> Path:
    return Path(store.url) / "sha256" / digest[:2] / digest


def test_a_modified_blob_fails_its_integrity_check(local_store: FsspecArtifactStore) -> None:
    digest = local_store.put(BLOB)
    path = _blob_path(local_store, digest)
    corrupt = bytearray(path.read_bytes())
    corrupt[10] ^= 0xFF
    path.write_bytes(bytes(corrupt))

    with pytest.raises(ArtifactIntegrityError) as caught:
        local_store.get(digest)

    actual = hashlib.sha256(bytes(corrupt)).hexdigest()
    assert digest in str(caught.value)
    assert actual in str(caught.value)
    assert (caught.value.expected, caught.value.actual) == (digest, actual)


def test_a_truncated_blob_fails_its_integrity_check(local_store: FsspecArtifactStore) -> None:
    digest = local_store.put(BLOB)
    path = _blob_path(local_store, digest)
    with open(path, "r+b") as fh:
        fh.truncate(len(BLOB) // 2)

    with pytest.raises(ArtifactIntegrityError) as caught:
        local_store.get(digest)

    assert digest in str(caught.value)
    assert hashlib.sha256(BLOB[: len(BLOB) // 2]).hexdigest() in str(caught.value)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_putting_the_bytes_again_repairs_a_damaged_blob(local_store: FsspecArtifactStore, damage: str) -> None:
    digest = local_store.put(BLOB)
    path = _blob_path(local_store, digest)
    if damage == "truncate":
        path.write_bytes(BLOB[:10])
    else:
        path.write_bytes(bytes([BLOB[0] ^ 0xFF]) + BLOB[1:])  # same size, different bytes

    assert local_store.put(BLOB) == digest

    assert local_store.get(digest) == BLOB


def test_a_failed_write_leaves_no_temporary_file(
    artifact_store: FsspecArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    artifact_store.put(b"already there")
    monkeypatch.setattr(os, "replace", refuse)  # the local store's rename into place
    monkeypatch.setattr(artifact_store._fs, "mv", refuse)  # fsspec's, for the others

    with pytest.raises(StoreError, match="No space left"):
        artifact_store.put(BLOB)

    monkeypatch.undo()
    assert not artifact_store.exists(BLOB_SHA)
    assert _files(artifact_store) == [f"sha256/{SMALL_SHA[:2]}/{SMALL_SHA}"]


# -- a property ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "memory"])
@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=4096))
def test_any_bytes_round_trip(tmp_path_factory: pytest.TempPathFactory, kind: str, data: bytes) -> None:
    url = str(tmp_path_factory.mktemp("prop")) if kind == "local" else _memory_url()
    store = open_artifact_store(url)

    digest = store.put(data)

    assert digest == hashlib.sha256(data).hexdigest()
    assert store.get(digest) == data
    assert store.put(data) == digest
    assert store.exists(digest)
    store.delete(digest)
    assert not store.exists(digest)
