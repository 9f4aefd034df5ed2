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

import contextlib
import hashlib
import os
import re
import stat
import uuid
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from corral.audit.records import Checkpoint
from corral.errors import ConfigurationError

KEY_FILE = "signing-key.pem"
"""The private key's file name in the audit folder."""

_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


def key_id(public: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


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
        if not path.exists():
            _create(path)
        _check_private(path)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"audit signing key {path} is not an unencrypted PEM private key: {exc}") from exc
        except OSError as exc:
            raise ConfigurationError(f"cannot read audit signing key {path}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError(f"audit signing key {path} is a {type(key).__name__}, not an Ed25519 key")
        return cls(key, path=path)

    def sign(self, data: bytes) -> str:
        """The Ed25519 signature of ``data``, as hex."""
        return self._key.sign(data).hex()

    def public_pem(self) -> str:
        """The public key as PEM (SubjectPublicKeyInfo), safe to hand out."""
        return _public_pem(self._key.public_key())

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
        blocks = _PEM_BLOCK.findall(text)
        if not blocks:
            raise ConfigurationError("no PEM public key (-----BEGIN PUBLIC KEY-----) found")
        keys: dict[str, Ed25519PublicKey] = {}
        for block in blocks:
            try:
                public = serialization.load_pem_public_key(block.encode())
            except ValueError as exc:
                raise ConfigurationError(f"a public key does not parse: {exc}") from exc
            if not isinstance(public, Ed25519PublicKey):
                raise ConfigurationError(f"a public key is a {type(public).__name__}, not an Ed25519 key")
            keys[key_id(public)] = public
        return cls(keys)

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
        return "".join(_public_pem(self._keys[k]) for k in self.key_ids)


def key_path(folder: Path | str) -> Path:
    """Where the signing key lives in the audit folder (``<CORRAL_HOME>/audit``)."""
    return Path(folder) / KEY_FILE


def load_signer(folder: Path | str) -> Signer:
    """The signing key of the audit folder ``folder``, created on first use."""
    return Signer.load_or_create(key_path(folder))


def load_verifier(folder: Path | str) -> Verifier:
    """The verifier for the signing key of the audit folder ``folder`` (created on first use)."""
    return load_signer(folder).verifier()


def _create(path: Path) -> None:
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)  # mkdir's mode is reduced by the umask; 0700 needs nothing more than that
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process created meanwhile
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_private(path: Path) -> None:
    if os.name == "nt":  # POSIX modes do not describe Windows ACLs
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigurationError(
            f"audit signing key {path} is readable by group or others (mode {mode:04o}); "
            f"restrict it with: chmod 600 {path}"
        )
