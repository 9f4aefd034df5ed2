"""Artifact signatures: Ed25519 over a version's name, number and artifact SHA-256.

A registry given an :class:`ArtifactSigning` with a private key signs every version it registers (in the
transaction that numbers it) and checks a version's signature before every load. The SHA-256 is then
checked against the stored bytes by the artifact store, so a signature vouches for the bytes themselves:
swapping the artifact, or editing the version's recorded hash, name or number in the database, breaks it.

What is signed (:func:`signed_message`) is one line of canonical JSON with a fixed prefix, so a signature
over something else (an audit checkpoint, another installation's message) can never pass for one.

Keys are named by ``key_id``: the first 16 hex digits of the SHA-256 of the raw 32-byte public key. A
signature is checked only against keys this installation trusts: the public half of its own signing key
and the public keys it is given (a CI system that signs, another server's key). With ``required`` (the
``regulated`` profile) a version without a signature is refused too.

The private key is PEM at the configured path, created on first use with mode 0600 in a folder created with
mode 0700 (written to a temporary name and hard-linked into place, so two processes starting at once end up
with the same key). A key file that group or others can read is refused, with the ``chmod`` that fixes it.
The key files and key ids are :mod:`corral.core.keyfiles`', shared with the audit log's checkpoint key.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from corral.core import keyfiles
from corral.core.keyfiles import key_id, public_keys_from_pem, public_pem
from corral.errors import ArtifactSignatureError, ConfigurationError
from corral.registry.entities import ArtifactSignature, ModelVersion

__all__ = ["ALGORITHM", "ArtifactSigning", "load_private_key", "public_keys_from_pem", "signed_message"]

ALGORITHM = "ed25519"
_PREFIX = b"corral-artifact-signature-v1\n"


def signed_message(name: str, version: int, sha256: str) -> bytes:
    """The bytes a version's signature covers."""
    body = json.dumps({"artifact_sha256": sha256, "name": name, "version": version}, sort_keys=True)
    return _PREFIX + body.encode()


def load_private_key(path: Path | str, *, create: bool = True) -> Ed25519PrivateKey:
    """The Ed25519 private key at ``path``, created (0600, in a 0700 folder) when there is none and ``create``.

    Raises:
        ConfigurationError: the file is missing (without ``create``), readable by group or others, or not an
            unencrypted Ed25519 private key in PEM.
    """
    return keyfiles.load_private_key(Path(path), "artifact signing key", create=create)


class ArtifactSigning:
    """Signs versions at registration and checks them before every load.

    Args:
        key: the private key that signs; ``None``: this registry signs nothing (it may still verify).
        key_file: where to read the private key on first use instead (created there when missing).
        public_keys: further keys whose signatures are accepted, by key id (:func:`public_keys_from_pem`).
        required: refuse to load a version that has no signature (the ``regulated`` profile).
    """

    def __init__(
        self,
        *,
        key: Ed25519PrivateKey | None = None,
        key_file: Path | str | None = None,
        public_keys: Mapping[str, Ed25519PublicKey] | None = None,
        required: bool = False,
    ) -> None:
        self._key = key
        self.key_file = Path(key_file) if key_file is not None else None
        self._public = dict(public_keys or {})
        self.required = required
        self._lock = threading.Lock()

    @classmethod
    def from_files(
        cls, *, key_file: Path | str | None, public_keys_file: Path | str | None = None, required: bool = False
    ) -> ArtifactSigning:
        """Signing as configured: the private key read (or created) on first use, extra public keys read now.

        Raises:
            ConfigurationError: the public keys file is missing or holds no Ed25519 PEM public key.
        """
        public: dict[str, Ed25519PublicKey] = {}
        if public_keys_file is not None:
            try:
                text = Path(public_keys_file).read_text()
            except OSError as exc:
                raise ConfigurationError(f"cannot read the artifact public keys {public_keys_file}: {exc}") from exc
            public = public_keys_from_pem(text)
        return cls(key_file=key_file, public_keys=public, required=required)

    @classmethod
    def generate(cls, *, required: bool = False) -> ArtifactSigning:
        """A fresh key kept in memory only (tests, throwaway setups)."""
        return cls(key=Ed25519PrivateKey.generate(), required=required)

    @property
    def signs(self) -> bool:
        """Whether registrations are signed (a key or a key file is configured)."""
        return self._key is not None or self.key_file is not None

    def _private(self) -> Ed25519PrivateKey | None:
        with self._lock:
            if self._key is None and self.key_file is not None:
                self._key = load_private_key(self.key_file)
            return self._key

    @property
    def key_id(self) -> str | None:
        """The signing key's id, or ``None`` when this registry signs nothing."""
        key = self._private()
        return key_id(key.public_key()) if key is not None else None

    def public_pem(self) -> str:
        """The signing key's public half as PEM, to hand to servers that only verify."""
        key = self._private()
        if key is None:
            raise ConfigurationError("no artifact signing key is configured (CORRAL_SIGNING__KEY_FILE)")
        return public_pem(key.public_key())

    def trusted_keys(self) -> dict[str, Ed25519PublicKey]:
        keys = dict(self._public)
        key = self._private()
        if key is not None:
            keys[key_id(key.public_key())] = key.public_key()
        return keys

    def sign(self, version: ModelVersion) -> ArtifactSignature | None:
        """The signature of a numbered version, or ``None`` when no signing key is configured."""
        key = self._private()
        if key is None:
            return None
        message = signed_message(version.name, version.version, version.artifact_sha256)
        return ArtifactSignature(ALGORITHM, key_id(key.public_key()), key.sign(message).hex())

    def verify(self, version: ModelVersion) -> None:
        """Check a version's signature before it is loaded.

        Raises:
            ArtifactSignatureError: the signature does not verify or is by a key this installation does not
                trust; or there is none and signatures are required. The message names the version.
        """
        signature = version.artifact_signature
        if signature is None:
            if self.required:
                raise ArtifactSignatureError(
                    f"{version.ref} has no artifact signature, and the regulated profile loads only signed "
                    f"versions. If you vouch for its artifact (sha256 {version.artifact_sha256}), an admin can "
                    f"sign it: corral models sign {version.name} {version.version}"
                )
            return
        if signature.algorithm != ALGORITHM:
            raise ArtifactSignatureError(
                f"{version.ref} is signed with {signature.algorithm!r}, which corral does not check "
                f"(it checks {ALGORITHM}); refusing to load it"
            )
        public = self.trusted_keys().get(signature.key_id)
        if public is None:
            raise ArtifactSignatureError(
                f"{version.ref} is signed by key {signature.key_id}, which this installation does not trust; "
                "add that key's public half to CORRAL_SIGNING__PUBLIC_KEYS_FILE (or configure the signing key), "
                "or refuse the version"
            )
        message = signed_message(version.name, version.version, version.artifact_sha256)
        try:
            public.verify(bytes.fromhex(signature.value), message)
        except (InvalidSignature, ValueError):
            raise ArtifactSignatureError(
                f"the artifact signature of {version.ref} does not verify against key {signature.key_id}: its "
                f"name, number or artifact hash (sha256 {version.artifact_sha256}) changed after it was signed, "
                "or the signature did. Refusing to load it"
            ) from None
