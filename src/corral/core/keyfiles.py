"""Private files and Ed25519 keys: what the audit log's checkpoint key, the registry's artifact-signing key
and the admin token file share.

A private file is created with mode 0600 (in a folder created with mode 0700) under a temporary name,
flushed to disk, then moved into place, so a reader never sees half a file. With ``keep_existing`` the move
is a hard link that never replaces a file another process created meanwhile (two processes starting at once
end up with the same key); otherwise it is a rename over the old file. A private file that group or others
can read is refused, with the ``chmod`` that fixes it.

A key is named by its ``key_id``: the first 16 hex digits of the SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from corral.errors import ConfigurationError

_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


def write_private(path: Path, data: bytes, *, keep_existing: bool = False) -> None:
    """Write ``data`` to ``path`` readable by its owner only (see the module's docstring)."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)  # mkdir's mode is reduced by the umask
    tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if not keep_existing:
            os.replace(tmp, path)  # never writes through a link planted at ``path``
            return
        try:
            os.link(tmp, path)  # atomic, and never replaces a file another process created meanwhile
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_private(path: Path, what: str) -> None:
    """Refuse ``path`` (``what`` names it in the error) when group or others can read it.

    Raises:
        ConfigurationError: the mode lets group or others in.
    """
    if os.name == "nt":  # POSIX modes do not describe Windows ACLs
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigurationError(
            f"{what} {path} is readable by group or others (mode {mode:04o}); restrict it with: chmod 600 {path}"
        )


def load_private_key(path: Path, what: str, *, create: bool = True) -> Ed25519PrivateKey:
    """The Ed25519 private key in PEM at ``path`` (``what`` names it in errors), created when missing and
    ``create``.

    Raises:
        ConfigurationError: missing (without ``create``), readable by group or others, or not an unencrypted
            Ed25519 private key in PEM.
    """
    if not path.exists():
        if not create:
            raise ConfigurationError(f"{what} {path} does not exist")
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_private(path, pem, keep_existing=True)
    check_private(path, what)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{what} {path} is not an unencrypted PEM private key: {exc}") from exc
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{what} {path} is a {type(key).__name__}, not an Ed25519 key")
    return key


def key_id(public: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo), safe to hand out."""
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_keys_from_pem(text: str) -> dict[str, Ed25519PublicKey]:
    """Ed25519 public keys in PEM (one block or several concatenated), by key id.

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
    return keys
