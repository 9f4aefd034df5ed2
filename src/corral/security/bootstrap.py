"""The first admin token, and the file that hands it to the CLI, the SDK and scripts on the same machine.

corral has no default password. On first start (when the store holds no usable admin token) the server
makes an admin token named ``admin``, stores its hash, and writes the token once to
``<CORRAL_HOME>/admin-token``: created with mode 0600 (``os.open(..., 0o600)``, under a temporary name, then
moved into place), so only the owner of the installation can read it. Later starts leave the file alone,
and so do starts while an admin token exists. Clients read it with :func:`local_token` (or take
``CORRAL_TOKEN``); a file that group or others can read is refused, with the ``chmod`` that fixes it.
:func:`rotate_admin_token` replaces the token and the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from corral.core.keyfiles import write_private
from corral.errors import AlreadyExistsError, ConfigurationError
from corral.security.entities import IssuedToken, Role
from corral.security.service import Tokens

TOKEN_FILE = "admin-token"
"""The admin token's file name in ``CORRAL_HOME``."""
ADMIN_NAME = "admin"
TOKEN_ENV = "CORRAL_TOKEN"
"""The environment variable a client's token may come from instead of the file."""

log = logging.getLogger("corral.security")


def token_path(home: Path | str) -> Path:
    """Where the first admin token is written: ``<home>/admin-token``."""
    return Path(home) / TOKEN_FILE


def ensure_admin_token(tokens: Tokens, path: Path, *, by: str = "corral (first start)") -> IssuedToken | None:
    """On first start, make the admin token and write it to ``path`` (mode 0600); otherwise do nothing.

    Returns the token made, or ``None`` when an admin token already exists (or another process made one at
    the same moment). A stale file left from an earlier database is replaced; an existing file is never
    rewritten while an admin token exists.

    Raises:
        ConfigurationError: the file could not be written (the token just made is revoked again).
    """
    if tokens.has_admin():
        _warn_if_exposed(path)
        return None
    name = ADMIN_NAME if tokens.name_free(ADMIN_NAME) else f"{ADMIN_NAME}-{tokens.now():%Y%m%d%H%M%S}"
    try:
        issued = tokens.create(name, Role.ADMIN, created_by=by)
    except AlreadyExistsError:  # another process bootstrapped this database just now
        return None
    try:
        write_secret(path, issued.secret)
    except OSError as exc:
        tokens.revoke(issued.token.id, by=by)
        raise ConfigurationError(
            f"cannot write the admin token to {path}: {exc}; make the folder writable, or make a token with "
            "`corral tokens create NAME --role admin`"
        ) from exc
    log.info(
        "first start: made the admin token %r (id %s) and wrote it to %s, readable by its owner only; "
        "`corral tokens create` makes tokens for others",
        issued.token.name,
        issued.token.id,
        path,
    )
    return issued


def rotate_admin_token(tokens: Tokens, path: Path, *, by: str | None = None) -> IssuedToken:
    """Revoke the token named ``admin`` (if any), make a new one and write it to ``path`` (mode 0600).

    Raises:
        ConfigurationError: the file could not be written (the new token is revoked again).
    """
    for token in tokens.all(include_revoked=False):
        if token.name == ADMIN_NAME:
            tokens.revoke(token.id, by=by)
    issued = tokens.create(ADMIN_NAME, Role.ADMIN, created_by=by)
    try:
        write_secret(path, issued.secret)
    except OSError as exc:
        tokens.revoke(issued.token.id, by=by)
        raise ConfigurationError(f"cannot write the admin token to {path}: {exc}") from exc
    return issued


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path``, readable by the owner only: a new file made with mode 0600 under a
    temporary name, flushed to disk, then renamed over ``path`` (never writing through a link)."""
    write_private(path, (secret + "\n").encode())


def read_token_file(path: Path) -> str:
    """The token in ``path``.

    Raises:
        ConfigurationError: the file is not a regular file, is readable by group or others, or is empty.
    """
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the token file {path}: {exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ConfigurationError(f"the token file {path} is not a regular file")
    if os.name != "nt" and stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigurationError(
            f"refusing the token file {path}: group or others can read it (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); restrict it with: chmod 600 {path}"
        )
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise ConfigurationError(f"the token file {path} is empty")
    return secret


def local_token(path: Path | str, environ: Mapping[str, str] | None = None) -> str | None:
    """The token a client on this machine uses: ``CORRAL_TOKEN`` if set, else the one in the token file
    ``path`` (``<CORRAL_HOME>/admin-token``) if there is one, else ``None``.

    Raises:
        ConfigurationError: the file exists but is readable by group or others.
    """
    env = os.environ if environ is None else environ
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip()
    path = Path(path)
    return read_token_file(path) if path.exists() else None


def _warn_if_exposed(path: Path) -> None:
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(path.stat().st_mode)
        if os.name != "nt" and mode & 0o077:
            log.warning("the admin token file %s is readable by group or others (mode %04o): chmod 600 it", path, mode)
