"""Private files and Ed25519 key files (corral.core.keyfiles), shared by the audit key, the artifact-signing key
and the admin token file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from corral.core.keyfiles import (
    check_private,
    key_id,
    load_private_key,
    public_keys_from_pem,
    public_pem,
    write_private,
)
from corral.errors import ConfigurationError


def test_write_private_is_owner_only_in_an_owner_only_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "secret"
    write_private(path, b"one")
    assert path.read_bytes() == b"one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    write_private(path, b"two")  # replaces by default
    assert path.read_bytes() == b"two" and os.listdir(path.parent) == ["secret"]  # no temporary file left


def test_keep_existing_never_replaces_a_file_another_process_wrote(tmp_path: Path) -> None:
    path = tmp_path / "key"
    write_private(path, b"first", keep_existing=True)
    write_private(path, b"second", keep_existing=True)
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["key"]


def test_replace_does_not_write_through_a_planted_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"untouched")
    link = tmp_path / "secret"
    link.symlink_to(target)
    write_private(link, b"secret")
    assert target.read_bytes() == b"untouched" and not link.is_symlink() and link.read_bytes() == b"secret"


def test_a_readable_private_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "key"
    write_private(path, b"x")
    path.chmod(0o644)
    with pytest.raises(
        ConfigurationError, match=r"my key .*key is readable by group or others \(mode 0644\).*chmod 600"
    ):
        check_private(path, "my key")


def test_a_key_is_created_once_and_loaded_the_same(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.pem"
    with pytest.raises(ConfigurationError, match=r"test key .* does not exist"):
        load_private_key(path, "test key", create=False)
    first = load_private_key(path, "test key")
    again = load_private_key(path, "test key", create=False)
    assert key_id(first.public_key()) == key_id(again.public_key()) and len(key_id(first.public_key())) == 16
    pem = public_pem(first.public_key())
    assert list(public_keys_from_pem(pem + pem)) == [key_id(first.public_key())]


def test_bad_key_files_and_bad_public_keys_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.pem"
    write_private(path, b"not a key")
    with pytest.raises(ConfigurationError, match=r"test key .*bad\.pem is not an unencrypted PEM private key"):
        load_private_key(path, "test key")
    with pytest.raises(ConfigurationError, match="no PEM public key"):
        public_keys_from_pem("hello")
    with pytest.raises(ConfigurationError, match="does not parse"):
        public_keys_from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
