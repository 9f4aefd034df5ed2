"""Artifacts are unpacked with path, link and size containment; a refused archive writes nothing.

Each hostile archive is built in memory with tarfile, stored under its real SHA-256 (so the integrity check
passes) and loaded through ``Registry.load``, which must refuse it in unpacking, before any runtime runs.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from crafted import header_only, member, store_version, tar_of

from corral.errors import ModelLoadError, UnsafeArtifactError
from corral.isolation.environments import Environments
from corral.isolation.host import load_isolated
from corral.registry.packaging import MAX_BYTES, pack, unpack
from corral.registry.service import Registry
from corral.storage.artifacts import FsspecArtifactStore
from corral.storage.memory import MemoryRegistryStore


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.fixture
def target(tmp_path: Path) -> Path:
    folder = tmp_path / "deep" / "er" / "target"
    folder.mkdir(parents=True)
    return folder


HOSTILE = {
    "absolute path": (
        tar_of(member("/tmp/corral-zip-slip-absolute")),
        "'/tmp/corral-zip-slip-absolute' is an absolute",
    ),
    "dot-dot": (tar_of(member("model.skops"), member("../../escaped")), "'../../escaped' is a path with '..'"),
    "dot-dot inside": (tar_of(member("a/../../escaped")), "'a/../../escaped' is a path with '..'"),
    "backslash dot-dot": (tar_of(member("..\\escaped")), "is a path with '..'"),
    "symlink": (
        tar_of(member("link", kind=tarfile.SYMTYPE, link="/etc/passwd")),
        "'link' is a symbolic link (to '/etc/passwd')",
    ),
    "symlink then write through it": (
        tar_of(member("d", kind=tarfile.SYMTYPE, link="/tmp"), member("d/corral-through-link")),
        "'d' is a symbolic link",
    ),
    "hard link": (
        tar_of(member("model.skops"), member("hard", kind=tarfile.LNKTYPE, link="/etc/passwd")),
        "'hard' is a hard link",
    ),
    "character device": (tar_of(member("dev", kind=tarfile.CHRTYPE)), "'dev' is a device or a pipe"),
    "fifo": (tar_of(member("pipe", kind=tarfile.FIFOTYPE)), "'pipe' is a device or a pipe"),
    "twice": (tar_of(member("model.skops", b"one"), member("model.skops", b"two")), "is in the archive twice"),
    "bomb by header": (header_only("model.skops", 5 * 1024**3), f"more than {MAX_BYTES} bytes"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_archive_is_refused_and_nothing_is_written(target: Path, tmp_path: Path, case: str) -> None:
    archive, message = HOSTILE[case]

    with pytest.raises(UnsafeArtifactError, match="refusing to unpack it") as caught:
        unpack(archive, target)

    assert message in str(caught.value)
    assert files_under(target) == []  # the member before the bad one was not written either
    assert not (tmp_path / "deep" / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert not Path("/tmp/corral-zip-slip-absolute").exists() and not Path("/tmp/corral-through-link").exists()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_registry_load_refuses_a_hostile_artifact(registry: Registry, case: str) -> None:
    store_version(registry, HOSTILE[case][0])

    with pytest.raises(UnsafeArtifactError, match=HOSTILE[case][1].replace("(", r"\(").replace(")", r"\)")):
        registry.load("crafted/1")


def test_size_and_member_limits_are_parameters(target: Path) -> None:
    archive = tar_of(*(member(f"part-{i}", b"x" * 100) for i in range(11)))

    with pytest.raises(UnsafeArtifactError, match="more than 1000 bytes"):
        unpack(archive, target, max_bytes=1000)
    with pytest.raises(UnsafeArtifactError, match="more than 10 files and folders"):
        unpack(archive, target, max_members=10)
    assert files_under(target) == []
    unpack(archive, target, max_bytes=1100, max_members=11)
    assert len(files_under(target)) == 11


def test_the_registry_applies_its_limits(tmp_path: Path) -> None:
    registry = Registry(
        MemoryRegistryStore(),
        FsspecArtifactStore(str(tmp_path / "artifacts")),
        actor="t",
        max_artifact_bytes=50,
        max_artifact_members=3,
    )
    store_version(registry, tar_of(member("model.skops", b"x" * 51)))
    store_version(registry, tar_of(*(member(f"f{i}") for i in range(4))))

    with pytest.raises(UnsafeArtifactError, match="more than 50 bytes"):
        registry.load("crafted/1")
    with pytest.raises(UnsafeArtifactError, match="more than 3 files"):
        registry.load("crafted/2")
    # a worker process gets the same limits, before any environment is built for it
    environments = Environments(tmp_path / "environments")
    with pytest.raises(UnsafeArtifactError, match="more than 3 files"):
        load_isolated(registry, registry.get_version("crafted", 2), environments, name="crafted/2")
    assert not (tmp_path / "environments").exists() or not any((tmp_path / "environments").iterdir())


def test_a_truncated_archive_is_a_load_error_and_leaves_nothing(target: Path) -> None:
    archive = tar_of(member("a", b"x" * 5000), member("b", b"y" * 5000))

    with pytest.raises(ModelLoadError, match="not a readable model archive"):
        unpack(archive[:7000], target)
    assert files_under(target) == []


def test_pack_round_trips_and_refuses_links(tmp_path: Path, target: Path) -> None:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.skops").write_bytes(b"weights")
    (folder / "sub" / "code.py").write_text("x = 1\n")

    archive = pack(folder)
    assert archive == pack(folder)  # deterministic
    unpack(archive, target)
    assert files_under(target) == ["model.skops", "sub", "sub/code.py"]
    assert (target / "model.skops").read_bytes() == b"weights"

    (folder / "escape").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeArtifactError, match="'escape', which is a link or a special file"):
        pack(folder)
