"""Tokens for tests that call a corral server (in process or a real ``corral serve``) with authentication on.

- :func:`admin_headers`: the ``Authorization`` header with the admin token corral wrote to the installation's
  token file on first start (``create_app`` or ``corral serve`` must have run once on that home).
- :func:`role_headers`: makes a token with a role and returns its header.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from corral.security.bootstrap import read_token_file, token_path

if TYPE_CHECKING:
    from corral.app import Services


def bearer(token: str) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}``."""
    return {"Authorization": f"Bearer {token}"}


def admin_headers(where: Services | Path | str) -> dict[str, str]:
    """The admin token's header, read from the token file of ``where``: services (their settings' token file)
    or a ``CORRAL_HOME`` folder."""
    path = token_path(where) if isinstance(where, Path | str) else where.settings.resolved_token_file()
    return bearer(read_token_file(path))


def role_headers(services: Services, role: str, name: str | None = None) -> dict[str, str]:
    """Make a token with ``role`` (named ``name``, default ``test-<role>``) and return its header."""
    return bearer(services.tokens.create(name or f"test-{role}", role).secret)
