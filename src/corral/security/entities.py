"""What the token store keeps: API tokens (only their hashes) and denied attempts.

A :class:`Token` is the record of one bearer token: its name, its one :class:`Role`, who made it and when,
an optional expiry and a revocation. The secret itself (``corral_`` followed by 43 URL-safe characters, 256
random bits) exists only in :class:`IssuedToken`, handed out once when the token is made; the store keeps its
SHA-256. A :class:`Denial` is one refused request on a management route, kept for the administrator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from corral.errors import ConfigurationError


class Role(StrEnum):
    """What a token may do; each token has exactly one role (see :mod:`corral.security.permissions`)."""

    VIEWER = "viewer"
    PREDICTOR = "predictor"
    PUBLISHER = "publisher"
    DEPLOYER = "deployer"
    AUDITOR = "auditor"
    ADMIN = "admin"

    @classmethod
    def parse(cls, value: str | Role) -> Role:
        """The role named ``value``.

        Raises:
            ConfigurationError: no role has that name (the message lists them).
        """
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            known = ", ".join(r.value for r in cls)
            raise ConfigurationError(f"unknown role {value!r}: use one of {known}") from None


ACTIVE, EXPIRED, REVOKED = "active", "expired", "revoked"


@dataclass(frozen=True, slots=True)
class Token:
    """One API token as stored: never the secret, only its SHA-256 (``hash``, 64 hex digits).

    Attributes:
        id: 12 hex digits, unique; shown in listings and accepted by ``revoke``.
        name: unique among tokens not revoked.
        role: the one role the token has.
        created_by: who made it (a user name, or ``token:NAME`` when made over the API).
        expires_at: after this the token is refused; ``None`` never expires.
        revoked_at, revoked_by: set once, when it was revoked.
    """

    id: str
    name: str
    role: Role
    hash: str = field(repr=False)
    created_by: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def state(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked`` at ``now``."""
        if self.revoked_at is not None:
            return REVOKED
        if self.expires_at is not None and now >= self.expires_at:
            return EXPIRED
        return ACTIVE

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """The token as listings show it (no hash); with ``now``, its state then."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_by": self.revoked_by,
        }
        if now is not None:
            data["state"] = self.state(now)
        return data


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just made: its record and its secret, which is shown once and stored nowhere."""

    token: Token
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Denial:
    """A refused request on a management route.

    Attributes:
        route: the route's path template (``/v1/deployments/{name}``); ``path`` is the path asked for.
        status: 401 (no valid token) or 403 (a token without the permission).
        token_id, token_name: the token presented, when it was valid; ``None`` otherwise.
        reason: why it was refused, as the client was told.
        client: the client's address as the server saw it.
    """

    at: datetime
    method: str
    route: str
    path: str
    status: int
    reason: str
    client: str | None = None
    token_id: str | None = None
    token_name: str | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "method": self.method,
            "route": self.route,
            "path": self.path,
            "status": self.status,
            "reason": self.reason,
            "client": self.client,
            "token_id": self.token_id,
            "token_name": self.token_name,
        }
