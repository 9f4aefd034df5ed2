"""The checkpoint signing key: created once (0600 in a 0700 folder), reused, refused when others can read it."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from corral.audit.keys import Signer, Verifier, key_path, load_signer, load_verifier
from corral.audit.records import Checkpoint
from corral.errors import ConfigurationError

posix = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


def signed(signer: Signer, seq: int = 7, hash_: str = "ab" * 32) -> Checkpoint:
    unsigned = Checkpoint(seq, hash_, datetime(2024, 5, 1, tzinfo=UTC), signer.key_id, "")
    return Checkpoint(seq, hash_, unsigned.created_at, signer.key_id, signer.sign(unsigned.message()))


@posix
def test_the_key_is_created_private_and_reused(tmp_path: Path) -> None:
    folder = tmp_path / "home" / "audit"
    first = load_signer(folder)
    path = key_path(folder)
    assert path.exists() and first.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [p.name for p in folder.iterdir()] == ["signing-key.pem"]  # no temporary file left behind
    again = Signer.load_or_create(path)
    assert again.key_id == first.key_id and len(first.key_id) == 16
    assert again.public_pem() == first.public_pem() and first.public_pem().startswith("-----BEGIN PUBLIC KEY-----")
    assert load_verifier(folder).key_ids == [first.key_id]


@posix
def test_a_key_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = key_path(tmp_path)
    Signer.load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by group or others") as caught:
        Signer.load_or_create(path)
    assert str(path) in str(caught.value) and f"chmod 600 {path}" in str(caught.value)
    path.chmod(0o600)
    Signer.load_or_create(path)


def test_a_file_that_is_not_a_private_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_text("hello")
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="not an unencrypted PEM private key"):
        Signer.load_or_create(path)


def test_signatures_verify_only_for_the_signed_statement_and_key() -> None:
    signer = Signer.generate()
    checkpoint = signed(signer)
    verifier = Verifier.from_pem(signer.public_pem())
    assert verifier.verify(checkpoint) and signer.verifier().verify(checkpoint)
    other = Checkpoint(8, checkpoint.hash, checkpoint.created_at, checkpoint.key_id, checkpoint.signature)
    assert not verifier.verify(other)  # the signature covers seq and hash
    assert not verifier.verify(Checkpoint(7, checkpoint.hash, checkpoint.created_at, checkpoint.key_id, "zz"))
    stranger = Signer.generate()
    assert not verifier.verify(signed(stranger))
    both = Verifier.from_pem(signer.public_pem() + stranger.public_pem())
    assert both.verify(signed(stranger)) and both.verify(checkpoint)
    assert both.key_ids == sorted([signer.key_id, stranger.key_id])


def test_key_id_is_stable_and_public_keys_are_checked() -> None:
    signer = Signer.generate()
    assert Verifier.from_pem(signer.public_pem()).key_ids == [signer.key_id]
    assert Verifier.from_pem(Verifier.from_pem(signer.public_pem()).public_pem()).key_ids == [signer.key_id]
    with pytest.raises(ConfigurationError, match="no PEM public key"):
        Verifier.from_pem("nothing here")
