"""The Ed25519 key that signs audit checkpoints, and the public half that checks them.

corral creates the private key on first use, as PEM at
``<CORRAL_HOME>/audit/signing-key.pem``: the file is created with mode 0600 in a
folder created with mode 0700, written to a temporary name and hard-linked into
place, so two processes starting at once end up with the same key (the second
one loads the first one's file). A key file that group or others can read is
refused, with the ``chmod`` that fixes it.

The public half (:meth:`Signer.public_pem`, ``corral audit public-key``) is what
a regulator or an auditor keeps: with it, and the checkpoints written outside the
database, anyone can check that the log was not rewritten. A key is named by its
``key_id``: the first 16 hex digits of the SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from corral.audit.records import Checkpoint
from corral.core.keyfiles import key_id, load_private_key, public_keys_from_pem, public_pem

KEY_FILE = "signing-key.pem"
"""The private key's file name in the audit folder."""


class Signer:
    """Signs checkpoints with one Ed25519 private key."""

    def __init__(self, key: Ed25519PrivateKey, *, path: Path | None = None) -> None:
        self._key = key
        self.path = path
        self.key_id = key_id(key.public_key())

    @classmethod
    def generate(cls) -> Signer:
        """A fresh key kept in memory only (tests, throwaway setups)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path | str) -> Signer:
        """The key at ``path``, created (0600, in a 0700 folder) when there is none.

        Raises:
            ConfigurationError: the file is readable by group or others, or is not an Ed25519 private key in PEM.
        """
        path = Path(path)
        key = load_private_key(path, "audit signing key")
        return cls(key, path=path)

    def sign(self, data: bytes) -> str:
        """The Ed25519 signature of ``data``, as hex."""
        return self._key.sign(data).hex()

    def public_pem(self) -> str:
        """The public key as PEM (SubjectPublicKeyInfo), safe to hand out."""
        return public_pem(self._key.public_key())

    def verifier(self) -> Verifier:
        """A verifier for this key's signatures."""
        return Verifier({self.key_id: self._key.public_key()})


class Verifier:
    """Checks checkpoint signatures against one or more public keys, by ``key_id``."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    @classmethod
    def from_pem(cls, text: str) -> Verifier:
        """Public keys in PEM (one, or several concatenated, e.g. the current and a retired key).

        Raises:
            ConfigurationError: no PEM public key in ``text``, or one that is not Ed25519.
        """
        return cls(public_keys_from_pem(text))

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def knows(self, key: str) -> bool:
        return key in self._keys

    def verify(self, checkpoint: Checkpoint) -> bool:
        """Whether ``checkpoint`` carries a valid signature by one of these keys over its :meth:`message`."""
        public = self._keys.get(checkpoint.key_id)
        if public is None:
            return False
        try:
            public.verify(bytes.fromhex(checkpoint.signature), checkpoint.message())
        except (InvalidSignature, ValueError):
            return False
        return True

    def public_pem(self) -> str:
        return "".join(public_pem(self._keys[k]) for k in self.key_ids)


def key_path(folder: Path | str) -> Path:
    """Where the signing key lives in the audit folder (``<CORRAL_HOME>/audit``)."""
    return Path(folder) / KEY_FILE


def load_signer(folder: Path | str) -> Signer:
    """The signing key of the audit folder ``folder``, created on first use."""
    return Signer.load_or_create(key_path(folder))


def load_verifier(folder: Path | str) -> Verifier:
    """The verifier for the signing key of the audit folder ``folder`` (created on first use)."""
    return load_signer(folder).verifier()
